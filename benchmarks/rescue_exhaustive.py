"""The exhaustive precursor (the seed's procedure) beside the pruned one on the maps a
``dreamctl experiment rescue`` run found dead from random starts, on that run's own models.

The rescue run keeps only the pruned precursor (``--precursor-maps dead``); this reruns the
same rows with every coarse start taken through all test epochs, through the experiment's
own ``RunsPhase.compute`` (same models, same patterns, same phase 2), and prints per map
the final loss, best start and image-steps of both, and whether phase 2 started from the
same 8 patterns.

    .venv/bin/python benchmarks/rescue_exhaustive.py results/rescue/<run_id> [--out exhaustive.parquet]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pandas as pd  # noqa: E402

from jobs.files import follow_latest  # noqa: E402
from jobs.rescue import PRECURSOR, PRECURSOR_EXHAUSTIVE, PRECURSOR_RUNS, RescueExperiment, RunsPhase  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished rescue run folder (results/rescue/latest)")
    parser.add_argument("--out", type=Path, help="also write the exhaustive rows here (Parquet)")
    args = parser.parse_args()
    run = follow_latest(args.run)
    params = json.loads((run / "_manifest.json").read_text())["params"]
    job = RescueExperiment(**{name: tuple(value) if isinstance(value, list) else value
                              for name, value in params.items() if name != "schedule"})
    models = pd.read_parquet(run / "models").set_index("seed")
    pruned = pd.read_parquet(run / PRECURSOR_RUNS)
    pruned = pruned[pruned["method"] == PRECURSOR].set_index(["seed", "map"]).sort_index()
    phase = RunsPhase(job, PRECURSOR_RUNS, (PRECURSOR_EXHAUSTIVE,))
    rows, started = [], time.perf_counter()
    for seed, maps in pruned.reset_index().groupby("seed")["map"]:
        payload = (PRECURSOR_EXHAUSTIVE, int(seed), models.loc[seed, "weights"], int(models.loc[seed, "dense_units"]),
                   tuple(int(m) for m in maps))
        rows.append(phase.compute(None, payload).to_pandas())
        print(f"seed {seed}: {len(maps)} maps, {time.perf_counter() - started:.0f} s", flush=True)
    exhaustive = pd.concat(rows).set_index(["seed", "map"]).sort_index()
    if args.out:
        exhaustive.reset_index().to_parquet(args.out)
    table = pd.DataFrame({
        "pruned loss": pruned["loss"], "exhaustive loss": exhaustive["loss"],
        "ratio": pruned["loss"] / exhaustive["loss"].where(exhaustive["loss"] > 0),
        "same 8 starts": pruned["start_sha256"] == exhaustive["start_sha256"],
        "pruned image-steps": pruned["image_steps"], "exhaustive image-steps": exhaustive["image_steps"],
        "pruned CPU s": pruned["cpu_seconds"].round(1), "exhaustive CPU s": exhaustive["cpu_seconds"].round(1),
    })
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"\nsame 8 phase-2 starts on {int(table['same 8 starts'].sum())} of {len(table)} maps; "
          f"image-steps pruned {int(table['pruned image-steps'].sum()):,} vs exhaustive "
          f"{int(table['exhaustive image-steps'].sum()):,}; CPU s {table['pruned CPU s'].sum():.0f} vs "
          f"{table['exhaustive CPU s'].sum():.0f}")


if __name__ == "__main__":
    main()
