"""Training the CNN as a run of its own, for experiments (``dreamctl experiment rescue``,
``dreamctl experiment seed``): one Ray task trains it on the ``--data`` set and the run keeps
its weights, standardization and accuracies, so the steps after it run on a model that any
worker can rebuild and that the run ids name (:class:`jobs.base.TrainedModel`).

``dreamctl train`` trains the model file the other commands use (cluster/training.py); this
job is the same training (``core.model.train_cnn``), stored as a run.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from core.data import Dataset
from core.model import TrainConfig
from core.params import check_params, param
from jobs.base import Artifact, DataBound, Shard, TrainedModel

MODEL_SCHEMA = pa.schema(
    [
        ("seed", pa.int32()),
        ("weights", pa.binary()),  # float32 arrays of build_cnn(dense_units), concatenated in get_weights() order
        ("weights_sha256", pa.string()),
        ("dense_units", pa.int32()),
        ("mean", pa.float64()),  # standardization of the pixels in [0, 1]
        ("std", pa.float64()),
        ("train_accuracy", pa.float64()),
        ("test_accuracy", pa.float64()),
        ("epoch_test_accuracy", pa.list_(pa.float64())),  # after every epoch
        ("cpu_seconds", pa.float64()),
        ("seconds", pa.float64()),
    ]
)


def weights_to_bytes(weights: list[np.ndarray]) -> bytes:
    """A model's weights (``model.get_weights()``) as one float32 byte string."""
    return b"".join(np.ascontiguousarray(w, np.float32).tobytes() for w in weights)


@dataclass(frozen=True)
class TrainJob(DataBound):
    """Parameters of a CNN training run (``config``: core.model.TrainConfig)."""

    config: TrainConfig = param(TrainConfig(), nested=True)
    dataset: Dataset | None = field(default=None, repr=False, compare=False)

    name = "train"

    def __post_init__(self) -> None:
        check_params(self)

    def with_data(self, dataset: Dataset) -> "TrainJob":
        return replace(self, dataset=dataset)

    def phases(self) -> list:
        return [ModelPhase(self)]

    def outputs(self, tables: dict[str, pa.Table], locate) -> list[Artifact]:
        return []


def trained_model(table: pa.Table, data: dict) -> TrainedModel:
    """The model a training run's ``model`` table holds; ``data``: the identity of the data
    set it was trained on."""
    row = table.to_pylist()[0]
    return TrainedModel(row["weights"], row["dense_units"], {"mean": row["mean"], "std": row["std"]}, data)


@dataclass(frozen=True)
class ModelPhase:
    """One Ray task trains the CNN; the run stores its weights with their SHA-256."""

    job: TrainJob
    name = "model"
    unit = "models"
    schema = MODEL_SCHEMA
    needs_model = False
    must_be_finite = ("train_accuracy", "test_accuracy")

    def shared(self) -> Dataset:
        return self.job.dataset

    def shards(self, tables) -> list[Shard]:
        return [Shard(f"seed{self.job.config.seed:04d}", self.job.config, 1, 1)]

    def compute(self, dataset: Dataset, config: TrainConfig, on_item: Callable[[str], Any] | None = None) -> pa.Table:
        from core.model import train_cnn

        cpu, wall = time.process_time(), time.perf_counter()
        model, standardization, metrics = train_cnn(dataset, config)
        data = weights_to_bytes(model.get_weights())
        return pa.table({
            "seed": [config.seed], "weights": [data], "weights_sha256": [hashlib.sha256(data).hexdigest()],
            "dense_units": [config.dense_units], "mean": [standardization.mean], "std": [standardization.std],
            "train_accuracy": [metrics["train_accuracy"]], "test_accuracy": [metrics["test_accuracy"]],
            "epoch_test_accuracy": [metrics["epoch_test_accuracy"]], "cpu_seconds": [time.process_time() - cpu],
            "seconds": [time.perf_counter() - wall]}, schema=MODEL_SCHEMA)
