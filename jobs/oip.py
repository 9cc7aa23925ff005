"""OIPs for chosen maps of a layer from random multi-scale starts (algorithms.md §2).

One shard = a block of maps × all their restarts; each (map, restart) start image is
seeded by (seed, map, restart), so results do not depend on how the work was cut.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from core.ascent import LEARNING_RATE
from core.patterns import SCALE_AMPLITUDES, SCALE_GRIDS, random_multiscale_images
from jobs.base import IMAGE_TYPE, ModelSession, Shard
from jobs.figures import image_grid

OIP_SCHEMA = pa.schema(
    [
        ("layer", pa.string()),
        ("map", pa.int32()),
        ("restart", pa.int32()),
        ("loss", pa.float32()),
        ("alive", pa.bool_()),
        ("image", IMAGE_TYPE),
    ]
)


def start_images(seed: int, map_id: int, restarts: int, grids, amplitudes) -> np.ndarray:
    """The ``restarts`` random 4-scale start images of one map, float32 (R, 28, 28)."""
    return np.concatenate(
        [random_multiscale_images(1, (seed, map_id, r), grids, amplitudes) for r in range(restarts)]
    )


@dataclass(frozen=True)
class OipJob:
    """Parameters of ``dreamctl oip``."""

    layer: str = "conv3"
    maps: tuple[int, ...] = tuple(range(128))
    epochs: int = 1200
    restarts: int = 8
    seed: int = 0
    learning_rate: float = LEARNING_RATE
    scale_grids: tuple[int, ...] = SCALE_GRIDS
    scale_amplitudes: tuple[float, ...] = SCALE_AMPLITUDES
    maps_per_shard: int = 16

    name = "oip"

    def params(self) -> dict:
        return asdict(self)

    def phases(self) -> list:
        return [OipPhase(self)]

    def write_outputs(self, tables: dict[str, pa.Table], store) -> list[Path]:
        best = best_per_map(tables["oips"])
        titles = [f"{m}: {loss:.3g}" + ("" if alive else " dead") for m, loss, alive in
                  zip(best["map"], best["loss"], best["alive"])]
        path = image_grid(list(best["image"]), titles, store.path("oips.png"),
                          suptitle=f"OIPs of {self.layer} ({self.epochs} epochs, best of {self.restarts} restarts)")
        return [path]


def best_per_map(table: pa.Table):
    """pandas DataFrame: the highest-loss row of every map, ordered by map."""
    frame = table.to_pandas()
    index = frame.groupby("map")["loss"].idxmax()
    return frame.loc[index].sort_values("map").reset_index(drop=True)


@dataclass(frozen=True)
class OipPhase:
    job: OipJob
    name = "oips"
    unit = "images"
    schema = OIP_SCHEMA
    needs_model = True

    def shared(self):
        return None

    def shards(self, tables) -> list[Shard]:
        maps = self.job.maps
        step = self.job.maps_per_shard
        return [
            Shard(
                shard_id=f"maps-{block[0]:04d}-{block[-1]:04d}",
                payload=block,
                n_rows=len(block) * self.job.restarts,
                n_items=len(block) * self.job.restarts,
            )
            for block in (maps[i : i + step] for i in range(0, len(maps), step))
        ]

    def compute(self, session: ModelSession, map_block: tuple[int, ...]) -> pa.Table:
        job = self.job
        images = np.concatenate(
            [start_images(job.seed, m, job.restarts, job.scale_grids, job.scale_amplitudes) for m in map_block]
        )
        map_ids = np.repeat(np.asarray(map_block), job.restarts)
        result = session.ascent([job.layer]).run_maps(images, job.layer, map_ids, job.epochs, job.learning_rate)
        return pa.table(
            {
                "layer": [job.layer] * len(map_ids),
                "map": map_ids.astype(np.int32),
                "restart": np.tile(np.arange(job.restarts, dtype=np.int32), len(map_block)),
                "loss": result.losses,
                "alive": result.losses > 0,
                "image": pa.FixedSizeListArray.from_arrays(result.images.reshape(-1), 28 * 28),
            },
            schema=OIP_SCHEMA,
        )
