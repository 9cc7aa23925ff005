"""The KMeans sweep over K (algorithms.md §6): one shard per K, one row per shard.

The pixel matrix (train + test images, float32, 70,000 × 784 for a full set) is the phase's
``shared()`` data: the runner puts it in Ray's object store once and every task reads it
from there. The data set itself never travels with a task (see ``KMeansSweep.__getstate__``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from core.data import Dataset
from core.kmeans import FAST, KMeansSettings, fit_kmeans, pixel_matrix, silhouette
from jobs.base import Shard

SWEEP_SCHEMA = pa.schema(
    [
        ("k", pa.int32()),
        ("inertia", pa.float64()),  # sum of squared distances to the nearest centroid, all points
        ("fit_seconds", pa.float64()),  # wall clock of the fit
        ("fit_cpu_seconds", pa.float64()),  # process CPU of the fit
        ("n_iter", pa.int32()),  # passes over the data (sklearn's n_iter_)
        ("n_steps", pa.int64()),  # mini-batch steps
        ("n_clusters_used", pa.int32()),  # clusters with at least one point
        ("silhouette_mean", pa.float64()),  # nan when skipped
        ("silhouette_std", pa.float64()),  # over the samples; 0 when exact
        ("silhouette_sample", pa.int64()),  # points per sample (all points when exact; 0 = skipped)
        ("silhouette_repeats", pa.int32()),
        ("silhouette_exact", pa.bool_()),
        ("silhouette_seconds", pa.float64()),  # wall clock of all samples
        ("n_samples", pa.int64()),  # points clustered
        ("n_init", pa.int32()),
        ("max_iter", pa.int32()),
        ("batch_size", pa.int32()),
    ]
)


def sweep_images(dataset: Dataset, samples: int | None, seed: int) -> np.ndarray:
    """Train + test images, or a seeded random subset of ``samples`` of them (in data order)."""
    images = np.concatenate([dataset.x_train, dataset.x_test])
    if samples is not None and samples < len(images):
        images = images[np.sort(np.random.default_rng(seed).choice(len(images), samples, replace=False))]
    return images


@dataclass(frozen=True)
class KMeansSweep:
    """Parameters of ``dreamctl kmeans sweep``. Defaults: the seed's K range and
    ``max_iter``/``batch_size``; ``n_init=3`` instead of the seed's 500 (docs/PERFORMANCE.md).

    samples: cluster a seeded random subset of train + test (None = all).
    scale: "unit" (pixels / 255) or "standard" (per-pixel z-score), see core.kmeans.
    silhouette_sample: points per silhouette sample (None = exact, every point).
    silhouette_repeats: samples per K (0 = no silhouette).
    dataset: the data; not a parameter (the run id records its identity instead).
    """

    ks: tuple[int, ...] = tuple(range(10, 171, 10))
    n_init: int = FAST.n_init
    max_iter: int = FAST.max_iter
    batch_size: int = FAST.batch_size
    seed: int = 0
    scale: str = "unit"
    samples: int | None = None
    silhouette_sample: int | None = 10_000
    silhouette_repeats: int = 3
    dataset: Dataset | None = field(default=None, repr=False, compare=False)

    name = "kmeans"

    def __getstate__(self) -> dict:
        # Tasks get the pixel matrix through the object store (shared()), never the data set.
        state = dict(self.__dict__)
        state["dataset"] = None
        return state

    def params(self) -> dict:
        return {key: getattr(self, key) for key in self.__dataclass_fields__ if key != "dataset"}

    def phases(self) -> list:
        return [SweepPhase(self)]

    def write_outputs(self, tables: dict[str, pa.Table], store) -> list[Path]:
        frame = tables["sweep"].to_pandas().sort_values("k")
        title = self.describe(frame)
        return [elbow_plot(frame, store.path("elbow.png"), title),
                silhouette_plot(frame, store.path("silhouette.png"), title)]

    def describe(self, frame) -> str:
        name = self.dataset.name if self.dataset is not None else "data"
        n = int(frame["n_samples"].iloc[0]) if len(frame) else 0
        return (f"MiniBatchKMeans on {name} ({n:,} images): n_init={self.n_init}, max_iter={self.max_iter}, "
                f"batch_size={self.batch_size}")


@dataclass(frozen=True)
class SweepPhase:
    job: KMeansSweep
    name = "sweep"
    unit = "clusters"  # work per shard grows with K, so the rate and ETA count clusters
    schema = SWEEP_SCHEMA
    needs_model = False

    def shared(self) -> np.ndarray:
        """The pixel matrix (n_samples, 784) float32 that every K clusters."""
        images = sweep_images(self.job.dataset, self.job.samples, self.job.seed)
        return pixel_matrix(images, self.job.scale)

    def shards(self, tables) -> list[Shard]:
        return [Shard(shard_id=f"k{k:04d}", payload=k, n_rows=1, n_items=k) for k in self.job.ks]

    def compute(self, X: np.ndarray, k: int) -> pa.Table:
        job = self.job
        fit = fit_kmeans(X, k, KMeansSettings(job.n_init, job.max_iter, job.batch_size, job.seed))
        if job.silhouette_repeats > 0:
            sil = silhouette(X, fit.labels, job.silhouette_sample, job.silhouette_repeats, job.seed)
            sil_values = (sil.mean, sil.std, sil.sample_size, sil.repeats, sil.exact, sil.seconds)
        else:
            sil_values = (math.nan, math.nan, 0, 0, False, 0.0)
        row = {
            "k": k, "inertia": fit.inertia, "fit_seconds": fit.fit_seconds, "fit_cpu_seconds": fit.fit_cpu_seconds,
            "n_iter": fit.n_iter, "n_steps": fit.n_steps, "n_clusters_used": fit.n_clusters_used,
            **dict(zip(("silhouette_mean", "silhouette_std", "silhouette_sample", "silhouette_repeats",
                        "silhouette_exact", "silhouette_seconds"), sil_values)),
            "n_samples": len(X), "n_init": job.n_init, "max_iter": job.max_iter, "batch_size": job.batch_size,
        }
        return pa.Table.from_pylist([row], schema=SWEEP_SCHEMA)


def elbow_plot(frame, path: Path, title: str) -> Path:
    """Inertia vs K (look for the elbow) and fit seconds vs K, side by side."""
    from jobs.figures import save_figure  # sets matplotlib's Agg backend first
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    left.plot(frame["k"], frame["inertia"], "o-")
    left.set_xlabel("number of clusters K")
    left.set_ylabel("inertia (sum of squared distances)")
    left.set_title("elbow: inertia vs K")
    right.plot(frame["k"], frame["fit_seconds"], "o-", label="wall clock")
    right.plot(frame["k"], frame["fit_cpu_seconds"], "s--", label="process CPU")
    right.set_xlabel("number of clusters K")
    right.set_ylabel("fit seconds")
    right.set_title("fit time vs K")
    right.legend()
    for axis in (left, right):
        axis.grid(alpha=0.3)
    figure.suptitle(title, fontsize=9)
    return save_figure(figure, path)


def silhouette_plot(frame, path: Path, title: str) -> Path:
    """Mean silhouette coefficient vs K, error bars = std over the samples."""
    from jobs.figures import save_figure  # sets matplotlib's Agg backend first
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2))
    measured = frame[frame["silhouette_repeats"] > 0]
    if len(measured):
        axis.errorbar(measured["k"], measured["silhouette_mean"], yerr=measured["silhouette_std"], fmt="o-", capsize=3)
        first = measured.iloc[0]
        how = (f"exact, all {int(first['silhouette_sample']):,} points" if first["silhouette_exact"] else
               f"mean ± std of {int(first['silhouette_repeats'])} samples of {int(first['silhouette_sample']):,} points")
    else:
        how = "not computed (--silhouette none)"
        axis.text(0.5, 0.5, how, ha="center", va="center", transform=axis.transAxes)
    axis.set_xlabel("number of clusters K")
    axis.set_ylabel("mean silhouette coefficient")
    axis.set_title(f"silhouette vs K ({how})", fontsize=9)
    axis.grid(alpha=0.3)
    figure.suptitle(title, fontsize=9)
    return save_figure(figure, path)
