"""Two finished precursor runs on the same model, compared map by map (issue 12).

Typically a pruned run (the default) against an exhaustive one (``--exhaustive``):

- top 8: the same set of phase-1 patterns handed to phase 2, and the same order;
- phase 2: the best final loss per map, pruned / exhaustive, and which maps end alive;
- phase-1 image-steps, from the ``scores`` Parquet: each start counts the steps it
  reached, except a start with loss exactly 0 at the last step, counted as frozen (0 steps:
  skipped from its start); a start that ran and ended at exactly 0 is undercounted alike
  in both runs.

    .venv/bin/python benchmarks/compare_precursor.py RUN_A RUN_B [--tolerance 0.01]

RUN_A / RUN_B: run folders (results/precursor/<run id>). Exit 1 when the runs do not meet
the issue's bar (exit 2 on bad input): top 8 identical on all maps but at most one, on every other map the
phase-2 best of RUN_A within --tolerance of RUN_B's, the same maps alive.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

import pandas as pd
import pyarrow as pa

from cluster.store import Run, finished_run
from core.errors import BadInput


def fail(message: str) -> NoReturn:
    """Bad input: one line on stderr, exit 2 (exit 1 is reserved for runs below the bar)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def load(folder: Path) -> tuple[Run, pd.DataFrame, pd.DataFrame]:
    """A finished precursor run (verified), its scores and phase-2 rows; exits with one line otherwise."""
    try:
        if folder.parent.name != "precursor":
            raise BadInput(f"{folder}: not a precursor run folder (results/precursor/<run id>)")
        run = finished_run(folder.parent.parent, "precursor", folder.name)
        oips = run.table("oips").select(["map", "rank", "pattern", "loss", "alive"])
        return run, run.table("scores").to_pandas(), oips.to_pandas()
    except BadInput as error:
        fail(str(error))
    except (OSError, pa.ArrowException) as error:
        fail(f"{folder}: cannot read its Parquet ({error})")


def describe(params: dict) -> str:
    if params["exhaustive"]:
        return "exhaustive"
    if params.get("prune") is None:  # the adaptive rule (issue 22)
        return (f"adaptive: sample {params['prune_sample']}, leaders {params['prune_leaders']}, "
                f"margin {params['prune_margin']:g}")
    return "prune " + ",".join(f"{step}:{keep}" for step, keep in params["prune"])


def image_steps(scores: pd.DataFrame, test_epochs: int) -> pd.Series:
    """Phase-1 ascent steps per map (see the module docstring)."""
    frozen = (scores["loss"] == 0) & (scores["steps"] == test_epochs)
    return scores["steps"].where(~frozen, 0).groupby(scores["map"]).sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--tolerance", type=float, default=0.01, help="relative phase-2 loss gap allowed where the top 8 differ")
    args = parser.parse_args()
    (info_a, scores_a, oips_a), (info_b, scores_b, oips_b) = load(args.run_a), load(args.run_b)
    if info_a.model_hash != info_b.model_hash:
        fail("the runs used different models")
    params_a, params_b = info_a.params, info_b.params
    maps = sorted(set(oips_a["map"]) & set(oips_b["map"]))
    print(f"A = {args.run_a.name} ({describe(params_a)}), B = {args.run_b.name} ({describe(params_b)}); "
          f"{len(maps)} maps in both")

    steps_a, steps_b = image_steps(scores_a, params_a["test_epochs"]), image_steps(scores_b, params_b["test_epochs"])
    by_a, by_b = oips_a.sort_values(["map", "rank"]).groupby("map"), oips_b.sort_values(["map", "rank"]).groupby("map")
    same_set = same_order = 0
    differing = []
    for m in maps:
        a, b = by_a.get_group(m), by_b.get_group(m)
        if list(a["pattern"]) == list(b["pattern"]):
            same_order += 1
        if set(a["pattern"]) == set(b["pattern"]):
            same_set += 1
        else:
            differing.append((m, len(set(a["pattern"]) & set(b["pattern"])), a["loss"].max(), b["loss"].max()))
    best_a, best_b = oips_a.groupby("map")["loss"].max(), oips_b.groupby("map")["loss"].max()
    ratio = (best_a / best_b).loc[maps]
    alive_a = set(best_a[best_a > 0].index) & set(maps)
    alive_b = set(best_b[best_b > 0].index) & set(maps)

    print(f"top 8 the same set of patterns: {same_set} of {len(maps)} maps (same order too: {same_order})")
    for m, shared, loss_a, loss_b in differing:
        print(f"  map {m}: {shared}/8 shared; phase-2 best {loss_a:.4g} (A) vs {loss_b:.4g} (B), ratio {loss_a / loss_b:.4f}")
    print(f"phase-2 best loss A / B over all maps: min {ratio.min():.4f} (map {ratio.idxmin()}), max {ratio.max():.4f}, "
          f"identical on {int((ratio == 1).sum())}")
    print(f"maps alive after phase 2: A {len(alive_a)}, B {len(alive_b)}; "
          f"{'the same maps' if alive_a == alive_b else 'differ: ' + str(sorted(alive_a ^ alive_b))}")
    total_a, total_b = int(steps_a.loc[maps].sum()), int(steps_b.loc[maps].sum())
    print(f"phase-1 image-steps: A {total_a:,}, B {total_b:,}, A/B {total_a / total_b:.3f}")

    gaps_ok = all(loss_a >= (1 - args.tolerance) * loss_b for _, _, loss_a, loss_b in differing)
    ok = len(maps) - same_set <= 1 and gaps_ok and alive_a == alive_b
    print("meets the bar (top 8 identical on all maps but at most one, phase-2 best within "
          f"{args.tolerance:.0%} where they differ, same maps alive): {'yes' if ok else 'NO'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
