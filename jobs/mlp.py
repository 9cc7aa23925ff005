"""Training runs of the numpy MLP (algorithms.md §5) and the clusters experiment (§6).

A *configuration* is what the MLP sees: ``None`` = standardized pixels (the reference),
``K`` = standardized distances to K MiniBatchKMeans centroids (fitted on train + test images
by default, as the seed did; no labels are used). One shard trains one configuration and
writes one row per epoch.

- ``MLPTrainJob`` (``dreamctl mlp train``): one configuration; ``<out>/mlp/<run_id>/``.
- ``ClustersExperiment`` (``dreamctl experiment clusters``): the reference and one
  configuration per K, one Ray task each, then the seed's comparison (epochs and CPU
  seconds to reach given test accuracies, relative to the reference); ``<out>/clusters/<run_id>/``.

The images (uint8) are the phases' ``shared()`` data, put in the object store once; the
data set never travels with a task (``__getstate__``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from core.data import Dataset
from core.experiment import auto_targets, best_accuracy, ratio, time_to_accuracy
from core.kmeans import FAST, KMeansSettings, cluster_distance_features, pixel_matrix, scaled_lambda2
from core.mlp import MLP, MLPConfig, standardize
from jobs.base import Shard

FIT_ON = ("all", "train")  # what KMeans clusters: train + test images (the seed) or train only
REFERENCE = "reference"


@dataclass(frozen=True)
class MLPSettings:
    """The MLP's hyperparameters (core.mlp.MLPConfig; defaults are the seed's).

    hidden: hidden layer sizes (input = 784 pixels or K distances, output = 10 classes).
    lambda2: L2 coefficient for 784 pixel inputs. scale_lambda2: for K cluster inputs use
    the seed's Lambda2 · K / 784 (False: lambda2 as given).
    """

    hidden: tuple[int, ...] = MLPConfig.layer_sizes[1:-1]
    lambda2: float = MLPConfig.lambda2
    scale_lambda2: bool = True
    learning_rate: float = MLPConfig.learning_rate
    lr_decrease: float = MLPConfig.lr_decrease
    momentum: float = MLPConfig.momentum
    batch_size: int = MLPConfig.batch_size
    epochs: int = MLPConfig.epochs
    init_range: float = MLPConfig.init_range
    eval_every: int = MLPConfig.eval_every
    seed: int = MLPConfig.seed
    dtype: str = np.dtype(MLPConfig.dtype).name

    def lambda2_for(self, n_inputs: int, n_pixels: int) -> float:
        if self.scale_lambda2 and n_inputs != n_pixels:
            return scaled_lambda2(self.lambda2, n_inputs, n_pixels)
        return self.lambda2

    def config(self, n_inputs: int, n_classes: int, n_pixels: int) -> MLPConfig:
        """The core config for a net with ``n_inputs`` inputs (raises ValueError if invalid)."""
        return MLPConfig(
            layer_sizes=(n_inputs, *self.hidden, n_classes), lambda2=self.lambda2_for(n_inputs, n_pixels),
            learning_rate=self.learning_rate, lr_decrease=self.lr_decrease, momentum=self.momentum,
            batch_size=self.batch_size, epochs=self.epochs, init_range=self.init_range,
            eval_every=self.eval_every, seed=self.seed, dtype=np.dtype(self.dtype),
        )

    @property
    def n_weight_layers(self) -> int:
        return len(self.hidden) + 1


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


class _TrainingJob:
    """What both MLP jobs share: the data stays out of pickles, params without it."""

    dataset: Dataset | None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["dataset"] = None
        return state

    def params(self) -> dict:
        params = {key: getattr(self, key) for key in self.__dataclass_fields__ if key != "dataset"}
        for key in ("mlp", "kmeans"):
            params[key] = asdict(params[key])
        return params


@dataclass(frozen=True)
class TrainPhase:
    """Train every configuration of ``job.configs``: one shard (and Ray task) each."""

    job: Any  # MLPTrainJob or ClustersExperiment
    name = "epochs"
    unit = "epochs"
    needs_model = False

    @property
    def schema(self) -> pa.Schema:
        return epochs_schema(self.job.mlp.n_weight_layers)

    def shared(self) -> dict[str, np.ndarray]:
        return shared_images(self.job.dataset)

    def shards(self, tables) -> list[Shard]:
        epochs = self.job.mlp.epochs
        return [Shard(shard_id=config_name(k), payload=k, n_rows=epochs, n_items=epochs) for k in self.job.configs]

    def compute(self, data: dict[str, np.ndarray], k: int | None,
                on_epoch: Callable[[dict], Any] | None = None) -> pa.Table:
        job = self.job
        return train_configuration(data, k, job.mlp, job.kmeans, job.scale, job.fit_on, on_epoch)


@dataclass(frozen=True)
class MLPTrainJob(_TrainingJob):
    """Parameters of ``dreamctl mlp train``: one MLP on pixels (clusters None) or on the
    distances to K cluster centroids."""

    clusters: int | None = None
    mlp: MLPSettings = MLPSettings()
    kmeans: KMeansSettings = FAST
    scale: str = "unit"
    fit_on: str = "all"
    dataset: Dataset | None = field(default=None, repr=False, compare=False)

    name = "mlp"

    @property
    def configs(self) -> tuple[int | None, ...]:
        return (self.clusters,)

    def phases(self) -> list:
        return [TrainPhase(self)]

    def write_outputs(self, tables: dict[str, pa.Table], store) -> list[Path]:
        frame = tables["epochs"].to_pandas()
        return [training_curves(frame, store.path("curves.png"), self.title(frame))]

    def title(self, frame) -> str:
        row = frame.iloc[0]
        what = "standardized pixels" if self.clusters is None else f"distances to {self.clusters} cluster centroids"
        sizes = "-".join(str(s) for s in (int(row["n_inputs"]), *self.mlp.hidden, 10))
        data = self.dataset.name if self.dataset is not None else "data"
        return f"MLP {sizes} on {what} ({data}), Lambda2 {row['lambda2']:.4g}"


@dataclass(frozen=True)
class ClustersExperiment(_TrainingJob):
    """Parameters of ``dreamctl experiment clusters``: the reference MLP (pixels) and one
    per K (cluster distances, Lambda2 scaled by K/784), then the comparison.

    targets: test accuracies to reach (None = auto: the reference's best test accuracy and the
        best clustered run's, each also minus 0.5 points, like the seed's 97.4 / 97.73 / 97.8 %).
    """

    ks: tuple[int, ...] = (40, 70, 90)
    mlp: MLPSettings = MLPSettings()
    kmeans: KMeansSettings = FAST
    scale: str = "unit"
    fit_on: str = "all"
    targets: tuple[float, ...] | None = None
    dataset: Dataset | None = field(default=None, repr=False, compare=False)

    name = "clusters"

    @property
    def configs(self) -> tuple[int | None, ...]:
        return (None, *self.ks)

    def phases(self) -> list:
        return [TrainPhase(self), ComparisonPhase(self)]

    def write_outputs(self, tables: dict[str, pa.Table], store) -> list[Path]:
        epochs = tables["epochs"].to_pandas()
        comparison = tables["comparison"].to_pandas()
        data = self.dataset.name if self.dataset is not None else "data"
        title = (f"MLP {'-'.join(map(str, self.mlp.hidden))} on {data}: pixels vs cluster distances "
                 f"(K = {', '.join(map(str, self.ks))}), {self.mlp.epochs} epochs")
        return [comparison_plot(epochs, comparison, store.path("comparison.png"), title)]


COMPARISON_SCHEMA = pa.schema(
    [
        ("config", pa.string()),
        ("k", pa.int32()),  # 0 = reference
        ("n_inputs", pa.int32()),
        ("lambda2", pa.float64()),
        ("target", pa.float64()),  # test accuracy to reach
        ("epoch_first", pa.int32()),  # first epoch at or above target (null: never)
        ("cpu_seconds_first", pa.float64()),  # cumulative training CPU seconds at that epoch
        ("wall_seconds_first", pa.float64()),
        ("epoch_stable", pa.int32()),  # from here on every evaluation stays at or above target
        ("cpu_seconds_stable", pa.float64()),
        ("speedup_cpu_first", pa.float64()),  # reference CPU to first reach / this CPU to first reach
        ("speedup_cpu_stable", pa.float64()),  # same for the stable epoch
        ("speedup_cpu_vs_reference_run", pa.float64()),  # reference's whole-run CPU / this CPU to first reach (the seed's ratio)
        ("speedup_cpu_first_with_prep", pa.float64()),  # as speedup_cpu_first, KMeans CPU added to this run
        ("prep_cpu_seconds", pa.float64()),  # KMeans fit + distances
        ("best_test_acc", pa.float64()),
        ("best_epoch", pa.int32()),
        ("best_vs_reference", pa.float64()),  # best_test_acc − the reference's best
        ("final_test_acc", pa.float64()),
        ("final_train_acc", pa.float64()),
        ("total_cpu_seconds", pa.float64()),  # whole training run
    ]
)


def default_targets(epochs) -> tuple[float, ...]:
    """Auto targets: the reference's best test accuracy and the best clustered run's, each
    also minus 0.5 points (core.experiment.auto_targets)."""
    reference = epochs.loc[epochs["config"] == REFERENCE, "test_acc"].to_numpy()
    others = epochs.loc[epochs["config"] != REFERENCE].groupby("config")["test_acc"].max().dropna()
    return auto_targets(reference, tuple(others))


def compare(epochs, targets: tuple[float, ...] | None) -> pa.Table:
    """The seed's comparison from the per-epoch rows of all configurations (a DataFrame):
    one row per (configuration, target)."""
    runs = {name: frame.sort_values("epoch") for name, frame in epochs.groupby("config", sort=False)}
    reference = runs[REFERENCE]
    if targets is None:
        targets = default_targets(epochs)
    ref_reach = {r.target: r for r in time_to_accuracy(reference["test_acc"], reference["cpu_seconds"],
                                                       reference["seconds"], targets)}
    ref_best, _ = best_accuracy(reference["test_acc"])
    ref_total_cpu = float(reference["cpu_seconds"].sum())
    order = [REFERENCE] + sorted(name for name in runs if name != REFERENCE)
    rows = []
    for name in order:
        run = runs[name]
        first = run.iloc[0]
        best, best_epoch = best_accuracy(run["test_acc"])
        evaluated = run.dropna(subset=["test_acc"])
        prep_cpu = float(first["prep_cpu_seconds"])
        for reach in time_to_accuracy(run["test_acc"], run["cpu_seconds"], run["seconds"], targets):
            ref = ref_reach[reach.target]
            rows.append({
                "config": name, "k": int(first["k"]), "n_inputs": int(first["n_inputs"]),
                "lambda2": float(first["lambda2"]), "target": reach.target,
                "epoch_first": reach.epoch_first, "cpu_seconds_first": reach.cpu_seconds_first,
                "wall_seconds_first": reach.wall_seconds_first, "epoch_stable": reach.epoch_stable,
                "cpu_seconds_stable": reach.cpu_seconds_stable,
                "speedup_cpu_first": ratio(ref.cpu_seconds_first, reach.cpu_seconds_first),
                "speedup_cpu_stable": ratio(ref.cpu_seconds_stable, reach.cpu_seconds_stable),
                "speedup_cpu_vs_reference_run": ratio(ref_total_cpu, reach.cpu_seconds_first),
                "speedup_cpu_first_with_prep": ratio(ref.cpu_seconds_first, reach.cpu_seconds_first + prep_cpu),
                "prep_cpu_seconds": prep_cpu,
                "best_test_acc": best, "best_epoch": best_epoch, "best_vs_reference": best - ref_best,
                "final_test_acc": float(evaluated["test_acc"].iloc[-1]) if len(evaluated) else math.nan,
                "final_train_acc": float(evaluated["train_acc"].iloc[-1]) if len(evaluated) else math.nan,
                "total_cpu_seconds": float(run["cpu_seconds"].sum()),
            })
    return pa.Table.from_pylist(rows, schema=COMPARISON_SCHEMA)


COMPARISON_INPUT = ("config", "k", "n_inputs", "lambda2", "epoch", "train_acc", "test_acc", "seconds",
                    "cpu_seconds", "prep_cpu_seconds")


@dataclass(frozen=True)
class ComparisonPhase:
    """One small task: the comparison table from the trainings' per-epoch rows."""

    job: ClustersExperiment
    name = "comparison"
    unit = "rows"
    schema = COMPARISON_SCHEMA
    needs_model = False

    def shared(self) -> None:
        return None

    def shards(self, tables) -> list[Shard]:
        epochs = tables["epochs"].select(list(COMPARISON_INPUT)).to_pandas()
        targets = self.job.targets
        if targets is None:
            targets = default_targets(epochs)
        n_rows = len(self.job.configs) * len(targets)
        return [Shard(shard_id="all", payload=(epochs, tuple(targets)), n_rows=n_rows, n_items=n_rows)]

    def compute(self, context: None, payload) -> pa.Table:
        epochs, targets = payload
        return compare(epochs, targets)


# ----- figures ------------------------------------------------------------------------------
def training_curves(frame, path: Path, title: str) -> Path:
    """Loss (with its L2 share), train/test accuracy, and CPU seconds per weight layer, vs epoch."""
    from jobs.figures import save_figure  # sets matplotlib's Agg backend first
    import matplotlib.pyplot as plt

    frame = frame.sort_values("epoch")
    figure, (cost, accuracy, cpu) = plt.subplots(1, 3, figsize=(17, 4.5), layout="constrained")
    cost.plot(frame["epoch"], frame["loss"], label="loss (mean batch objective)")
    cost.set_yscale("log")
    cost.set_xlabel("epoch")
    cost.set_ylabel("loss")
    share = cost.twinx()
    share.plot(frame["epoch"], frame["l2_share"], color="tab:red", alpha=0.6, label="L2 share")
    share.set_ylabel("L2 share of the loss", color="tab:red")
    cost.set_title("cost")
    evaluated = frame.dropna(subset=["train_acc"])
    accuracy.plot(evaluated["epoch"], evaluated["train_acc"], label="train", color="tab:orange")
    accuracy.plot(evaluated["epoch"], evaluated["test_acc"], label="test", color="tab:blue")
    if len(evaluated):
        best = evaluated.loc[evaluated["test_acc"].idxmax()]
        accuracy.axhline(best["test_acc"], ls=":", color="gray", label=f"best test {best['test_acc']:.4f}")
        low = min(evaluated["test_acc"].quantile(0.1), evaluated["train_acc"].quantile(0.1))
        accuracy.set_ylim(max(0.0, low - 0.01), 1.0)
    accuracy.set_xlabel("epoch")
    accuracy.set_ylabel("accuracy")
    accuracy.set_title("accuracy")
    accuracy.legend(loc="lower right")
    layers = sorted(int(c.rsplit("_", 1)[1]) for c in frame.columns if c.startswith("backward_cpu_s_"))
    for l in layers:
        cpu.plot(frame["epoch"], frame[f"backward_cpu_s_{l}"], label=f"backward, weights L{l}→L{l + 1}")
        cpu.plot(frame["epoch"], frame[f"forward_cpu_s_{l}"], ls="--", label=f"forward, weights L{l}→L{l + 1}")
    cpu.set_yscale("log")
    cpu.set_xlabel("epoch")
    cpu.set_ylabel("CPU seconds per epoch")
    cpu.set_title("CPU time per layer")
    cpu.legend(fontsize=7)
    for axis in (cost, accuracy, cpu):
        axis.grid(alpha=0.3)
    figure.suptitle(title, fontsize=9)
    return save_figure(figure, path)


def comparison_plot(epochs, comparison, path: Path, title: str) -> Path:
    """Test accuracy vs epoch and vs CPU seconds for every configuration (targets dotted),
    and the CPU speedup to reach each target relative to the reference."""
    from jobs.figures import save_figure  # sets matplotlib's Agg backend first
    import matplotlib.pyplot as plt

    figure, (by_epoch, by_cpu, speed) = plt.subplots(1, 3, figsize=(17, 4.6), layout="constrained")
    targets = sorted(comparison["target"].unique())
    names = [REFERENCE] + sorted(n for n in epochs["config"].unique() if n != REFERENCE)
    top = max(targets)
    for name in names:
        run = epochs[epochs["config"] == name].sort_values("epoch")
        label = "reference (784 pixels)" if name == REFERENCE else f"K = {int(run['k'].iloc[0])}"
        evaluated = run.dropna(subset=["test_acc"])
        cpu = run["cpu_seconds"].cumsum()[evaluated.index]
        by_epoch.plot(evaluated["epoch"], evaluated["test_acc"], label=label, lw=1)
        by_cpu.plot(cpu, evaluated["test_acc"], label=label, lw=1)
        if len(evaluated):
            top = max(top, float(evaluated["test_acc"].max()))
    for axis in (by_epoch, by_cpu):
        for target in targets:
            axis.axhline(target, ls=":", color="gray", lw=0.8)
        axis.set_ylim(max(0.0, min(targets) - 0.03), min(1.0, top + 0.005))
        axis.set_ylabel("test accuracy")
        axis.grid(alpha=0.3)
    by_epoch.legend(fontsize=8, loc="lower right")
    by_cpu.legend(fontsize=8, loc="upper left")
    by_epoch.set_xlabel("epoch")
    by_epoch.set_title("test accuracy vs epoch (targets dotted)")
    by_cpu.set_xscale("log")
    by_cpu.set_xlabel("cumulative training CPU seconds")
    by_cpu.set_title("test accuracy vs CPU time")
    clustered = [n for n in names if n != REFERENCE]
    width = 0.8 / max(1, len(targets))
    for i, target in enumerate(targets):
        rows = comparison[comparison["target"] == target].set_index("config")
        values = [rows.loc[n, "speedup_cpu_first"] if n in rows.index else math.nan for n in clustered]
        positions = np.arange(len(clustered)) + (i - (len(targets) - 1) / 2) * width
        speed.bar(positions, np.nan_to_num(values, nan=0.0), width, label=f"test acc ≥ {target:.4f}")
        for x, value in zip(positions, values):
            if math.isnan(value):
                speed.text(x, 0.02, "never", rotation=90, ha="center", va="bottom", fontsize=7)
    speed.axhline(1.0, color="black", lw=0.8)
    speed.set_xticks(np.arange(len(clustered)))
    speed.set_xticklabels([f"K = {int(n[1:])}" for n in clustered])
    speed.set_ylabel("CPU speedup vs reference (first reach)")
    speed.set_title("CPU time to reach the target, reference ÷ clustered\n(0 = never reached)", fontsize=9)
    speed.legend(fontsize=8)
    speed.grid(alpha=0.3, axis="y")
    figure.suptitle(title, fontsize=9)
    return save_figure(figure, path)
