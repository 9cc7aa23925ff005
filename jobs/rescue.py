"""``dreamctl experiment rescue`` (issue 13): which method wakes the maps that random-start
OIPs leave dead, and at what compute, on several independently trained CNNs.

Phase ``models``: one Ray task per seed trains a CNN on the ``--data`` set; its weights
(float32, in ``core.model.build_cnn`` order) are stored in the run's Parquet with their
SHA-256. Phase ``runs``: one Ray task per (method, model, block of maps); the payload
carries the model's weights, which the task process builds once and keeps (by hash), so
every shard says which model it ran on and any process can run it. Methods:

- ``random``: R random 4-scale starts per map (seeded by (start_seed, map, restart), as
  ``dreamctl oip``), S post-ReLU steps each;
- ``warmup_pre_relu`` / ``warmup_leaky_relu``: the same starts and S steps, the first W on
  ``core.ascent``'s warm-up surrogate (the pre-ReLU mean, or the leaky-ReLU gradient);
- ``precursor``: every coarse pattern of the map through ``Ascent.run_pruned`` with the
  default schedule for ``test_epochs`` steps (one call per map: the map-wide cut), then the
  ``top`` best for S steps; ``precursor_exhaustive`` (``--exhaustive``) without the cuts.

Phase ``comparison``: per (model, map, method) the best final loss, alive, the ratio to the
best method on that (model, map), and whether the method woke a map that all random starts
left dead. Work is counted in image-steps (ascent steps actually computed: starts frozen at
loss 0 are skipped by the ascent, and cost nothing) and in CPU seconds of the task process.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from core.data import Dataset
from core.defaults import PRUNE_SCHEDULE as DEFAULT_PRUNE_SCHEDULE
from core.model import TrainConfig
from core.params import check_params, param, parse_ints, same_as
from core.patterns import SCALE_AMPLITUDES, SCALE_GRIDS, check_pattern_space, precursor_images
from jobs.base import IMAGE_TYPE, DataBound, Shard, check_maps, layer_param, maps_param
from jobs.oip import start_images
from jobs.precursor import PrecursorJob

RANDOM = "random"
WARMUPS = {"warmup_pre_relu": "pre_relu", "warmup_leaky_relu": "leaky_relu"}  # method -> core.ascent warm-up kind
PRECURSOR = "precursor"
PRECURSOR_EXHAUSTIVE = "precursor_exhaustive"
PRECURSOR_RUNS = "precursor_runs"  # the phase of the precursor methods when they run on the random-dead maps only

MODELS_SCHEMA = pa.schema(
    [
        ("seed", pa.int32()),
        ("weights", pa.binary()),  # float32 arrays of build_cnn(dense_units), concatenated in get_weights() order
        ("weights_sha256", pa.string()),
        ("dense_units", pa.int32()),
        ("train_accuracy", pa.float64()),
        ("test_accuracy", pa.float64()),
        ("cpu_seconds", pa.float64()),
    ]
)
RUNS_SCHEMA = pa.schema(
    [
        ("seed", pa.int32()),  # the model's training seed
        ("method", pa.string()),
        ("map", pa.int32()),
        ("starts", pa.int32()),  # start images of this map that went through the S-step ascent
        ("start_sha256", pa.string()),  # of those start images, float32 (starts, 28, 28), in order
        ("start_losses", pa.list_(pa.float32())),  # final post-ReLU loss of each of them
        ("best_start", pa.int64()),  # restart index (random, warm-ups) or coarse pattern index (precursor)
        ("loss", pa.float32()),  # best final loss of the map
        ("alive", pa.bool_()),
        ("image_steps", pa.int64()),  # ascent steps computed for this map (precursor: phase 1 + phase 2)
        ("cpu_seconds", pa.float64()),  # task-process CPU s; random / warm-ups: the shard's, split by image-steps
        ("image", IMAGE_TYPE),  # the best final image (standardized pixels)
    ]
)
COMPARISON_SCHEMA = pa.schema(
    [
        ("seed", pa.int32()),
        ("map", pa.int32()),
        ("method", pa.string()),
        ("loss", pa.float32()),
        ("alive", pa.bool_()),
        ("ratio_to_best", pa.float64()),  # loss / the best method's loss on this (model, map); null when all are 0
        ("random_dead", pa.bool_()),  # all random starts of this (model, map) ended at loss 0
        ("woken", pa.bool_()),  # alive where random_dead
        ("image_steps", pa.int64()),
        ("cpu_seconds", pa.float64()),
    ]
)


def weights_to_bytes(weights: list[np.ndarray]) -> bytes:
    """A model's weights (``model.get_weights()``) as one float32 byte string."""
    return b"".join(np.ascontiguousarray(w, np.float32).tobytes() for w in weights)


def weights_from_bytes(data: bytes, dense_units: int) -> list[np.ndarray]:
    """Inverse of :func:`weights_to_bytes` for ``build_cnn(dense_units)``."""
    from core.model import build_cnn

    flat = np.frombuffer(data, np.float32)
    shapes = [w.shape for w in build_cnn(dense_units).get_weights()]
    sizes = [int(np.prod(shape)) for shape in shapes]
    if sum(sizes) != flat.size:
        raise ValueError(f"{flat.size} weights stored, build_cnn({dense_units}) has {sum(sizes)}")
    return [chunk.reshape(shape).copy() for chunk, shape in zip(np.split(flat, np.cumsum(sizes)[:-1]), shapes)]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class RescueExperiment(DataBound):
    """Parameters of ``dreamctl experiment rescue``."""

    seeds: tuple[int, ...] = param((0, 1, 2), "Training seeds of the CNNs to compare on (one model each), "
                                   "comma-separated.", low=0, parse=parse_ints)
    train_epochs: int = same_as(TrainConfig, "epochs")
    layer: str = layer_param()
    maps: tuple[int, ...] = maps_param()
    restarts: int = param(8, "Random 4-scale starts per map (random and warm-up methods: the same images).",
                          low=1, high=100_000)
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
                                "the model left dead (the maps a rescue is for; a phase after the random starts); "
                                "'all', every map (about 35 min more per model on 2 cores).", choices=("dead", "all"))
    maps_per_shard: int = param(16, "Maps per shard of the runs phase.", low=1)
    dataset: Dataset | None = field(default=None, repr=False, compare=False)

    name = "rescue"

    def __post_init__(self) -> None:
        check_params(self)
        object.__setattr__(self, "seeds", tuple(sorted(set(self.seeds))))
        object.__setattr__(self, "maps", check_maps(self.maps, self.layer))
        if self.warmup > self.epochs:
            from core.errors import BadParameter

            raise BadParameter("warmup", f"must be at most the epochs ({self.epochs}), got {self.warmup}")
        # the precursor's checks (pattern space, levels), in its own parameter names
        PrecursorJob(layer=self.layer, maps=self.maps, grid=self.grid, levels=self.levels,
                     test_epochs=self.test_epochs, top=self.top, full_epochs=self.epochs)

    @property
    def schedule(self) -> tuple[tuple[int, int], ...]:
        """The precursor's pruning schedule: core's default (recorded in the run's parameters)."""
        return tuple(DEFAULT_PRUNE_SCHEDULE)

    @property
    def start_methods(self) -> tuple[str, ...]:
        """The methods that start from the random images."""
        return (RANDOM, *WARMUPS)

    @property
    def precursor_methods(self) -> tuple[str, ...]:
        return (PRECURSOR, *((PRECURSOR_EXHAUSTIVE,) if self.exhaustive else ()))

    @property
    def methods(self) -> tuple[str, ...]:
        return (*self.start_methods, *self.precursor_methods)

    def params(self) -> dict:
        return {**super().params(), "schedule": [list(cut) for cut in self.schedule]}

    def with_data(self, dataset: Dataset) -> "RescueExperiment":
        return replace(self, dataset=dataset)

    def phases(self) -> list:
        if self.precursor_maps == "all":
            return [ModelsPhase(self), RunsPhase(self, "runs", self.methods), ComparisonPhase(self)]
        return [ModelsPhase(self), RunsPhase(self, "runs", self.start_methods),
                RunsPhase(self, PRECURSOR_RUNS, self.precursor_methods, on_random_dead=True), ComparisonPhase(self)]

    def write_outputs(self, tables: dict[str, pa.Table], store) -> list[Path]:
        from jobs.figures import save_figure

        data = self.dataset.name if self.dataset is not None else "data"
        figure = rescue_figure(tables["comparison"].to_pandas(), f"{self.layer} of {len(self.seeds)} CNN{'s' * (len(self.seeds) > 1)} on {data}: "
                               f"{self.restarts} starts × {self.epochs} steps, warm-up {self.warmup}")
        return [save_figure(figure, store.path("rescue.png"))]


# ----- phase 1: the models ----------------------------------------------------------------------
@dataclass(frozen=True)
class ModelsPhase:
    """Train one CNN per seed (a Ray task each) and store its weights in the run."""

    job: RescueExperiment
    name = "models"
    unit = "models"
    schema = MODELS_SCHEMA
    needs_model = False
    must_be_finite = ("train_accuracy", "test_accuracy")

    def shared(self) -> Dataset:
        return self.job.dataset

    def shards(self, tables) -> list[Shard]:
        return [Shard(f"seed{seed:04d}", seed, 1, 1) for seed in self.job.seeds]

    def compute(self, dataset: Dataset, seed: int, on_item: Callable[[str], Any] | None = None) -> pa.Table:
        from core.model import train_cnn

        config = TrainConfig(epochs=self.job.train_epochs, seed=seed)
        started = time.process_time()
        model, _, metrics = train_cnn(dataset, config)
        cpu = time.process_time() - started
        data = weights_to_bytes(model.get_weights())
        return pa.table({"seed": [seed], "weights": [data], "weights_sha256": [sha256(data)],
                         "dense_units": [config.dense_units], "train_accuracy": [metrics["train_accuracy"]],
                         "test_accuracy": [metrics["test_accuracy"]], "cpu_seconds": [cpu]}, schema=MODELS_SCHEMA)


# ----- phase 2: every method on every map ---------------------------------------------------------
_ASCENTS: dict[tuple[str, str], Any] = {}  # (weights sha256, layer) -> Ascent, per task process


def model_ascent(weights: bytes, dense_units: int, layer: str):
    """The compiled ascent on the model these weights make, built once per process."""
    key = (sha256(weights), layer)
    if key not in _ASCENTS:
        import tensorflow as tf

        from core.ascent import Ascent
        from core.model import build_cnn

        try:  # a Ray task holds one CPU; only possible before this process's first TF op
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass
        model = build_cnn(dense_units)
        model.set_weights(weights_from_bytes(weights, dense_units))
        _ASCENTS[key] = Ascent(model, [layer])
    return _ASCENTS[key]


def random_starts(job: RescueExperiment, map_id: int) -> np.ndarray:
    """The ``restarts`` start images (R, 28, 28) of one map, the same for every model and
    every method that uses random starts (seeded by (start_seed, map, restart))."""
    return start_images(job.start_seed, map_id, job.restarts, SCALE_GRIDS, SCALE_AMPLITUDES)


@dataclass(frozen=True)
class RunsPhase:
    """One task per (method, model, block of maps); the model's weights travel in the payload.
    With ``on_random_dead``, the maps of each model are those its ``random`` runs (phase
    ``runs``) left dead."""

    job: RescueExperiment
    name: str
    methods: tuple[str, ...]
    on_random_dead: bool = False
    unit = "maps"
    schema = RUNS_SCHEMA
    needs_model = False
    must_be_finite = ("loss", "start_losses", "image")

    def shared(self) -> None:
        return None

    def shards(self, tables) -> list[Shard]:
        models = {row["seed"]: row for row in tables["models"].to_pylist()}
        step = self.job.maps_per_shard
        if self.on_random_dead:
            runs = tables["runs"].select(["seed", "method", "map", "alive"]).to_pylist()
            dead = {(row["seed"], row["map"]) for row in runs if row["method"] == RANDOM and not row["alive"]}
        shards = []
        for seed in self.job.seeds:
            maps = [m for m in self.job.maps if (seed, m) in dead] if self.on_random_dead else self.job.maps
            # model by model, every method on a block of maps before the next block: a run
            # stopped early holds complete comparisons on the maps it reached
            for block in (tuple(maps[i : i + step]) for i in range(0, len(maps), step)):
                payload = (seed, models[seed]["weights"], models[seed]["dense_units"], block)
                shards += [Shard(f"seed{seed:04d}-maps-{block[0]:04d}-{block[-1]:04d}-{method}", (method, *payload),
                                 len(block), len(block)) for method in self.methods]
        return shards

    def compute(self, context: None, payload, on_item: Callable[[str], Any] | None = None) -> pa.Table:
        method, seed, weights, dense_units, block = payload
        ascent = model_ascent(weights, dense_units, self.job.layer)
        if method in (PRECURSOR, PRECURSOR_EXHAUSTIVE):
            rows = [self._precursor(ascent, map_id, method) for map_id in block]
        else:
            rows = self._random_starts(ascent, block, WARMUPS.get(method))
        return pa.Table.from_pylist([{"seed": seed, "method": method, **row} for row in rows], schema=RUNS_SCHEMA)

    def _random_starts(self, ascent, block: tuple[int, ...], warmup_kind: str | None) -> list[dict]:
        """All maps of the block in one batched ascent from their random starts."""
        job = self.job
        started = time.process_time()
        starts = [random_starts(job, m) for m in block]
        images = np.concatenate(starts)
        map_ids = np.repeat(np.asarray(block), job.restarts)
        warmup = job.warmup if warmup_kind else 0
        initial = ascent.losses(images, ascent.map_objective(job.layer, map_ids))
        result = ascent.run_maps(images, job.layer, map_ids, job.epochs, warmup=warmup,
                                 warmup_kind=warmup_kind or "pre_relu")
        cpu = time.process_time() - started
        moving = (initial != 0.0) | (warmup > 0)  # the ascent skips frozen starts (loss 0, no warm-up)
        steps = [int(moving[i * job.restarts:(i + 1) * job.restarts].sum()) * job.epochs for i in range(len(block))]
        rows = []
        for i, map_id in enumerate(block):
            part = slice(i * job.restarts, (i + 1) * job.restarts)
            rows.append(self._row(map_id, starts[i], np.arange(job.restarts), result.losses[part],
                                  result.images[part], steps[i], cpu * steps[i] / max(1, sum(steps))))
        return rows

    def _precursor(self, ascent, map_id: int, method: str) -> dict:
        """The precursor on one map: every coarse pattern for ``test_epochs`` (pruned unless
        exhaustive), then its ``top`` best (``PrunedResult.ranking``) for ``epochs`` steps."""
        job = self.job
        started = time.process_time()
        patterns = np.arange(check_pattern_space(job.grid, job.levels), dtype=np.int64)
        images = precursor_images(patterns, job.grid, job.levels)
        schedule = () if method == PRECURSOR_EXHAUSTIVE else job.schedule
        scores = ascent.run_pruned(images, job.layer, np.full(len(patterns), map_id), job.test_epochs, schedule,
                                   slice_map=True)
        top = scores.ranking()[: job.top]
        starts = images[top]
        map_ids = np.full(len(top), map_id)
        initial = ascent.losses(starts, ascent.map_objective(job.layer, map_ids))
        result = ascent.run_maps(starts, job.layer, map_ids, job.epochs)
        steps = scores.image_steps + int((initial != 0.0).sum()) * job.epochs
        return self._row(map_id, starts, patterns[top], result.losses, result.images, steps,
                         time.process_time() - started)

    def _row(self, map_id, starts, start_ids, losses, images, image_steps, cpu_seconds) -> dict:
        best = int(np.argmax(losses))  # ties: the first start
        return {"map": int(map_id), "starts": len(starts),
                "start_sha256": sha256(np.ascontiguousarray(starts, np.float32).tobytes()),
                "start_losses": [float(v) for v in losses], "best_start": int(start_ids[best]),
                "loss": float(losses[best]), "alive": bool(losses[best] > 0), "image_steps": int(image_steps),
                "cpu_seconds": float(cpu_seconds), "image": images[best].reshape(-1).astype(np.float32)}


# ----- phase 3: the comparison ----------------------------------------------------------------------
COMPARISON_INPUT = ("seed", "method", "map", "loss", "alive", "image_steps", "cpu_seconds")


def compare(runs) -> pa.Table:
    """Per (model, map, method) from the runs (a DataFrame with COMPARISON_INPUT): the ratio
    of its loss to the best method's on that (model, map), and whether it woke a map that
    every random start left dead."""
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


def method_summary(comparison):
    """Per method over all models (a DataFrame): maps, maps alive, maps random starts left
    dead and how many it woke; on those dead maps the median and minimum ratio to the best
    method, on how many it was the best, and its image-steps and CPU seconds there (the cost
    of a rescue); the median ratio and image-steps over all maps it ran on."""
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
    import pandas as pd

    order = {m: i for i, m in enumerate((RANDOM, *WARMUPS, PRECURSOR, PRECURSOR_EXHAUSTIVE))}
    return pd.DataFrame(rows).sort_values("method", key=lambda s: s.map(order)).reset_index(drop=True)


@dataclass(frozen=True)
class ComparisonPhase:
    """One small task: the comparison from the runs (images left out)."""

    job: RescueExperiment
    name = "comparison"
    unit = "rows"
    schema = COMPARISON_SCHEMA
    needs_model = False
    must_be_finite = ("loss",)  # the ratio is null where every method is dead

    def shared(self) -> None:
        return None

    def shards(self, tables) -> list[Shard]:
        runs = pa.concat_tables([tables[name].select(list(COMPARISON_INPUT)) for name in ("runs", PRECURSOR_RUNS)
                                 if name in tables]).to_pandas()
        return [Shard("all", runs, len(runs), len(runs))]

    def compute(self, context: None, runs, on_item: Callable[[str], Any] | None = None) -> pa.Table:
        return compare(runs)


def rescue_figure(comparison, title: str):
    """Left, one row per model: the final loss of every map (sorted by the best method's
    loss) by method, maps random starts left dead marked; right: the image-steps spent on
    those dead maps against how many were woken, one point per (model, method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    return figure
