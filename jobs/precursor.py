"""The precursor run (algorithms.md §3): coarse patterns → short ascent → top N → full ascent.

Phase ``scores``: every selected map × every pattern index, sharded by (map, index range);
the start images are made inside the worker from their indices. By default phase 1 is
pruned adaptively (issue 22, :mod:`core.pruning`, ``core.ascent.Ascent.run_adaptive``): a
few starts of each shard run to the end first, and at every step the shard drops the starts
that can no longer climb to its ``top`` best (``--prune-sample``, ``--prune-leaders``,
``--prune-margin``). ``--prune step:keep,...`` is a fixed successive halving instead (issue 12,
``Ascent.run_pruned``), ``--exhaustive`` runs every start for all ``test_epochs`` (the seed's
procedure). Each row keeps the loss at the last step its start reached and that step
(``steps``): the phase-1 image-steps of a shard are the sum of ``steps`` over its moving
starts. Phase ``oips``: the top N patterns of every map (see :func:`top_candidates`) run for
the full epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import BadParameter
from core.defaults import ADAPTIVE_LEADERS, ADAPTIVE_MARGIN, ADAPTIVE_SAMPLE
from core.defaults import PRUNE_SCHEDULE as DEFAULT_PRUNE_SCHEDULE
from core.params import check_params, param, parse_floats
from core.patterns import check_pattern_space, coarse_patterns, precursor_images
from jobs.base import IMAGE_TYPE, Artifact, CNNPhase, ModelSession, Shard, with_work, check_maps, layer_param, learning_rate_param, maps_param, spec_params

SCORES_SCHEMA = pa.schema(
    [
        ("layer", pa.string()),
        ("map", pa.int32()),
        ("pattern", pa.int64()),
        ("loss", pa.float32()),  # at step `steps`
        ("steps", pa.int32()),  # ascent steps the start ran: test_epochs unless a cut dropped it
    ]
)
OIPS_SCHEMA = pa.schema(
    [
        ("layer", pa.string()),
        ("map", pa.int32()),
        ("rank", pa.int32()),
        ("pattern", pa.int64()),
        ("score", pa.float32()),
        ("loss", pa.float32()),
        ("alive", pa.bool_()),
        ("image", IMAGE_TYPE),
    ]
)


class Cut(NamedTuple):
    """One cut of a successive-halving schedule: after ``step`` ascent steps, keep the
    ``keep`` best starts of each map in each shard. Written ``step:keep`` on the CLI."""

    step: int
    keep: int

    def __str__(self) -> str:
        return f"{self.step}:{self.keep}"


PRUNE_SCHEDULE: tuple[Cut, ...] = tuple(Cut(*cut) for cut in DEFAULT_PRUNE_SCHEDULE)
SHARD = 4096  # phase-1 patterns per shard, exhaustive or a fixed schedule (issue 12's unit of keep counts)
ADAPTIVE_SHARD = 20_000  # with adaptive pruning: a whole map of the default grid (3^9 = 19,683)


ADAPTIVE = "adaptive"  # --prune's text for the adaptive rule (the value None)


def parse_prune(text: str, spec: Any = None) -> tuple[Cut, ...] | None:
    """'2:2048,5:128' -> (Cut(2, 2048), Cut(5, 128)); 'adaptive' -> None (no fixed
    schedule: the adaptive rule). Raises ValueError (one line)."""
    if text.strip().lower() == ADAPTIVE:
        return None
    cuts = []
    for part in (part.strip() for part in text.split(",") if part.strip()):
        try:
            step, keep = (int(value) for value in part.split(":"))
        except ValueError:
            raise ValueError(f"cannot read {part!r} (use step:keep pairs, e.g. 2:2048,5:128, or {ADAPTIVE})") from None
        cuts.append(Cut(step, keep))
    if not cuts:
        raise ValueError(f"no cut given (use step:keep pairs, e.g. 2:2048,5:128, or {ADAPTIVE}; --exhaustive for none)")
    return tuple(cuts)


def check_prune(cuts: Any, test_epochs: int) -> tuple[Cut, ...]:
    """The cuts that act in a phase 1 of ``test_epochs`` steps (a cut at step ≥ test_epochs
    drops nothing), after checking all of them: steps ≥ 1 increasing, keeps ≥ 1
    non-increasing. Raises BadParameter('prune', ...)."""
    try:
        cuts = tuple(Cut(int(step), int(keep)) for step, keep in cuts)
    except (TypeError, ValueError):
        raise BadParameter("prune", f"needs (step, keep) pairs, got {cuts!r}") from None
    steps, keeps = [cut.step for cut in cuts], [cut.keep for cut in cuts]
    if any(step < 1 for step in steps) or any(b <= a for a, b in zip(steps, steps[1:])):
        raise BadParameter("prune", f"steps must be >= 1 and increasing, got {', '.join(map(str, steps))}")
    if any(keep < 1 for keep in keeps) or any(b > a for a, b in zip(keeps, keeps[1:])):
        raise BadParameter("prune", f"keep counts must be >= 1 and non-increasing, got {', '.join(map(str, keeps))}")
    return tuple(cut for cut in cuts if cut.step < test_epochs)


@dataclass(frozen=True)
class PrecursorJob:
    """Parameters of ``dreamctl precursor``; defaults are the seed's."""

    layer: str = layer_param()
    maps: tuple[int, ...] = maps_param()
    grid: int = param(3, "Coarse grid cells per side (grid² cells, each one level).", low=1, high=28)
    levels: tuple[float, ...] = param((0.2, 0.5, 0.8), "Pixel levels a cell can take, comma-separated.",
                                      low=0.0, high=1.0, parse=parse_floats)
    test_epochs: int = param(10, "Ascent steps per pattern in phase 1 (its score).", low=0)
    prune: tuple[Cut, ...] | None = param(
        ADAPTIVE, f"Phase-1 pruning: {ADAPTIVE} (the default: each shard drops, at every step, the starts that can no "
        "longer climb to its --top best; see --prune-sample) or a fixed successive halving step:keep,...: after "
        "`step` steps only the `keep` best starts of each map in each shard go on (cuts at steps >= --test-epochs "
        f"do nothing; the issue-12 default was {','.join(map(str, PRUNE_SCHEDULE))}).", parse=parse_prune)
    prune_sample: int | None = param(
        ADAPTIVE_SAMPLE, "Adaptive pruning: live starts of each shard, drawn at random, that run all --test-epochs "
        "first; from them and the leaders the shard learns how fast a start can still climb.", low=1)
    prune_leaders: int | None = param(
        ADAPTIVE_LEADERS, "Adaptive pruning: the best starts of each shard after one step that also run all "
        "--test-epochs first; with the sample they set the bar (their --top-th best final loss).", low=0)
    prune_margin: float | None = param(
        ADAPTIVE_MARGIN, "Adaptive pruning: relative widening of how far a start is taken to be able to climb "
        "(0 = as learned; larger drops fewer starts).", low=0.0, high=10.0)
    exhaustive: bool = param(False, "Phase 1 without pruning: every start runs all --test-epochs (the seed's "
                             "procedure; also what --prune amounts to when no cut falls before --test-epochs).")
    top: int = param(8, "Best patterns per map that get the full run.", low=1)
    full_epochs: int = param(1200, "Ascent steps of the phase-2 runs.", low=0)
    learning_rate: float = learning_rate_param()
    patterns_per_shard: int | None = param(
        None, "Phase-1 shard size (patterns of one map). Default: 20,000 with --prune adaptive (each map of the "
        "default 3×3 grid is one shard: the rule learns from, and cuts against, the whole map), 4,096 otherwise.",
        low=1)
    maps_per_oip_shard: int = param(16, "Phase-2 shard size (maps, each with its top patterns).", low=1)

    name = "precursor"
    needs_model = True
    needs_data = False

    def __post_init__(self):
        check_params(self)
        object.__setattr__(self, "maps", check_maps(self.maps, self.layer))
        n_patterns = check_pattern_space(self.grid, self.levels)
        if self.top > n_patterns:  # phase 2 would start from patterns that do not exist
            raise BadParameter("top", f"{self.top} patterns per map, but a {self.grid}x{self.grid} grid with "
                                      f"{len(self.levels)} levels has only {n_patterns} patterns")
        # Only the cuts that act are kept, no cut at all means exhaustive, and the adaptive
        # rule's constants are kept only when it runs: the run id follows what is computed,
        # not how it was spelled. (The adaptive rule cuts at steps 1 .. test_epochs - 1.)
        adaptive = self.prune is None and not self.exhaustive and self.test_epochs >= 2
        cuts = None if self.prune is None else check_prune(self.prune, self.test_epochs)
        exhaustive = not adaptive and (self.exhaustive or not cuts)
        object.__setattr__(self, "prune", None if adaptive else () if exhaustive else cuts)
        object.__setattr__(self, "exhaustive", exhaustive)
        if adaptive:
            for name in ("prune_sample", "prune_leaders", "prune_margin"):
                if getattr(self, name) is None:
                    raise BadParameter(name, "is needed by the adaptive rule (--prune adaptive)")
        else:
            for name in ("prune_sample", "prune_leaders", "prune_margin"):
                object.__setattr__(self, name, None)
        if self.patterns_per_shard is None:
            object.__setattr__(self, "patterns_per_shard", ADAPTIVE_SHARD if adaptive else SHARD)

    @property
    def n_patterns(self) -> int:
        return check_pattern_space(self.grid, self.levels)

    def params(self) -> dict:
        return spec_params(self)

    def phases(self) -> list:
        return [ScoresPhase(self), OipsPhase(self)]

    def outputs(self, tables: dict[str, pa.Table], locate) -> list[Artifact]:
        from jobs.figures import image_grid

        best = best_candidates(tables["oips"])
        titles = [f"{m}: {loss:.3g}" + ("" if alive else " dead")
                  for m, loss, alive in zip(best["map"], best["loss"], best["alive"])]
        return [Artifact("oips.png", image_grid(
            list(best["image"]), titles,
            suptitle=f"precursor OIPs of {self.layer} (best of top {self.top}, {self.full_epochs} epochs)"))]

    def describe_pattern(self, pattern: int) -> str:
        """The coarse grid of a pattern index as text, rows separated by '/'."""
        levels = coarse_patterns(np.array([pattern]), self.grid, self.levels)[0]
        return "/".join(" ".join(f"{value:g}" for value in row) for row in levels)


def best_candidates(oips: pa.Table):
    """pandas DataFrame: per map the candidate with the highest final loss."""
    frame = oips.to_pandas()
    frame = frame.sort_values(["map", "loss", "rank"], ascending=[True, False, True])
    return frame.groupby("map", as_index=False).head(1).reset_index(drop=True)


def top_candidates(scores: pa.Table, top: int) -> pa.Table:
    """The ``top`` best-scoring patterns of every map, with their rank 1..top. Columns:
    map, rank, pattern, score (the phase-1 loss).

    Patterns rank by the step they reached first (``steps``, descending), then by loss
    (descending), then by index (ascending). A pattern dropped by a cut holds a loss from
    an earlier step, which says nothing against one that ran all ``test_epochs``: so when
    at least ``top`` patterns of a map reached ``test_epochs`` (survivors of every cut, and
    frozen starts, whose loss 0 is exact at any step), only those are chosen, exactly as an
    exhaustive run would choose among them; only when a schedule keeps fewer than ``top``
    does the rest come from the starts cut latest, best loss first. Without pruning every
    pattern has steps = test_epochs and this is the plain ranking by loss.
    """
    ordered = scores.sort_by([("map", "ascending"), ("steps", "descending"), ("loss", "descending"),
                              ("pattern", "ascending")])
    maps = ordered.column("map").to_numpy()
    starts = np.flatnonzero(np.r_[True, maps[1:] != maps[:-1]])
    rank_in_map = np.arange(len(maps)) - np.repeat(starts, np.diff(np.r_[starts, len(maps)]))
    keep = rank_in_map < top
    return pa.table(
        {
            "map": pc.filter(ordered.column("map"), keep),
            "rank": (rank_in_map[keep] + 1).astype(np.int32),
            "pattern": pc.filter(ordered.column("pattern"), keep),
            "score": pc.filter(ordered.column("loss"), keep),
        }
    )


@dataclass(frozen=True)
class ScoresPhase(CNNPhase):
    job: PrecursorJob
    name = "scores"
    unit = "patterns"
    schema = SCORES_SCHEMA
    must_be_finite = ("loss",)

    def shards(self, tables) -> list[Shard]:
        n_patterns = self.job.n_patterns
        step = self.job.patterns_per_shard
        return [
            Shard(
                shard_id=f"map{map_id:04d}-{start:09d}",
                payload=(map_id, start, min(start + step, n_patterns)),
                n_rows=min(step, n_patterns - start),
                n_items=min(step, n_patterns - start),
            )
            for map_id in self.job.maps
            for start in range(0, n_patterns, step)
        ]

    def compute(self, session: ModelSession, payload: tuple[int, int, int]) -> pa.Table:
        map_id, start, stop = payload
        job = self.job
        patterns = np.arange(start, stop, dtype=np.int64)
        # the same starts for every map: an actor makes them once per pattern range
        images = session.made_once(("precursor starts", job.grid, tuple(job.levels), start, stop),
                                   lambda: precursor_images(patterns, job.grid, job.levels))
        map_ids = np.full(len(patterns), map_id)
        # A shard holds one map: conv3 computes that map alone (slice_map). The exhaustive
        # run is the empty schedule, so every mode gives bit-identical survivors. The
        # adaptive rule's random sample is seeded by the shard (map, first pattern): a shard's
        # result depends on nothing else.
        ascent = session.ascent([job.layer])
        if job.prune is None:
            result = ascent.run_adaptive(images, job.layer, map_ids, job.test_epochs, job.top, job.prune_sample,
                                         job.prune_leaders, job.prune_margin, seed=(map_id, start),
                                         learning_rate=job.learning_rate, slice_map=True)
        else:
            result = ascent.run_pruned(images, job.layer, map_ids, job.test_epochs, job.prune, job.learning_rate,
                                       slice_map=True)
        table = pa.table(
            {"layer": [job.layer] * len(patterns), "map": map_ids.astype(np.int32), "pattern": patterns,
             "loss": result.losses, "steps": result.epochs_reached.astype(np.int32)},
            schema=SCORES_SCHEMA,
        )
        return with_work(table, map=int(map_id), image_steps=int(result.image_steps),
                         discarded_steps=int(result.discarded_steps), loss_passes=int(result.loss_passes))


@dataclass(frozen=True)
class OipsPhase(CNNPhase):
    job: PrecursorJob
    name = "oips"
    unit = "images"
    schema = OIPS_SCHEMA
    must_be_finite = ("score", "loss", "image")

    def shards(self, tables) -> list[Shard]:
        candidates = top_candidates(tables["scores"], self.job.top).to_pydict()
        by_map: dict[int, list[tuple[int, int, float]]] = {}
        for map_id, rank, pattern, score in zip(candidates["map"], candidates["rank"], candidates["pattern"], candidates["score"]):
            by_map.setdefault(map_id, []).append((rank, pattern, score))
        maps = sorted(by_map)
        step = self.job.maps_per_oip_shard
        shards = []
        for i in range(0, len(maps), step):
            block = tuple((m, tuple(by_map[m])) for m in maps[i : i + step])
            n_rows = sum(len(rows) for _, rows in block)
            shards.append(Shard(f"maps-{block[0][0]:04d}-{block[-1][0]:04d}", block, n_rows, n_rows))
        return shards

    def compute(self, session: ModelSession, block) -> pa.Table:
        job = self.job
        map_ids = np.array([m for m, rows in block for _ in rows], np.int64)
        ranks = np.array([rank for _, rows in block for rank, _, _ in rows], np.int32)
        patterns = np.array([pattern for _, rows in block for _, pattern, _ in rows], np.int64)
        scores = np.array([score for _, rows in block for _, _, score in rows], np.float32)
        images = precursor_images(patterns, job.grid, job.levels)
        result = session.ascent([job.layer]).run_maps(images, job.layer, map_ids, job.full_epochs, job.learning_rate)
        return pa.table(
            {
                "layer": [job.layer] * len(map_ids),
                "map": map_ids.astype(np.int32),
                "rank": ranks,
                "pattern": patterns,
                "score": scores,
                "loss": result.losses,
                "alive": result.losses > 0,
                "image": pa.FixedSizeListArray.from_arrays(result.images.reshape(-1), 28 * 28),
            },
            schema=OIPS_SCHEMA,
        )


def per_map(tables: dict[str, pa.Table], records: dict[str, dict[str, dict]], full_epochs: int):
    """pandas DataFrame, one row per map of a precursor run: the best phase-2 ``loss``, the
    ``image_steps`` computed (phase 1: what each shard reported; phase 2: ``full_epochs``
    for every candidate with a phase-1 score above 0, a frozen one is never computed) and
    the ``cpu_seconds`` and wall ``seconds`` (phase 1 per map, phase 2 spread by image-steps)."""
    import pandas as pd

    from jobs.oip import spread_work

    scores = pd.DataFrame([{"map": record["map"], "image_steps": record["image_steps"],
                            "cpu_seconds": record.get("cpu_seconds") or 0.0, "seconds": record.get("seconds") or 0.0}
                           for record in records["scores"].values()]).groupby("map").sum()
    oips = tables["oips"].select(["map", "score", "loss"]).to_pandas()
    oips["image_steps"] = np.where(oips["score"] != 0, full_epochs, 0)
    found = spread_work(oips.groupby("map").agg(loss=("loss", "max"), image_steps=("image_steps", "sum")).reset_index(),
                        records["oips"])
    for column in ("image_steps", "cpu_seconds", "seconds"):
        found[column] += scores[column].reindex(found["map"]).to_numpy()
    return found
