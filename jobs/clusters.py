"""``dreamctl experiment clusters``: the seed's comparison of the MLP on pixels with MLPs on
cluster-distance features (algorithms.md §6).

The reference (pixels) and one configuration per K train as shards of jobs.mlp's training
phase (one Ray task each); a second phase compares epochs and CPU seconds to reach given
test accuracies, relative to the reference. Results: ``<out>/clusters/<run_id>/``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial

import pyarrow as pa

from core.data import Dataset
from core.experiment import auto_targets, best_accuracy, ratio, time_to_accuracy
from core.params import check_params, param, parse_floats, parse_int_range
from jobs.base import Artifact, SummaryPhase
from jobs.kmeans import check_ks
from jobs.mlp import REFERENCE, FeatureTraining, TrainPhase, n_clustered


def parse_targets(text: str, spec=None) -> tuple[float, ...] | None:
    """'auto' → None; '0.974,0.9773,0.978' → the accuracies."""
    return None if text.strip().lower() == "auto" else parse_floats(text)


@dataclass(frozen=True)
class ClustersExperiment(FeatureTraining):
    """Parameters of ``dreamctl experiment clusters``: the reference MLP (pixels) and one
    per K (cluster distances, Lambda2 scaled by K/784), then the comparison.

    targets: test accuracies to reach (None = auto: the reference's best test accuracy and the
        best clustered run's, each also minus 0.5 points, like the seed's 97.4 / 97.73 / 97.8 %).
    """

    ks: tuple[int, ...] = param((40, 70, 90), "Cluster counts to compare with the reference: a list 40,70,90 or "
                                "start:stop:step.", option="--k", parse=lambda text, spec: parse_int_range(text))
    targets: tuple[float, ...] | None = param(None, "Test accuracies to reach, comma-separated (the seed's on MNIST: "
                                              "0.974,0.9773,0.978), or auto: the best test accuracy of the reference and "
                                              "of the best clustered run, each also minus 0.5 points.",
                                              above=0.0, high=1.0, parse=parse_targets)

    name = "clusters"

    def __post_init__(self) -> None:
        check_params(self)
        check_ks(self.ks, None, "ks")
        if self.targets is not None:
            object.__setattr__(self, "targets", tuple(sorted(set(self.targets))))
        object.__setattr__(self, "mlp", replace(self.mlp, scale_lambda2=True))  # the seed's Lambda2 · K / 784

    def with_data(self, dataset: Dataset) -> "ClustersExperiment":
        check_ks(self.ks, n_clustered(dataset, self.fit_on), "ks")
        return replace(self, dataset=dataset)

    @property
    def configs(self) -> tuple[int | None, ...]:
        return (None, *self.ks)

    def phases(self) -> list:
        return [TrainPhase(self), SummaryPhase("comparison", COMPARISON_SCHEMA,
                                               partial(comparison_inputs, targets=self.targets), lambda found: compare(*found))]

    def outputs(self, tables: dict[str, pa.Table], locate) -> list[Artifact]:
        from jobs.figures import comparison_plot

        epochs = tables["epochs"].to_pandas()
        comparison = tables["comparison"].to_pandas()
        data = self.dataset.name if self.dataset is not None else "data"
        title = (f"MLP {'-'.join(map(str, self.mlp.hidden))} on {data}: pixels vs cluster distances "
                 f"(K = {', '.join(map(str, self.ks))}), {self.mlp.epochs} epochs")
        return [Artifact("comparison.png", comparison_plot(epochs, comparison, title, REFERENCE))]


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


def comparison_inputs(tables: dict[str, pa.Table], targets: tuple[float, ...] | None):
    """(per-epoch rows of every configuration as a DataFrame, the targets) for :func:`compare`."""
    return tables["epochs"].select(list(COMPARISON_INPUT)).to_pandas(), targets
