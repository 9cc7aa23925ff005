"""The precursor run (algorithms.md §3): coarse patterns → short ascent → top N → full ascent.

Phase ``scores``: every selected map × every pattern index, sharded by (map, index range);
the start images are made inside the worker from their indices. Phase ``oips``: the top N
patterns of every map (by score; ties to the lower index) run for the full epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.params import check_params, param, parse_floats
from core.patterns import check_pattern_space, coarse_patterns, precursor_images
from jobs.base import IMAGE_TYPE, CNNPhase, ModelSession, Shard, check_maps, layer_param, learning_rate_param, maps_param, spec_params

SCORES_SCHEMA = pa.schema(
    [
        ("layer", pa.string()),
        ("map", pa.int32()),
        ("pattern", pa.int64()),
        ("loss", pa.float32()),
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


@dataclass(frozen=True)
class PrecursorJob:
    """Parameters of ``dreamctl precursor``; defaults are the seed's."""

    layer: str = layer_param()
    maps: tuple[int, ...] = maps_param()
    grid: int = param(3, "Coarse grid cells per side (grid² cells, each one level).", low=1, high=28)
    levels: tuple[float, ...] = param((0.2, 0.5, 0.8), "Pixel levels a cell can take, comma-separated.",
                                      low=0.0, high=1.0, parse=parse_floats)
    test_epochs: int = param(10, "Ascent steps per pattern in phase 1 (its score).", low=0)
    top: int = param(8, "Best patterns per map that get the full run.", low=1)
    full_epochs: int = param(1200, "Ascent steps of the phase-2 runs.", low=0)
    learning_rate: float = learning_rate_param()
    patterns_per_shard: int = param(4096, "Phase-1 shard size (patterns of one map).", low=1)
    maps_per_oip_shard: int = param(16, "Phase-2 shard size (maps, each with its top patterns).", low=1)

    name = "precursor"
    needs_model = True
    needs_data = False

    def __post_init__(self):
        check_params(self)
        object.__setattr__(self, "maps", check_maps(self.maps, self.layer))
        check_pattern_space(self.grid, self.levels)

    @property
    def n_patterns(self) -> int:
        return check_pattern_space(self.grid, self.levels)

    def params(self) -> dict:
        return spec_params(self)

    def phases(self) -> list:
        return [ScoresPhase(self), OipsPhase(self)]

    def write_outputs(self, tables: dict[str, pa.Table], store) -> list[Path]:
        from jobs.figures import image_grid

        best = best_candidates(tables["oips"])
        titles = [f"{m}: {loss:.3g}" + ("" if alive else " dead")
                  for m, loss, alive in zip(best["map"], best["loss"], best["alive"])]
        path = image_grid(
            list(best["image"]), titles, store.path("oips.png"),
            suptitle=f"precursor OIPs of {self.layer} (best of top {self.top}, {self.full_epochs} epochs)",
        )
        return [path]

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
    """The ``top`` best-scoring patterns of every map (ties: lower pattern index first),
    with their rank 1..top. Columns: map, rank, pattern, score."""
    ordered = scores.sort_by([("map", "ascending"), ("loss", "descending"), ("pattern", "ascending")])
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
        images = precursor_images(patterns, job.grid, job.levels)
        map_ids = np.full(len(patterns), map_id)
        result = session.ascent([job.layer]).run_maps(images, job.layer, map_ids, job.test_epochs, job.learning_rate)
        return pa.table(
            {"layer": [job.layer] * len(patterns), "map": map_ids.astype(np.int32), "pattern": patterns, "loss": result.losses},
            schema=SCORES_SCHEMA,
        )


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
