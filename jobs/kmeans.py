"""The KMeans sweep over K (algorithms.md §6): one shard per K, one row per shard.

The pixel matrix (train + test images, float32, 70,000 × 784 for a full set) is the phase's
``shared()`` data: the runner puts it in Ray's object store once and every task reads it
from there. The data set itself never travels with a task (see ``jobs.base.DataBound``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from core.data import Dataset
from core.errors import BadParameter
from core.kmeans import KMeansSettings, fit_kmeans, pixel_matrix, scale_param, silhouette
from core.params import check_params, param, parse_int_range, same_as
from jobs.base import Artifact, DataBound, Shard

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


def parse_silhouette(text: str, spec=None) -> int | None:
    """'10000' → 10000 points per sample; 'exact' → None (every point); 'none' → 0 (skip)."""
    text = text.strip().lower()
    if text in ("exact", "none"):
        return None if text == "exact" else 0
    try:
        return int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise ValueError(f"cannot read {text!r} (use a sample size like 10000, exact or none)") from None


@dataclass(frozen=True)
class KMeansSweep(DataBound):
    """Parameters of ``dreamctl kmeans sweep``. Defaults: the seed's K range and
    ``max_iter``/``batch_size``; ``n_init=3`` instead of the seed's 500 (docs/PERFORMANCE.md).

    samples: cluster a seeded random subset of train + test (None = all).
    silhouette_sample: points per silhouette sample (None = exact, every point; 0 = none).
    silhouette_repeats: samples per K (one when exact).
    dataset: the data, bound by :meth:`with_data`; not a parameter (the run id records its identity).
    """

    ks: tuple[int, ...] = param(tuple(range(10, 171, 10)), "Values of K (clusters): start:stop:step with stop "
                                "included, or a list like 40,70,90.", option="--k", parse=lambda text, spec: parse_int_range(text))
    n_init: int = same_as(KMeansSettings, "n_init")
    max_iter: int = same_as(KMeansSettings, "max_iter")
    batch_size: int = same_as(KMeansSettings, "batch_size")
    seed: int = same_as(KMeansSettings, "seed", help="random_state of every fit; seed of the silhouette samples and of --samples.")
    scale: str = scale_param()
    samples: int | None = param(None, "Cluster a seeded random subset of this many images of train + test. "
                                "Default: all (70,000 for a full set).", low=3)
    silhouette_sample: int | None = param(10_000, "Silhouette score: points per random sample (an integer), exact "
                                          "(every point: O(n²), ~2 min per K for 70,000), or none.",
                                          option="--silhouette", parse=parse_silhouette)
    silhouette_repeats: int = param(3, "Random samples per K; the score is their mean ± std.", low=1)
    dataset: Dataset | None = field(default=None, repr=False, compare=False)

    name = "kmeans"

    def __post_init__(self) -> None:
        check_params(self)
        check_ks(self.ks, None, "ks")
        if self.silhouette_sample is not None and self.silhouette_sample != 0 and self.silhouette_sample < 2:
            raise BadParameter("silhouette_sample", f"a sample needs at least 2 points, got {self.silhouette_sample}")

    def with_data(self, dataset: Dataset) -> "KMeansSweep":
        """This sweep on ``dataset``: K must stay below the number of images clustered."""
        n_total = len(dataset.x_train) + len(dataset.x_test)
        if self.samples is not None and self.samples > n_total:
            raise BadParameter("samples", f"{self.samples:,} is more than the {n_total:,} images of {dataset.name}")
        samples = self.samples if self.samples is not None and self.samples < n_total else None
        n_samples = samples or n_total
        check_ks(self.ks, n_samples, "ks")
        if self.silhouette_sample and self.silhouette_sample < n_samples and self.silhouette_sample <= max(self.ks):
            raise BadParameter("silhouette_sample", f"a sample of {self.silhouette_sample:,} points is too small "
                               f"for K = {max(self.ks)}; use more points than clusters")
        return replace(self, samples=samples, dataset=dataset)

    def phases(self) -> list:
        return [SweepPhase(self)]

    def outputs(self, tables: dict[str, pa.Table], locate) -> list[Artifact]:
        from jobs.figures import elbow_plot, silhouette_plot

        frame = tables["sweep"].to_pandas().sort_values("k")
        title = self.describe(frame)
        return [Artifact("elbow.png", elbow_plot(frame, title)), Artifact("silhouette.png", silhouette_plot(frame, title))]

    def describe(self, frame) -> str:
        name = self.dataset.name if self.dataset is not None else "data"
        n = int(frame["n_samples"].iloc[0]) if len(frame) else 0
        return (f"MiniBatchKMeans on {name} ({n:,} images): n_init={self.n_init}, max_iter={self.max_iter}, "
                f"batch_size={self.batch_size}")


def check_ks(ks: tuple[int, ...], n_samples: int | None, name: str) -> None:
    """Every K must satisfy 2 <= K < number of samples clustered (BadParameter otherwise;
    ``n_samples`` None: the data is not known yet)."""
    for k in ks:
        if k < 2:
            raise BadParameter(name, f"K = {k} is too small; KMeans needs at least 2 clusters")
        if n_samples is not None and k >= n_samples:
            raise BadParameter(name, f"K = {k} must be smaller than the number of images clustered ({n_samples:,})")


@dataclass(frozen=True)
class SweepPhase:
    job: KMeansSweep
    name = "sweep"
    unit = "clusters"  # work per shard grows with K, so the rate and ETA count clusters
    schema = SWEEP_SCHEMA
    must_be_finite = ("inertia",)  # the silhouette is nan when skipped
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
        if job.silhouette_sample != 0:
            repeats = 1 if job.silhouette_sample is None else job.silhouette_repeats
            sil = silhouette(X, fit.labels, job.silhouette_sample, repeats, job.seed)
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
