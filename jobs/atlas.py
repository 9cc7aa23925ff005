"""The map atlas (issue 10): per map of a precursor run, what its OIPs reach and what the
test set does to it.

Phase ``metrics`` runs on the CNN actors, a shard = a block of maps. Per map it stores the
precursor's best loss and the random-start OIP's loss (reused from an ``oip`` run of the
same model when one covers the map, else computed here: ``oip_restarts`` starts ×
``oip_epochs`` steps, the start images of jobs/oip.py), alive under each; the map's
strongest mean activation over the test set and each OIP's ratio to it; what the CNN reads
in the precursor OIP (digit, probability, entropy in nats); the ``top_images`` strongest test
images; the coarse grid of the winning precursor start.

Everything the job needs from the precursor run (best candidate per map) and from an oip
run is read on the driver (cluster/report.py) and travels in the shard payloads; only the
test images travel with the job itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from core.atlas import TOP_IMAGES, map_activations, ratio_to_data_max, read_images, strongest_images
from core.defaults import LEARNING_RATE
from core.errors import BadInput
from core.params import check_params, param
from core.patterns import SCALE_AMPLITUDES, SCALE_GRIDS, coarse_patterns
from jobs.base import IMAGE_TYPE, Artifact, CNNPhase, ModelSession, Shard
from jobs.oip import best_per_map, start_images

COMPUTED = "computed"  # oip_source of a random-start OIP computed by this job

METRICS_SCHEMA = pa.schema(
    [
        ("layer", pa.string()),
        ("map", pa.int32()),
        ("precursor_loss", pa.float32()),  # best final loss of the precursor's top candidates
        ("precursor_alive", pa.bool_()),
        ("precursor_rank", pa.int32()),  # phase-1 rank of the winning start
        ("precursor_pattern", pa.int64()),  # its pattern index
        ("coarse", pa.list_(pa.float32())),  # its coarse grid, grid² pixel levels, row-major
        ("precursor_image", IMAGE_TYPE),  # standardized pixels
        ("oip_loss", pa.float32()),  # best of the random starts
        ("oip_alive", pa.bool_()),  # False: random starts leave the map dead
        ("oip_restart", pa.int32()),  # the winning start
        ("oip_restarts", pa.int32()),
        ("oip_epochs", pa.int32()),
        ("oip_source", pa.string()),  # "oip/<run_id>" (reused) or "computed"
        ("oip_image", IMAGE_TYPE),
        ("data_max", pa.float32()),  # strongest mean activation over the test set
        ("precursor_ratio", pa.float32()),  # precursor_loss / data_max (NaN: data_max 0)
        ("oip_ratio", pa.float32()),  # oip_loss / data_max
        ("digit", pa.int32()),  # the CNN's argmax on the precursor OIP
        ("probability", pa.float32()),  # its softmax probability
        ("entropy", pa.float32()),  # softmax entropy, nats
        ("top_indices", pa.list_(pa.int64())),  # test images that drive the map hardest, strongest first
        ("top_activations", pa.list_(pa.float32())),  # their mean activations
        ("top_labels", pa.list_(pa.int32())),  # their labels
    ]
)


@dataclass(frozen=True)
class ReusedOip:
    """The best random-start OIP of one map from an earlier ``oip`` run."""

    loss: float
    restart: int
    restarts: int
    epochs: int
    source: str  # "oip/<run_id>"
    image: np.ndarray  # float32 (784,)


@dataclass(frozen=True)
class MapInput:
    """What a shard needs about one map from the driver: the precursor's winner (and an
    earlier OIP when one is reused)."""

    map: int
    precursor_loss: float
    precursor_rank: int
    precursor_pattern: int
    precursor_image: np.ndarray  # float32 (784,), standardized pixels
    oip: ReusedOip | None = None


@dataclass(frozen=True)
class PrecursorRun:
    """What the atlas and the report need of a finished precursor run."""

    run_id: str
    params: dict
    model_hash: str | None
    data: dict
    best: object  # pandas DataFrame: best candidate per map (jobs.precursor.best_candidates)


def reused_oips(oips: pa.Table, run_id: str, params: dict) -> dict[int, ReusedOip]:
    """The best random-start OIP of every map of an ``oip`` run's table, to reuse."""
    return {
        int(row.map): ReusedOip(float(row.loss), int(row.restart), int(params["restarts"]), int(params["epochs"]),
                                f"oip/{run_id}", np.asarray(row.image, np.float32))
        for row in best_per_map(oips).itertuples()
    }


def images_checksum(images: np.ndarray) -> str:
    """SHA-256 (first 16 hex digits) of uint8 images and their shape."""
    images = np.ascontiguousarray(images)
    return hashlib.sha256(repr(images.shape).encode() + images.tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class AtlasJob:
    """Parameters of the atlas metrics for one precursor run (``dreamctl report``).

    inputs: one MapInput per map (from :func:`map_inputs`); test_images uint8 (N, 28, 28)
    and test_labels (N,): the test set of the model's data. Neither is a parameter: the run
    id records the precursor run, the oip run and the test set's checksum instead.
    """

    precursor_run: str = ""
    layer: str = "conv3"
    grid: int = 3
    levels: tuple[float, ...] = (0.2, 0.5, 0.8)
    oip_restarts: int = param(8, "Random 4-scale starts per map when no oip run has the map.", low=1)
    oip_epochs: int = param(300, "Ascent steps of those starts.", low=0)
    oip_seed: int = param(0, "Seed of those starts.", low=0)
    learning_rate: float = LEARNING_RATE
    scale_grids: tuple[int, ...] = SCALE_GRIDS
    scale_amplitudes: tuple[float, ...] = SCALE_AMPLITUDES
    oip_run: str | None = None
    top_images: int = param(TOP_IMAGES, "Strongest test images kept per map.", low=1)
    maps_per_shard: int = param(16, "Maps per metrics shard.", low=1)
    inputs: tuple[MapInput, ...] = field(default=(), repr=False, compare=False)
    test_images: np.ndarray | None = field(default=None, repr=False, compare=False)
    test_labels: np.ndarray | None = field(default=None, repr=False, compare=False)

    name = "atlas"
    needs_model = True
    needs_data = False

    def __post_init__(self):
        check_params(self)
        if self.test_images is not None and len(self.test_images) == 0:
            raise BadInput("atlas: the data set has no test images")

    def __getstate__(self) -> dict:
        # The map inputs travel in the shard payloads, not with every task.
        state = dict(self.__dict__)
        state["inputs"] = ()
        return state

    def params(self) -> dict:
        params = {key: getattr(self, key) for key in self.__dataclass_fields__
                  if key not in ("inputs", "test_images", "test_labels")}
        params["maps"] = [item.map for item in self.inputs]
        params["test_checksum"] = images_checksum(self.test_images) if self.test_images is not None else None
        return params

    def phases(self) -> list:
        return [MetricsPhase(self)]

    def outputs(self, tables: dict[str, pa.Table], locate) -> list[Artifact]:
        return []  # the report (jobs/report.py) goes into the precursor run's folder


def map_inputs(precursor: PrecursorRun, reused: dict[int, ReusedOip] | None = None) -> tuple[MapInput, ...]:
    """One MapInput per map of the precursor run, with the reused OIP where there is one."""
    reused = reused or {}
    return tuple(
        MapInput(int(row.map), float(row.loss), int(row.rank), int(row.pattern),
                 np.asarray(row.image, np.float32), reused.get(int(row.map)))
        for row in precursor.best.itertuples()
    )


@dataclass(frozen=True)
class MetricsPhase(CNNPhase):
    job: AtlasJob
    name = "metrics"
    unit = "maps"
    schema = METRICS_SCHEMA
    must_be_finite = ("precursor_loss", "precursor_image", "oip_loss", "oip_image", "data_max", "probability",
                      "entropy", "top_activations")  # the ratios are nan where data_max is 0

    def shards(self, tables) -> list[Shard]:
        inputs, step = self.job.inputs, self.job.maps_per_shard
        blocks = [inputs[i : i + step] for i in range(0, len(inputs), step)]
        return [Shard(f"maps-{block[0].map:04d}-{block[-1].map:04d}", block, len(block), len(block)) for block in blocks]

    def compute(self, session: ModelSession, block: tuple[MapInput, ...]) -> pa.Table:
        job = self.job
        map_ids = np.array([item.map for item in block], np.int64)
        test = session.standardization.apply(job.test_images)[..., 0]  # (N, 28, 28)
        strongest = strongest_images(map_activations(session.model, job.layer, test)[:, map_ids], job.top_images)
        precursor_images = np.stack([item.precursor_image for item in block]).reshape(-1, 28, 28)
        reading = read_images(session.model, precursor_images)
        oips = self.random_start_oips(session, block)
        precursor_losses = np.array([item.precursor_loss for item in block], np.float32)
        oip_losses = np.array([oip.loss for oip in oips], np.float32)
        patterns = np.array([item.precursor_pattern for item in block], np.int64)
        coarse = coarse_patterns(patterns, job.grid, job.levels).reshape(len(block), -1)
        labels = np.asarray(job.test_labels)[strongest.indices]
        return pa.table(
            {
                "layer": [job.layer] * len(block),
                "map": map_ids.astype(np.int32),
                "precursor_loss": precursor_losses,
                "precursor_alive": precursor_losses > 0,
                "precursor_rank": np.array([item.precursor_rank for item in block], np.int32),
                "precursor_pattern": patterns,
                "coarse": pa.array(list(coarse), pa.list_(pa.float32())),
                "precursor_image": pa.FixedSizeListArray.from_arrays(precursor_images.reshape(-1), 28 * 28),
                "oip_loss": oip_losses,
                "oip_alive": oip_losses > 0,
                "oip_restart": np.array([oip.restart for oip in oips], np.int32),
                "oip_restarts": np.array([oip.restarts for oip in oips], np.int32),
                "oip_epochs": np.array([oip.epochs for oip in oips], np.int32),
                "oip_source": [oip.source for oip in oips],
                "oip_image": pa.FixedSizeListArray.from_arrays(np.stack([oip.image for oip in oips]).reshape(-1).astype(np.float32), 28 * 28),
                "data_max": strongest.data_max,
                "precursor_ratio": ratio_to_data_max(precursor_losses, strongest.data_max),
                "oip_ratio": ratio_to_data_max(oip_losses, strongest.data_max),
                "digit": reading.digit.astype(np.int32),
                "probability": reading.probability,
                "entropy": reading.entropy,
                "top_indices": pa.array(list(strongest.indices), pa.list_(pa.int64())),
                "top_activations": pa.array(list(strongest.activations), pa.list_(pa.float32())),
                "top_labels": pa.array(list(labels.astype(np.int32)), pa.list_(pa.int32())),
            },
            schema=METRICS_SCHEMA,
        )

    def random_start_oips(self, session: ModelSession, block: tuple[MapInput, ...]) -> list[ReusedOip]:
        """The best random-start OIP of every map of the block: reused, or computed here in
        one batched ascent for all maps that have none."""
        job = self.job
        missing = [item.map for item in block if item.oip is None]
        computed: dict[int, ReusedOip] = {}
        if missing:
            starts = np.concatenate([start_images(job.oip_seed, m, job.oip_restarts, job.scale_grids, job.scale_amplitudes)
                                     for m in missing])
            map_ids = np.repeat(np.asarray(missing), job.oip_restarts)
            result = session.ascent([job.layer]).run_maps(starts, job.layer, map_ids, job.oip_epochs, job.learning_rate)
            losses = result.losses.reshape(len(missing), job.oip_restarts)
            images = result.images.reshape(len(missing), job.oip_restarts, 28 * 28)
            for row, map_id in enumerate(missing):
                best = int(np.argmax(losses[row]))  # ties: the lower restart
                computed[map_id] = ReusedOip(float(losses[row, best]), best, job.oip_restarts, job.oip_epochs,
                                             COMPUTED, images[row, best])
        return [item.oip if item.oip is not None else computed[item.map] for item in block]
