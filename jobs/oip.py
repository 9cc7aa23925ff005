"""OIPs for chosen maps of a layer from random multi-scale starts (algorithms.md §2).

One shard = a block of maps × all their restarts; each (map, restart) start image is
seeded by (seed, map, restart), so results do not depend on how the work was cut.
With ``--warmup W`` (issue 13) the first W steps follow a surrogate that has a gradient
where the map is off everywhere (``--warmup-kind``, see ``core.ascent``), the rest the
map's post-ReLU mean: starts that plain ascent leaves dead can wake up.

Phase ``oips``: every map from its random starts. Phase ``rescued`` (unless ``--rescue none``):
the maps whose every start ended dead, again from the same starts with the first
``--rescue-warmup`` steps on the leaky-ReLU warm-up (default): on 3 models of the bundled
digits it woke every such map, as good as the precursor at a fraction of its compute
(``dreamctl experiment rescue``, docs/rescue.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from core.defaults import WARMUP_KINDS
from core.errors import BadParameter
from core.params import check_params, param, parse_floats, parse_ints
from core.patterns import SCALE_AMPLITUDES, SCALE_GRIDS, random_multiscale_images
from jobs.base import IMAGE_TYPE, Artifact, CNNPhase, ModelSession, Shard, check_maps, layer_param, learning_rate_param, maps_param, spec_params

OIP_SCHEMA = pa.schema(
    [
        ("layer", pa.string()),
        ("map", pa.int32()),
        ("restart", pa.int32()),
        ("start_loss", pa.float32()),  # the objective of the start image (0 and no warm-up: frozen, never computed)
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

    layer: str = layer_param()
    maps: tuple[int, ...] = maps_param()
    epochs: int = param(1200, "Ascent steps per image.", low=0)
    restarts: int = param(8, "Random 4-scale start images per map.", low=1, high=100_000)
    seed: int = param(0, "Seed of the start images (image r of map m is seeded by (seed, m, r)).", low=0)
    learning_rate: float = learning_rate_param()
    warmup: int = param(0, "Warm-up steps: the first W of --epochs follow --warmup-kind (a gradient even where the "
                        "map is off everywhere), the rest the post-ReLU mean; 0 = none.", low=0)
    warmup_kind: str = param("pre_relu", "Warm-up objective: pre_relu (mean before the ReLU) or leaky_relu (post-ReLU "
                             "mean with a leaky ReLU gradient).", choices=WARMUP_KINDS)
    scale_grids: tuple[int, ...] = param(SCALE_GRIDS, "Cells per side of each random length scale of a start.",
                                         low=1, high=28, parse=parse_ints)
    scale_amplitudes: tuple[float, ...] = param(SCALE_AMPLITUDES, "Amplitude of each length scale (one per grid).",
                                                low=0.0, parse=parse_floats)
    maps_per_shard: int = param(16, "Maps per shard (each with all its restarts).", low=1)
    rescue: str = param("leaky_relu", "Maps every random start leaves dead are run again from the same starts, the "
                        "first --rescue-warmup steps with this warm-up: leaky_relu (the ReLU's gradient made leaky; "
                        "what dreamctl experiment rescue found best, docs/rescue.md) or pre_relu (the mean before "
                        "the ReLU); none leaves them dead. Not used with --warmup.", choices=(*WARMUP_KINDS, "none"))
    rescue_warmup: int = param(100, "Warm-up steps of the rescue of a dead map (the first of its --epochs; at most "
                               "all of them).", low=1)

    name = "oip"
    needs_model = True
    needs_data = False

    def __post_init__(self):
        check_params(self)
        object.__setattr__(self, "maps", check_maps(self.maps, self.layer))
        if self.warmup > self.epochs:
            raise BadParameter("warmup", f"must be at most the epochs ({self.epochs}), got {self.warmup}")
        if len(self.scale_grids) != len(self.scale_amplitudes):
            raise BadParameter("scale_amplitudes", f"give one per scale grid ({len(self.scale_grids)})")

    @property
    def rescues(self) -> bool:
        """True when maps left dead get the warm-up rescue (phase ``rescued``)."""
        return self.rescue != "none" and self.warmup == 0

    def params(self) -> dict:
        # without a rescue phase, the run id is the one of a run made before the rescue existed
        return spec_params(self, exclude=() if self.rescues else ("rescue", "rescue_warmup"))

    def phases(self) -> list:
        return [OipPhase(self), RescuePhase(self)] if self.rescues else [OipPhase(self)]

    def outputs(self, tables: dict[str, pa.Table], locate) -> list[Artifact]:
        from jobs.figures import image_grid

        best = best_per_map(tables["oips"], tables.get("rescued"))
        titles = [f"{m}: {loss:.3g}" + (" dead" if not alive else " rescued" if rescued else "") for m, loss, alive, rescued
                  in zip(best["map"], best["loss"], best["alive"], best["rescued"])]
        return [Artifact("oips.png", image_grid(list(best["image"]), titles, suptitle=(
            f"OIPs of {self.layer} ({self.epochs} epochs, best of {self.restarts} restarts)")))]


def best_per_map(oips: pa.Table, rescued: pa.Table | None = None):
    """pandas DataFrame: the highest-loss row of every map, ordered by map; a map every random
    start left dead takes its rescue's best (``rescued`` True) when it has one."""
    import pandas as pd

    frame = oips.to_pandas().assign(rescued=False)
    if rescued is not None and rescued.num_rows:
        frame = frame.loc[~frame["map"].isin(set(rescued.column("map").to_pylist()))]
        frame = pd.concat([frame, rescued.to_pandas().assign(rescued=True)], ignore_index=True)
    index = frame.groupby("map")["loss"].idxmax()
    return frame.loc[index].sort_values("map").reset_index(drop=True)


def dead_maps(oips: pa.Table) -> list[int]:
    """The maps of an ``oips`` table whose every start ended at loss 0, ascending."""
    frame = oips.select(["map", "alive"]).to_pandas()
    alive = frame.groupby("map")["alive"].any()
    return sorted(int(m) for m in alive.index[~alive])


@dataclass(frozen=True)
class OipPhase(CNNPhase):
    job: OipJob
    name = "oips"
    unit = "images"
    schema = OIP_SCHEMA
    must_be_finite = ("loss", "image")

    def shards(self, tables) -> list[Shard]:
        """Blocks of ``maps_per_shard`` maps of :meth:`maps`, each with all its restarts."""
        maps, step, restarts = self.maps(tables), self.job.maps_per_shard, self.job.restarts
        return [Shard(f"maps-{block[0]:04d}-{block[-1]:04d}", block, len(block) * restarts, len(block) * restarts)
                for block in (tuple(maps[i : i + step]) for i in range(0, len(maps), step))]

    def maps(self, tables) -> tuple[int, ...]:
        return self.job.maps

    def compute(self, session: ModelSession, map_block: tuple[int, ...]) -> pa.Table:
        return self.ascend(session, map_block, self.job.warmup, self.job.warmup_kind)

    def ascend(self, session: ModelSession, map_block: tuple[int, ...], warmup: int, warmup_kind: str) -> pa.Table:
        """Every restart of the block's maps from its start image, ``warmup`` steps on ``warmup_kind`` first."""
        job = self.job
        images = np.concatenate(
            [start_images(job.seed, m, job.restarts, job.scale_grids, job.scale_amplitudes) for m in map_block]
        )
        map_ids = np.repeat(np.asarray(map_block), job.restarts)
        result = session.ascent([job.layer]).run_maps(images, job.layer, map_ids, job.epochs, job.learning_rate,
                                                      record_epochs=(0, job.epochs), warmup=warmup, warmup_kind=warmup_kind)
        return pa.table(
            {
                "layer": [job.layer] * len(map_ids),
                "map": map_ids.astype(np.int32),
                "restart": np.tile(np.arange(job.restarts, dtype=np.int32), len(map_block)),
                "start_loss": result.history[0],
                "loss": result.losses,
                "alive": result.losses > 0,
                "image": pa.FixedSizeListArray.from_arrays(result.images.reshape(-1), 28 * 28),
            },
            schema=OIP_SCHEMA,
        )


@dataclass(frozen=True)
class RescuePhase(OipPhase):
    """The maps every random start left dead, from the same starts with the ``rescue`` warm-up."""

    name = "rescued"

    def maps(self, tables) -> tuple[int, ...]:
        return tuple(dead_maps(tables["oips"]))

    def compute(self, session: ModelSession, map_block: tuple[int, ...]) -> pa.Table:
        return self.ascend(session, map_block, min(self.job.rescue_warmup, self.job.epochs), self.job.rescue)


def per_map(oips: pa.Table, records: dict[str, dict], epochs: int, warmup: int):
    """pandas DataFrame, one row per map of an ``oips`` table: the best final ``loss``, the
    ``image_steps`` computed (a start runs ``epochs`` steps unless it is frozen: loss 0 at
    its start and no warm-up), and the ``cpu_seconds`` and wall ``seconds`` of the phase's
    shards (``records``: their commit records), spread over the maps by image-steps."""
    frame = oips.select(["map", "loss", "start_loss"]).to_pandas()
    moving = (frame["start_loss"].fillna(1.0) != 0) | (warmup > 0)  # no start_loss (older runs): counted
    frame["image_steps"] = np.where(moving, epochs, 0)
    found = frame.groupby("map").agg(loss=("loss", "max"), image_steps=("image_steps", "sum")).reset_index()
    return spread_work(found, records)


def spread_work(frame, records: dict[str, dict]):
    """``frame`` (a DataFrame with ``image_steps``) with the CPU and wall seconds of the shards
    whose commit records are ``records`` spread over its rows by their image-steps."""
    steps = frame["image_steps"]
    share = steps / steps.sum() if steps.sum() else steps * 0.0
    for column in ("cpu_seconds", "seconds"):
        frame[column] = share * sum(record.get(column) or 0.0 for record in records.values())
    return frame
