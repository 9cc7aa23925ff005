"""``dreamctl experiment rescue`` (issue 13): which method wakes the maps that random-start
OIPs leave dead, and at what compute, on several independently trained CNNs.

An experiment of normal runs (cluster/runner.run_experiment), for every training seed:

- ``train`` (jobs/train.py): the CNN, trained on the ``--data`` set;
- ``oip --rescue none``: R random 4-scale starts per map (seeded by (start_seed, map,
  restart)), S post-ReLU steps each: method ``random``;
- ``oip --warmup W --warmup-kind pre_relu`` / ``leaky_relu``: the same starts and S steps, the
  first W on the warm-up (methods ``warmup_pre_relu``, ``warmup_leaky_relu``);
- ``precursor`` (pruned, the default rule) on the maps every random start left dead (or on
  every map: ``--precursor-maps all``), S phase-2 steps: method ``precursor``;
  ``precursor --exhaustive`` too with ``--exhaustive``;

then the experiment's own run (job ``rescue``): per (model, map, method) the best final loss,
alive, the ratio to the best method on that (model, map), whether the method woke a map that
every random start left dead, and its work: image-steps (ascent steps actually computed; a
start frozen at loss 0 is never computed) and CPU seconds (from the runs' commit records,
spread over the maps of a phase by their image-steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Generator

import numpy as np
import pandas as pd
import pyarrow as pa

from core.data import Dataset
from core.model import TrainConfig
from core.params import check_params, param, parse_ints, same_as
from jobs.base import Artifact, DataBound, Step, Summary, SummaryPhase, check_maps, layer_param, maps_param
from jobs.oip import OipJob, dead_maps
from jobs.oip import per_map as oip_per_map
from jobs.precursor import PrecursorJob
from jobs.precursor import per_map as precursor_per_map
from jobs.train import TrainJob, trained_model

RANDOM = "random"
WARMUPS = {"warmup_pre_relu": "pre_relu", "warmup_leaky_relu": "leaky_relu"}  # method -> core.ascent warm-up kind
PRECURSOR = "precursor"
PRECURSOR_EXHAUSTIVE = "precursor_exhaustive"
METHOD_ORDER = (RANDOM, *WARMUPS, PRECURSOR, PRECURSOR_EXHAUSTIVE)

MODELS_SCHEMA = pa.schema([("seed", pa.int32()), ("run_id", pa.string()), ("train_accuracy", pa.float64()),
                           ("test_accuracy", pa.float64())])
COMPARISON_SCHEMA = pa.schema(
    [
        ("seed", pa.int32()),  # the model's training seed
        ("map", pa.int32()),
        ("method", pa.string()),
        ("run_id", pa.string()),  # the run of the method on this model
        ("loss", pa.float32()),  # best final loss of the map
        ("alive", pa.bool_()),
        ("ratio_to_best", pa.float64()),  # loss / the best method's loss on this (model, map); null when all are 0
        ("random_dead", pa.bool_()),  # all random starts of this (model, map) ended at loss 0
        ("woken", pa.bool_()),  # alive where random_dead
        ("image_steps", pa.int64()),
        ("cpu_seconds", pa.float64()),
    ]
)


@dataclass(frozen=True)
class RescueExperiment(DataBound):
    """Parameters of ``dreamctl experiment rescue``."""

    seeds: tuple[int, ...] = param((0, 1, 2), "Training seeds of the CNNs to compare on (one model each), "
                                   "comma-separated.", low=0, parse=parse_ints)
    train_epochs: int = same_as(TrainConfig, "epochs")
    layer: str = layer_param()
    maps: tuple[int, ...] = maps_param()
    restarts: int = same_as(OipJob, "restarts", help="Random 4-scale starts per map (random and warm-up methods: "
                            "the same images).")
    epochs: int = param(1200, "Ascent steps of every final run (random, warm-ups, precursor phase 2).", low=1)
    warmup: int = param(100, "Warm-up steps of the warm-up methods (the first W of --epochs).", low=1)
    start_seed: int = param(0, "Seed of the random start images (image r of map m is seeded by (seed, m, r)).", low=0)
    grid: int = same_as(PrecursorJob, "grid")
    levels: tuple[float, ...] = same_as(PrecursorJob, "levels")
    test_epochs: int = same_as(PrecursorJob, "test_epochs")
    top: int = same_as(PrecursorJob, "top")
    exhaustive: bool = param(False, "Also run the exhaustive precursor (every coarse start all --test-epochs, the "
                             "seed's procedure).")
    precursor_maps: str = param("dead", "Maps the precursor methods run on: 'dead', those every random start of "
                                "the model left dead (the maps a rescue is for); 'all', every map (about 35 min "
                                "more per model on 2 cores).", choices=("dead", "all"))
    maps_per_shard: int = same_as(OipJob, "maps_per_shard")
    dataset: Dataset | None = field(default=None, repr=False, compare=False)

    name = "rescue"

    def __post_init__(self) -> None:
        check_params(self)
        object.__setattr__(self, "seeds", tuple(sorted(set(self.seeds))))
        object.__setattr__(self, "maps", check_maps(self.maps, self.layer))
        # the runs' own checks, in their parameter names: refused before anything runs
        for method in (RANDOM, *WARMUPS):
            self.oip(method)
        self.precursor(self.maps, exhaustive=False)

    def with_data(self, dataset: Dataset) -> "RescueExperiment":
        return replace(self, dataset=dataset)

    # ----- the runs ------------------------------------------------------------------------
    def oip(self, method: str) -> OipJob:
        """The oip run of a random-start method: the same starts for every method and model."""
        warmup = {"warmup": self.warmup, "warmup_kind": WARMUPS[method]} if method in WARMUPS else {}
        return OipJob(layer=self.layer, maps=self.maps, epochs=self.epochs, restarts=self.restarts,
                      seed=self.start_seed, rescue="none", maps_per_shard=self.maps_per_shard, **warmup)

    def precursor(self, maps: tuple[int, ...], exhaustive: bool) -> PrecursorJob:
        """The precursor run (pruned, or exhaustive); with --test-epochs at or below the first
        cut of the pruning the pruned run is exhaustive too."""
        return PrecursorJob(layer=self.layer, maps=maps, grid=self.grid, levels=self.levels, test_epochs=self.test_epochs,
                            top=self.top, full_epochs=self.epochs, exhaustive=exhaustive)

    def steps(self) -> Generator[Step, object, None]:
        """Per seed: train, the random-start and warm-up oip runs, the precursor on the maps
        random starts left dead; then the comparison (see the module docstring)."""
        models, rows, run_ids = [], [], {}
        for seed in self.seeds:
            trained = yield Step(TrainJob(config=TrainConfig(epochs=self.train_epochs, seed=seed)))
            model = trained_model(trained.tables["model"], trained.metadata["data"])
            first = trained.tables["model"].to_pylist()[0]
            models.append({"seed": seed, "run_id": trained.run_id, "train_accuracy": first["train_accuracy"],
                           "test_accuracy": first["test_accuracy"]})
            random = None
            for method in (RANDOM, *WARMUPS):
                outcome = yield Step(self.oip(method), model)
                random = random or outcome
                rows += method_rows(seed, method, outcome, oip_per_map(outcome.tables["oips"], outcome.records["oips"],
                                                                       self.epochs, self.warmup if method in WARMUPS else 0))
                run_ids[f"{seed}/{method}"] = outcome.run_id
            maps = tuple(dead_maps(random.tables["oips"])) if self.precursor_maps == "dead" else self.maps
            precursors = {PRECURSOR: self.precursor(maps, exhaustive=False)} if maps else {}
            if maps and self.exhaustive and not precursors[PRECURSOR].exhaustive:  # else it is the same run
                precursors[PRECURSOR_EXHAUSTIVE] = self.precursor(maps, exhaustive=True)
            for method, precursor in precursors.items():
                outcome = yield Step(precursor, model)
                rows += method_rows(seed, method, outcome, precursor_per_map(outcome.tables, outcome.records, self.epochs))
                run_ids[f"{seed}/{method}"] = outcome.run_id
        title = (f"{self.layer} of {len(self.seeds)} CNN{'s' * (len(self.seeds) > 1)} on "
                 f"{self.dataset.name if self.dataset is not None else 'data'}: {self.restarts} starts × "
                 f"{self.epochs} steps, warm-up {self.warmup}")
        yield Step(Summary(self.name, {**self.params(), "runs": run_ids}, (
            SummaryPhase("models", MODELS_SCHEMA, lambda tables: models,
                         lambda found: pa.Table.from_pylist(found, schema=MODELS_SCHEMA)),
            SummaryPhase("comparison", COMPARISON_SCHEMA, lambda tables: pd.DataFrame(rows), compare)),
            lambda tables: [Artifact("rescue.png", rescue_figure(tables["comparison"].to_pandas(), title))]))


def method_rows(seed: int, method: str, outcome, per_map) -> list[dict]:
    """The rows of the comparison for one run: ``per_map`` (jobs.oip.per_map or
    jobs.precursor.per_map) of its outcome."""
    return [{"seed": seed, "method": method, "run_id": outcome.run_id, "alive": row.loss > 0, **row._asdict()}
            for row in per_map.itertuples(index=False)]


# ----- the comparison ------------------------------------------------------------------------------
def compare(runs: pd.DataFrame) -> pa.Table:
    """Per (model, map, method), from one row each (seed, map, method, run_id, loss, alive,
    image_steps, cpu_seconds): the ratio of its loss to the best method's on that (model,
    map), and whether it woke a map that every random start left dead."""
    frame = runs.copy()
    best = frame.groupby(["seed", "map"])["loss"].transform("max")
    frame["ratio_to_best"] = np.where(best > 0, frame["loss"] / best.where(best > 0, 1.0), np.nan)
    random_alive = frame.loc[frame["method"] == RANDOM].set_index(["seed", "map"])["alive"]
    keys = list(zip(frame["seed"], frame["map"]))
    frame["random_dead"] = [not bool(random_alive.get(key, True)) for key in keys]
    frame["woken"] = frame["alive"] & frame["random_dead"]
    frame = frame.sort_values(["seed", "map", "method"])
    columns = [f.name for f in COMPARISON_SCHEMA]
    return pa.Table.from_pandas(frame[columns], schema=COMPARISON_SCHEMA, preserve_index=False)  # nan -> null


def method_summary(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per method over all models: maps, maps alive, maps random starts left dead and how many
    it woke; on those dead maps the median and minimum ratio to the best method, on how many
    it was the best, and its image-steps and CPU seconds there (the cost of a rescue); the
    median ratio and image-steps over all maps it ran on."""
    rows = []
    for method, group in comparison.groupby("method", sort=False):
        dead = group[group["random_dead"]]
        rows.append({
            "method": method, "maps": len(group), "alive": int(group["alive"].sum()),
            "random_dead": len(dead), "woken": int(group["woken"].sum()),
            "median_ratio_dead_maps": float(dead["ratio_to_best"].median()) if len(dead) else np.nan,
            "min_ratio_dead_maps": float(dead["ratio_to_best"].min()) if len(dead) else np.nan,
            "best_on_dead_maps": int((dead["ratio_to_best"] >= 1.0).sum()),
            "image_steps_dead_maps": int(dead["image_steps"].sum()),
            "cpu_seconds_dead_maps": float(dead["cpu_seconds"].sum()),
            "median_ratio": float(group["ratio_to_best"].median()),
            "image_steps": int(group["image_steps"].sum()), "cpu_seconds": float(group["cpu_seconds"].sum()),
        })
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return pd.DataFrame(rows).sort_values("method", key=lambda s: s.map(order)).reset_index(drop=True)


def rescue_figure(comparison: pd.DataFrame, title: str) -> bytes:
    """Left, one row per model: the final loss of every map (sorted by the best method's
    loss) by method, maps random starts left dead marked; right: the image-steps spent on
    those dead maps against how many were woken, one point per (model, method)."""
    from jobs.figures import plt, png

    seeds = sorted(comparison["seed"].unique())
    methods = list(method_summary(comparison)["method"])
    colors = dict(zip(methods, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    markers = dict(zip(methods, "o^vsD"))
    figure = plt.figure(figsize=(16, 3.2 * len(seeds) + 0.8), layout="constrained")
    grid = figure.add_gridspec(len(seeds), 3)
    for row, seed in enumerate(seeds):
        axis = figure.add_subplot(grid[row, :2])
        frame = comparison[comparison["seed"] == seed]
        best = frame.groupby("map")["loss"].max().sort_values(ascending=False)
        position = {m: i for i, m in enumerate(best.index)}
        dead = frame[(frame["method"] == RANDOM) & frame["random_dead"]]["map"]
        for x in (position[m] for m in dead):
            axis.axvspan(x - 0.5, x + 0.5, color="0.9", lw=0)
        for method in methods:
            part = frame[frame["method"] == method]
            axis.scatter([position[m] for m in part["map"]], part["loss"], s=12, marker=markers[method],
                         color=colors[method], label=method, alpha=0.8)
        axis.set_ylabel(f"model seed {seed}\nfinal loss")
        axis.set_xlim(-1, len(position))
        if row == 0:
            axis.legend(fontsize=8, ncol=len(methods), loc="upper right")
        if row == len(seeds) - 1:
            axis.set_xlabel("maps, by the best method's loss (grey: every random start dead)")
    axis = figure.add_subplot(grid[:, 2])
    dead_rows = comparison[comparison["random_dead"]]
    for method in methods:
        for seed in seeds:
            part = dead_rows[(dead_rows["method"] == method) & (dead_rows["seed"] == seed)]
            axis.scatter(part["image_steps"].sum() / 1e3, part["woken"].sum(), marker=markers[method],
                         color=colors[method], s=40, label=method if seed == seeds[0] else None)
    axis.set_xlabel("thousand image-steps on the maps random starts left dead, per model")
    axis.set_ylabel("of them woken")
    axis.legend(fontsize=8)
    figure.suptitle(title)
    return png(figure)
