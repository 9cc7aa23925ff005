"""``dreamctl experiment seed`` (issue 21): the articles' experiments on a data set, side by side
with the numbers the articles report (docs/FIDELITY.md).

An experiment of normal runs (cluster/runner.run_experiment), each with its own run id and
resumed like any other:

1. ``train``: the CNN with the articles' settings (jobs/train.py), its test accuracy;
2. ``oip``: every map of conv3 from random 4-scale starts, as in part I; the maps every start
   leaves dead, and the default rescue (a leaky-ReLU warm-up) on them (phase ``rescued``);
3. ``precursor`` on those dead maps with the articles' parameters: how many it wakes, and its
   time per map on this machine;
4. ``clusters``: the numpy MLP 784-70-30-10 on pixels against the same MLP on the distances
   to K = 70 centroids, the articles' settings: final test accuracies and the CPU time to first
   reach the articles' 97.4 %;
5. ``kmeans``: the sweep over K = 10…170: the elbow, where the silhouette peaks, time per K;

then its own run (job ``seed``): one row per number the articles report (:data:`ARTICLES`),
dreamctl's value beside it and the run that measured it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Generator

import numpy as np
import pyarrow as pa

from core.data import Dataset
from core.kmeans import KMeansSettings
from core.model import TrainConfig
from core.params import check_params, param, same_as
from jobs.base import DataBound, Step, Summary, SummaryPhase, check_maps, maps_param
from jobs.clusters import ClustersExperiment
from jobs.kmeans import KMeansSweep
from jobs.mlp import REFERENCE, MLPSettings, config_name
from jobs.oip import OipJob, dead_maps
from jobs.precursor import PrecursorJob
from jobs.precursor import per_map as precursor_per_map
from jobs.train import TrainJob, trained_model

LAYER = "conv3"

# What the articles report, by the name of the row dreamctl measures it in.
ARTICLES: dict[str, tuple[str, str]] = {  # name -> (what, the articles' value)
    "cnn_test_accuracy": ("CNN test accuracy", "0.9935"),
    "dead_maps": ("conv3 maps random starts leave dead", "67 of 128"),
    "precursor_woken": ("dead maps the precursor wakes", "33 of 67"),
    "rescue_woken": ("dead maps the default rescue wakes", "— (not in the articles)"),
    "precursor_seconds_per_map": ("precursor time per map", "< 300 s (GTX 960)"),
    "mlp_reference_test_accuracy": ("MLP 784-70-30-10 test accuracy after the last epoch", "0.9735 (600 epochs)"),
    "mlp_clusters_test_accuracy": ("MLP on K = 70 cluster distances, test accuracy", "0.978 (600 epochs)"),
    "cpu_speedup_first_reach": ("CPU time: the reference's whole run ÷ K = 70's to first reach 97.4 %", "≈ 14× "
                                "(18.2 min ÷ 1.3 min, ~150 epochs)"),
    "kmeans_elbow": ("elbow of the inertia over K (knee, prominence)", "no clear elbow"),
    "silhouette_best": ("K where the silhouette peaks (best three)", "40, 70, 90"),
    "kmeans_seconds_per_k": ("CPU seconds per K (fit)", "32 s (K = 30) to < 60 s (K = 180)"),
}
FIDELITY_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("what", pa.string()),
        ("articles", pa.string()),
        ("value", pa.float64()),  # dreamctl's, as a number (null when it is not one)
        ("text", pa.string()),  # dreamctl's, as shown
        ("run", pa.string()),  # job/run_id that measured it
    ]
)


@dataclass(frozen=True)
class SeedExperiment(DataBound):
    """Parameters of ``dreamctl experiment seed``: every default is the articles'."""

    train_epochs: int = same_as(TrainConfig, "epochs")
    train_seed: int = same_as(TrainConfig, "seed")
    maps: tuple[int, ...] = maps_param()
    restarts: int = same_as(OipJob, "restarts")
    oip_epochs: int = same_as(OipJob, "epochs")
    rescue: str = same_as(OipJob, "rescue")
    grid: int = same_as(PrecursorJob, "grid")
    levels: tuple[float, ...] = same_as(PrecursorJob, "levels")
    test_epochs: int = same_as(PrecursorJob, "test_epochs")
    top: int = same_as(PrecursorJob, "top")
    full_epochs: int = same_as(PrecursorJob, "full_epochs")
    exhaustive: bool = same_as(PrecursorJob, "exhaustive")
    mlp_epochs: int = same_as(MLPSettings, "epochs", panel=None)
    clusters: int = param(70, "K of the MLP on cluster distances (the articles' 70).", low=2)
    target: float = param(0.974, "Test accuracy whose first reach the MLP runs are timed to (the articles' 97.4 %).",
                          above=0.0, high=1.0)
    n_init: int = same_as(KMeansSettings, "n_init", default=500, help="k-means++ starts of every KMeans fit (the "
                          "articles' 500; the other commands default to 3).")
    ks: tuple[int, ...] = same_as(KMeansSweep, "ks")
    silhouette_sample: int | None = same_as(KMeansSweep, "silhouette_sample")
    dataset: Dataset | None = field(default=None, repr=False, compare=False)

    name = "seed"
    layer = LAYER  # the articles' maps: conv3's

    def __post_init__(self) -> None:
        check_params(self)
        object.__setattr__(self, "maps", check_maps(self.maps, LAYER))
        self.oip()  # the runs' own checks, in their parameter names: refused before anything runs
        self.precursor(self.maps)
        self.sweep()

    def with_data(self, dataset: Dataset) -> "SeedExperiment":
        self.clustered().with_data(dataset)
        self.sweep().with_data(dataset)
        return replace(self, dataset=dataset)

    # ----- the runs ------------------------------------------------------------------------
    def oip(self) -> OipJob:
        return OipJob(layer=LAYER, maps=self.maps, epochs=self.oip_epochs, restarts=self.restarts, rescue=self.rescue)

    def precursor(self, maps: tuple[int, ...]) -> PrecursorJob:
        return PrecursorJob(layer=LAYER, maps=maps, grid=self.grid, levels=self.levels, test_epochs=self.test_epochs,
                            top=self.top, full_epochs=self.full_epochs, exhaustive=self.exhaustive)

    def clustered(self) -> ClustersExperiment:
        return ClustersExperiment(mlp=replace(MLPSettings(), epochs=self.mlp_epochs),
                                  kmeans=replace(KMeansSettings(), n_init=self.n_init), ks=(self.clusters,),
                                  targets=(self.target,))

    def sweep(self) -> KMeansSweep:
        return KMeansSweep(ks=self.ks, n_init=self.n_init, silhouette_sample=self.silhouette_sample)

    def steps(self) -> Generator[Step, object, None]:
        """The runs of the module docstring, then the comparison with the articles."""
        rows: list[dict] = []

        def row(name: str, value: float | None, text: str, outcome) -> None:
            what, articles = ARTICLES[name]
            rows.append({"name": name, "what": what, "articles": articles, "value": value, "text": text,
                         "run": f"{outcome.job}/{outcome.run_id}"})

        trained = yield Step(TrainJob(config=TrainConfig(epochs=self.train_epochs, seed=self.train_seed)))
        model = trained_model(trained.tables["model"], trained.metadata["data"])
        accuracy = trained.tables["model"].column("test_accuracy")[0].as_py()
        row("cnn_test_accuracy", accuracy, f"{accuracy:.4f}", trained)

        oip = yield Step(self.oip(), model)
        dead = tuple(dead_maps(oip.tables["oips"]))
        row("dead_maps", len(dead), f"{len(dead)} of {len(self.maps)}", oip)
        if "rescued" in oip.tables:
            woken = int(oip.tables["rescued"].to_pandas().groupby("map")["alive"].any().sum())
            row("rescue_woken", woken, f"{woken} of {len(dead)}", oip)
        if dead:
            precursor = yield Step(self.precursor(dead), model)
            found = precursor_per_map(precursor.tables, precursor.records, self.full_epochs)
            woken = int(found["loss"].gt(0).sum())
            row("precursor_woken", woken, f"{woken} of {len(dead)}", precursor)
            seconds = float(found["seconds"].median())
            row("precursor_seconds_per_map", seconds, f"{seconds:.0f} s (median over {len(found)} maps, one actor on "
                f"one CPU; {found['seconds'].min():.0f}–{found['seconds'].max():.0f} s)", precursor)

        clusters = yield Step(self.clustered())
        comparison = clusters.tables["comparison"].to_pandas().set_index("config")
        for name, config in (("mlp_reference_test_accuracy", REFERENCE), ("mlp_clusters_test_accuracy",
                                                                          config_name(self.clusters))):
            final = float(comparison.loc[config, "final_test_acc"])
            row(name, final, f"{final:.4f} ({self.mlp_epochs} epochs; best {comparison.loc[config, 'best_test_acc']:.4f})",
                clusters)
        # The articles' ratio: the reference's whole run against the clustered MLP's first reach
        # (their reference ends at 97.35 %, below the target); first reach against first reach beside it.
        clustered = comparison.loc[config_name(self.clusters)]
        speedup = float(clustered["speedup_cpu_vs_reference_run"])
        row("cpu_speedup_first_reach", speedup, "never reached" if math.isnan(speedup) else
            f"{speedup:.1f}× ({comparison.loc[REFERENCE, 'total_cpu_seconds']:.0f} s ÷ "
            f"{clustered['cpu_seconds_first']:.0f} s, epoch {clustered['epoch_first']:.0f}); first reach against the "
            f"reference's first reach (epoch {comparison.loc[REFERENCE, 'epoch_first']:.0f}): "
            f"{clustered['speedup_cpu_first']:.1f}×", clusters)

        sweep = yield Step(self.sweep())
        frame = sweep.tables["sweep"].to_pandas().sort_values("k")
        knee, prominence = elbow(frame["k"].to_numpy(), frame["inertia"].to_numpy())
        row("kmeans_elbow", prominence, f"K = {knee}, prominence {prominence:.2f} (0: a straight line)", sweep)
        best = frame.dropna(subset=["silhouette_mean"]).sort_values("silhouette_mean", ascending=False)["k"].head(3)
        row("silhouette_best", float(best.iloc[0]) if len(best) else None, ", ".join(map(str, best)) or "not computed",
            sweep)
        fit = frame.set_index("k")["fit_cpu_seconds"]
        row("kmeans_seconds_per_k", float(fit.median()), f"{fit.iloc[0]:.0f} s (K = {fit.index[0]}) to {fit.iloc[-1]:.0f} s "
            f"(K = {fit.index[-1]}), median {fit.median():.0f} s; wall {frame['fit_seconds'].median():.0f} s", sweep)

        # The rows (names, what they are, the articles' values) are in the parameters: other rows, a new run.
        params = {**self.params(), "runs": [r["run"] for r in rows],
                  "rows": {name: list(row) for name, row in ARTICLES.items()}}
        yield Step(Summary(self.name, params, (
            SummaryPhase("fidelity", FIDELITY_SCHEMA, lambda tables: rows,
                         lambda found: pa.Table.from_pylist(found, schema=FIDELITY_SCHEMA)),), lambda tables: []))


def elbow(ks: np.ndarray, inertia: np.ndarray) -> tuple[int, float]:
    """The knee of a decreasing curve (Kneedle): on both axes scaled to [0, 1], the K farthest
    below the straight line from the first point to the last, and that distance (its
    prominence: 0 for a straight line, about 0.5 for a sharp L)."""
    if len(ks) < 3:
        return int(ks[0]), 0.0
    x = (ks - ks[0]) / (ks[-1] - ks[0])
    y = (inertia - inertia[-1]) / (inertia[0] - inertia[-1]) if inertia[0] != inertia[-1] else np.zeros(len(ks))
    below = (1 - x) - y  # the chord from (0, 1) to (1, 0), minus the curve
    index = int(np.argmax(below))
    return int(ks[index]), float(below[index])
