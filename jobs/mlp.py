"""Training runs of the numpy MLP (algorithms.md §5) and the clusters experiment (§6).

A *configuration* is what the MLP sees: ``None`` = standardized pixels (the reference),
``K`` = standardized distances to K MiniBatchKMeans centroids (fitted on train + test images
by default, as the seed did; no labels are used). One shard trains one configuration and
writes one row per epoch.

- ``MLPTrainJob`` (``dreamctl mlp train``): one configuration; ``<out>/mlp/<run_id>/``.
- jobs/clusters.py builds ``dreamctl experiment clusters`` on the same training phase.

The images (uint8) are the phases' ``shared()`` data, put in the object store once; the
data set never travels with a task (``jobs.base.DataBound``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from core.data import Dataset
from core.kmeans import FAST, KMeansSettings, cluster_distance_features, pixel_matrix, scale_param, scaled_lambda2
from core.mlp import MLP, MLPConfig, standardize
from core.params import check_params, param, parse_ints, same_as
from jobs.base import Artifact, DataBound, Shard
from jobs.kmeans import check_ks

FIT_ON = ("all", "train")  # what KMeans clusters: train + test images (the seed) or train only
REFERENCE = "reference"
MLP_PANEL = "MLP"
KMEANS_PANEL = "Cluster features"


@dataclass(frozen=True)
class MLPSettings:
    """The MLP's hyperparameters, declared as core.mlp.MLPConfig declares them (the seed's
    defaults), with hidden sizes instead of all layer sizes.

    lambda2: L2 coefficient; None = the seed's 0.2, scaled to Lambda2 · K / 784 for K cluster
    inputs. scale_lambda2: scale a given lambda2 too (None = only the default is scaled).
    """

    hidden: tuple[int, ...] = param(MLPConfig.layer_sizes[1:-1], "Hidden layer sizes, comma-separated (input: "
                                    "784 pixels or K; output: 10 classes).", low=1, high=10_000, parse=parse_ints,
                                    panel=MLP_PANEL)
    lambda2: float | None = same_as(MLPConfig, "lambda2", default=None, panel=MLP_PANEL,
                                    help="L2 coefficient on the weights (biases excluded). Default: 0.2 for pixels, "
                                         "0.2·K/784 with --clusters (the seed's rule); a given value is used as is.")
    scale_lambda2: bool | None = field(default=None)
    learning_rate: float = same_as(MLPConfig, "learning_rate", panel=MLP_PANEL)
    lr_decrease: float = same_as(MLPConfig, "lr_decrease", panel=MLP_PANEL)
    momentum: float = same_as(MLPConfig, "momentum", panel=MLP_PANEL)
    batch_size: int = same_as(MLPConfig, "batch_size", panel=MLP_PANEL)
    epochs: int = same_as(MLPConfig, "epochs", panel=MLP_PANEL)
    init_range: float = same_as(MLPConfig, "init_range", panel=MLP_PANEL)
    eval_every: int = same_as(MLPConfig, "eval_every", panel=MLP_PANEL)
    seed: int = same_as(MLPConfig, "seed", panel=MLP_PANEL)
    dtype: str = param(np.dtype(MLPConfig.dtype).name, "Floating point type of weights and arithmetic.",
                       choices=("float32", "float64"), panel=MLP_PANEL)

    def __post_init__(self) -> None:
        check_params(self)

    def lambda2_for(self, n_inputs: int, n_pixels: int) -> float:
        base = MLPConfig.lambda2 if self.lambda2 is None else self.lambda2
        scale = self.lambda2 is None if self.scale_lambda2 is None else self.scale_lambda2
        return scaled_lambda2(base, n_inputs, n_pixels) if scale and n_inputs != n_pixels else base

    def config(self, n_inputs: int, n_classes: int, n_pixels: int) -> MLPConfig:
        """The core config for a net with ``n_inputs`` inputs (raises BadParameter if invalid)."""
        return MLPConfig(
            layer_sizes=(n_inputs, *self.hidden, n_classes), lambda2=self.lambda2_for(n_inputs, n_pixels),
            learning_rate=self.learning_rate, lr_decrease=self.lr_decrease, momentum=self.momentum,
            batch_size=self.batch_size, epochs=self.epochs, init_range=self.init_range,
            eval_every=self.eval_every, seed=self.seed, dtype=np.dtype(self.dtype),
        )

    @property
    def n_weight_layers(self) -> int:
        return len(self.hidden) + 1


def n_clustered(dataset: Dataset, fit_on: str) -> int:
    """How many images KMeans clusters for the MLP's features."""
    return len(dataset.x_train) + (len(dataset.x_test) if fit_on == "all" else 0)


def config_name(k: int | None) -> str:
    return REFERENCE if k is None else f"k{k:04d}"


def epochs_schema(n_weight_layers: int) -> pa.Schema:
    """One row per (configuration, epoch). Per weight layer l (l maps layer l to l + 1):
    forward_cpu_s_l and backward_cpu_s_l, process CPU seconds summed over the epoch's
    batches; backward_cpu_s_0 is the seed's "BW layer operations (to L0)"."""
    fields = [
        ("config", pa.string()),  # "reference" (pixels) or "k0070" (70 cluster distances)
        ("k", pa.int32()),  # clusters; 0 for the reference
        ("n_inputs", pa.int32()),
        ("lambda2", pa.float64()),
        ("epoch", pa.int32()),  # 1-based
        ("learning_rate", pa.float64()),  # η of this epoch: η0 / (1 + d·(epoch − 1))
        ("loss", pa.float64()),  # mean batch objective (summed log-loss + L2 term)
        ("l2_share", pa.float64()),  # L2 part of the loss, in [0, 1]
        ("train_acc", pa.float64()),  # nan when the epoch was not evaluated
        ("test_acc", pa.float64()),
        ("seconds", pa.float64()),  # wall clock of the epoch, evaluation included
        ("cpu_seconds", pa.float64()),  # process CPU of the epoch, evaluation included
        ("elapsed_seconds", pa.float64()),  # cumulative wall clock of training
        ("elapsed_cpu_seconds", pa.float64()),  # cumulative process CPU of training
        ("prep_seconds", pa.float64()),  # wall clock of the features (KMeans fit + distances); 0 for pixels
        ("prep_cpu_seconds", pa.float64()),
    ]
    for l in range(n_weight_layers):
        fields.append((f"forward_cpu_s_{l}", pa.float64()))
    for l in range(n_weight_layers):
        fields.append((f"backward_cpu_s_{l}", pa.float64()))
    return pa.schema(fields)


def shared_images(dataset: Dataset) -> dict[str, np.ndarray]:
    """What a training task needs: uint8 images (n, 784) and int64 labels of both splits."""
    return {
        "x_train": dataset.x_train.reshape(len(dataset.x_train), -1),
        "y_train": dataset.y_train,
        "x_test": dataset.x_test.reshape(len(dataset.x_test), -1),
        "y_test": dataset.y_test,
    }


def features(data: dict[str, np.ndarray], k: int | None, kmeans: KMeansSettings, scale: str,
             fit_on: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) inputs of one configuration, float32: standardized pixels (k None) or
    standardized distances to K centroids."""
    if k is None:
        return standardize(data["x_train"].astype(np.float32), data["x_test"].astype(np.float32))
    fit_images = np.concatenate([data["x_train"], data["x_test"]]) if fit_on == "all" else data["x_train"]
    X_fit = pixel_matrix(fit_images, scale)
    X_train = pixel_matrix(data["x_train"], scale, reference=fit_images)
    X_test = pixel_matrix(data["x_test"], scale, reference=fit_images)
    train, test, _ = cluster_distance_features(X_fit, X_train, X_test, k, kmeans)
    return train, test


def train_configuration(data: dict[str, np.ndarray], k: int | None, mlp: MLPSettings, kmeans: KMeansSettings,
                        scale: str, fit_on: str, on_epoch: Callable[[dict], Any] | None = None) -> pa.Table:
    """Build the inputs, train the MLP, return its per-epoch rows (``epochs_schema``).

    on_epoch(row) is called after every epoch with that epoch's row (a dict).
    """
    n_pixels = data["x_train"].shape[1]
    n_classes = int(max(data["y_train"].max(), data["y_test"].max())) + 1
    prep_wall, prep_cpu = time.perf_counter(), time.process_time()
    X_train, X_test = features(data, k, kmeans, scale, fit_on)
    prep_wall, prep_cpu = time.perf_counter() - prep_wall, time.process_time() - prep_cpu
    if k is None:
        prep_wall = prep_cpu = 0.0  # standardizing pixels is not part of the comparison
    n_inputs = X_train.shape[1]
    config = mlp.config(n_inputs, n_classes, n_pixels)
    rows: list[dict] = []
    clock = {"wall": 0.0, "cpu": 0.0, "last_cpu": 0.0}

    def record(metrics) -> None:
        now = time.process_time()
        cpu = now - clock["last_cpu"]
        clock["last_cpu"] = now
        clock["wall"] += metrics.seconds
        clock["cpu"] += cpu
        row = {
            "config": config_name(k), "k": k or 0, "n_inputs": n_inputs, "lambda2": config.lambda2,
            "epoch": metrics.epoch,
            "learning_rate": config.learning_rate / (1.0 + config.lr_decrease * (metrics.epoch - 1)),
            "loss": metrics.loss, "l2_share": metrics.l2_share,
            "train_acc": metrics.train_acc, "test_acc": metrics.test_acc,
            "seconds": metrics.seconds, "cpu_seconds": cpu,
            "elapsed_seconds": clock["wall"], "elapsed_cpu_seconds": clock["cpu"],
            "prep_seconds": prep_wall, "prep_cpu_seconds": prep_cpu,
            **{f"forward_cpu_s_{l}": t for l, t in enumerate(metrics.forward_cpu_s)},
            **{f"backward_cpu_s_{l}": t for l, t in enumerate(metrics.backward_cpu_s)},
        }
        rows.append(row)
        if on_epoch is not None:
            on_epoch(row)

    clock["last_cpu"] = time.process_time()
    MLP(config).fit(X_train, data["y_train"], X_test, data["y_test"], on_epoch=record)
    return pa.Table.from_pylist(rows, schema=epochs_schema(mlp.n_weight_layers))


@dataclass(frozen=True)
class TrainPhase:
    """Train every configuration of ``job.configs``: one shard (and Ray task) each."""

    job: Any  # MLPTrainJob or jobs.clusters.ClustersExperiment
    name = "epochs"
    unit = "epochs"
    needs_model = False
    must_be_finite = ("loss",)  # accuracies are nan in epochs that were not evaluated

    @property
    def schema(self) -> pa.Schema:
        return epochs_schema(self.job.mlp.n_weight_layers)

    def shared(self) -> dict[str, np.ndarray]:
        return shared_images(self.job.dataset)

    def shards(self, tables) -> list[Shard]:
        epochs = self.job.mlp.epochs
        return [Shard(shard_id=config_name(k), payload=k, n_rows=epochs, n_items=epochs) for k in self.job.configs]

    def compute(self, data: dict[str, np.ndarray], k: int | None,
                on_item: Callable[[str], Any] | None = None) -> pa.Table:
        """Train one configuration; ``on_item(status)`` after every epoch, with the loss and
        the last evaluated accuracies (for a progress bar)."""
        job = self.job
        last = {"train": "—", "test": "—"}

        def on_epoch(row: dict) -> None:
            if not math.isnan(row["test_acc"]):
                last.update(train=f"{row['train_acc']:.4f}", test=f"{row['test_acc']:.4f}")
            on_item(f"loss {row['loss']:.4g}  train {last['train']}  test {last['test']}")

        return train_configuration(data, k, job.mlp, job.kmeans, job.scale, job.fit_on,
                                   on_epoch if on_item is not None else None)


@dataclass(frozen=True)
class FeatureTraining(DataBound):
    """What every MLP training job sets: the MLP, the KMeans that makes cluster features, how
    the features are scaled and what KMeans is fitted on (``mlp train``, ``experiment clusters``)."""

    mlp: MLPSettings = param(MLPSettings(), nested=True)
    kmeans: KMeansSettings = param(FAST, nested=True, panel=KMEANS_PANEL)
    scale: str = scale_param()
    fit_on: str = param("all", "Images KMeans clusters (never labels): all = train + test (the seed), or train.",
                        choices=FIT_ON, panel=KMEANS_PANEL)
    dataset: Dataset | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class MLPTrainJob(FeatureTraining):
    """Parameters of ``dreamctl mlp train``: one MLP on pixels (clusters None) or on the
    distances to K cluster centroids."""

    clusters: int | None = param(None, "Train on the standardized distances to K MiniBatchKMeans centroids "
                                 "instead of the 784 pixels (K inputs). Default: pixels.")

    name = "mlp"

    def __post_init__(self) -> None:
        check_params(self)
        if self.clusters is not None:
            check_ks((self.clusters,), None, "clusters")

    def with_data(self, dataset: Dataset) -> "MLPTrainJob":
        if self.clusters is not None:
            check_ks((self.clusters,), n_clustered(dataset, self.fit_on), "clusters")
        return replace(self, dataset=dataset)

    @property
    def configs(self) -> tuple[int | None, ...]:
        return (self.clusters,)

    def phases(self) -> list:
        return [TrainPhase(self)]

    def outputs(self, tables: dict[str, pa.Table], locate) -> list[Artifact]:
        from jobs.figures import training_curves

        frame = tables["epochs"].to_pandas()
        return [Artifact("curves.png", training_curves(frame, self.title(frame)))]

    def title(self, frame) -> str:
        row = frame.iloc[0]
        what = "standardized pixels" if self.clusters is None else f"distances to {self.clusters} cluster centroids"
        sizes = "-".join(str(s) for s in (int(row["n_inputs"]), *self.mlp.hidden, 10))
        data = self.dataset.name if self.dataset is not None else "data"
        return f"MLP {sizes} on {what} ({data}), Lambda2 {row['lambda2']:.4g}"
