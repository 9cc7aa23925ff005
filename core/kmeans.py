"""KMeans in pixel space (algorithms.md §6): fits, silhouette scores, cluster-distance features.

Pure functions over numpy arrays; scikit-learn's ``MiniBatchKMeans`` does the clustering.
The seed's settings are ``n_init=500, max_iter=1000, batch_size=500``; :data:`FAST`
(``n_init=3``) is the default here: its inertia is within ±1 % of the seed's (no consistent
sign) at 1/50–1/150 of the CPU time (docs/PERFORMANCE.md, "KMeans"). Where the seed's time
goes: MiniBatchKMeans runs k-means++ ``n_init`` times on ``init_size = 3·batch_size`` points,
keeps the best start, then does one mini-batch run; each start costs about
2·K·(2 + ln K)·1500·784 flops (~1 GFLOP at K = 70), whatever the data size.

Shapes: ``X`` is (n_samples, n_features) float32; ``labels`` (n_samples,) int.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from core.params import check_params, param

SCALES = ("unit", "standard")


@dataclass(frozen=True)
class KMeansSettings:
    """``MiniBatchKMeans`` parameters. ``seed`` is its ``random_state``."""

    n_init: int = param(3, "k-means++ starts per fit, the best kept (the seed: 500, ~100× slower for the same "
                           "inertia, docs/PERFORMANCE.md).", low=1)
    max_iter: int = param(1000, "Most passes over the data per fit (early stopping usually ends sooner).", low=1)
    batch_size: int = param(500, "Images per mini-batch (k-means++ starts use 3× as many).", low=1)
    seed: int = param(0, "random_state of every fit (and the seed of silhouette samples).", low=0)

    def __post_init__(self) -> None:
        check_params(self)


def scale_param() -> Any:
    return param("unit", "Pixel scaling before clustering: unit (pixel/255) or standard (per-pixel z-score).",
                 choices=SCALES)


SEED = KMeansSettings(n_init=500, max_iter=1000, batch_size=500)  # the seed article's call
FAST = KMeansSettings()  # dreamctl's default


@dataclass(frozen=True)
class KMeansFit:
    """One fitted clustering.

    inertia: sum of squared distances of every point to its nearest centroid (all points).
    fit_seconds / fit_cpu_seconds: wall-clock / process CPU seconds of the fit (labels included).
    n_iter: passes over the data set (sklearn's ``n_iter_``); n_steps: mini-batch steps.
    centroids: (K, n_features); labels: (n_samples,) nearest centroid of every point.
    """

    k: int
    inertia: float
    fit_seconds: float
    fit_cpu_seconds: float
    n_iter: int
    n_steps: int
    centroids: np.ndarray
    labels: np.ndarray

    @property
    def n_clusters_used(self) -> int:
        """Clusters that got at least one point."""
        return int(np.unique(self.labels).size)

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Euclidean distances (n, K) of each row of X to the centroids, float32."""
        from sklearn.metrics.pairwise import euclidean_distances

        return euclidean_distances(np.asarray(X, dtype=np.float32), self.centroids).astype(np.float32)


@dataclass(frozen=True)
class Silhouette:
    """Mean silhouette coefficient: mean and std over ``repeats`` random samples of
    ``sample_size`` points each (exact: one "sample" of every point, std 0)."""

    mean: float
    std: float
    sample_size: int
    repeats: int
    seconds: float
    exact: bool


def check_k(k: int, n_samples: int) -> None:
    """KMeans needs 2 <= K < n_samples (ValueError otherwise)."""
    if k < 2:
        raise ValueError(f"K = {k}: need at least 2 clusters")
    if k >= n_samples:
        raise ValueError(f"K = {k}: need fewer clusters than samples ({n_samples})")


def pixel_matrix(images: ArrayLike, scale: str = "unit", reference: ArrayLike | None = None) -> np.ndarray:
    """uint8 images (n, 28, 28) or (n, 784) → float32 (n, 784).

    scale "unit": pixel / 255 in [0, 1]; "standard": every pixel z-scored with the mean and
    std of ``reference`` images (default: these images); constant pixels are only centred.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    images = np.asarray(images)
    X = images.reshape(len(images), -1).astype(np.float32) / 255.0
    if scale == "standard":
        ref = X if reference is None else pixel_matrix(reference, "unit")
        mean = ref.mean(axis=0, dtype=np.float64)
        std = ref.std(axis=0, dtype=np.float64)
        std[std == 0] = 1.0
        X = ((X - mean) / std).astype(np.float32)
    return X


def fit_kmeans(X: ArrayLike, k: int, settings: KMeansSettings = FAST) -> KMeansFit:
    """Fit ``MiniBatchKMeans(n_clusters=k, ...)`` on X (n, d) and time it."""
    from sklearn.cluster import MiniBatchKMeans

    X = np.asarray(X, dtype=np.float32)
    check_k(k, len(X))
    model = MiniBatchKMeans(
        n_clusters=k,
        n_init=settings.n_init,
        max_iter=settings.max_iter,
        batch_size=settings.batch_size,
        random_state=settings.seed,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(X)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return KMeansFit(
        k=k,
        inertia=float(model.inertia_),
        fit_seconds=wall,
        fit_cpu_seconds=cpu,
        n_iter=int(model.n_iter_),
        n_steps=int(model.n_steps_),
        centroids=model.cluster_centers_.astype(np.float32),
        labels=model.labels_.astype(np.int32),
    )


def silhouette(X: ArrayLike, labels: ArrayLike, sample_size: int | None = 10_000, repeats: int = 3,
               seed: int = 0) -> Silhouette:
    """Mean silhouette coefficient of a clustering, on samples or exact.

    ``sample_size`` None (or >= n) uses every point once (exact; O(n²) distances, ~110 s for
    70,000 × 784 on 2 cores). Otherwise ``repeats`` samples of ``sample_size`` points, drawn
    without replacement with seeds seed, seed+1, …; returns their mean and (population)
    std. A sample with fewer than 2 distinct labels scores nan.
    """
    from sklearn.metrics import silhouette_score

    X = np.asarray(X, dtype=np.float32)
    labels = np.asarray(labels)
    n = len(X)
    exact = sample_size is None or sample_size >= n
    if not exact and sample_size < 2:
        raise ValueError(f"silhouette sample_size must be >= 2, got {sample_size}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    size = n if exact else int(sample_size)
    start = time.perf_counter()
    scores = []
    for r in range(1 if exact else repeats):
        index = np.arange(n) if exact else np.random.default_rng(seed + r).choice(n, size, replace=False)
        sample_labels = labels[index]
        n_labels = np.unique(sample_labels).size
        if not 2 <= n_labels <= size - 1:
            scores.append(math.nan)
            continue
        scores.append(float(silhouette_score(X[index], sample_labels)))
    return Silhouette(
        mean=float(np.mean(scores)),
        std=float(np.std(scores)),
        sample_size=size,
        repeats=len(scores),
        seconds=time.perf_counter() - start,
        exact=exact,
    )


def cluster_distance_features(X_fit: ArrayLike, X_train: ArrayLike, X_test: ArrayLike, k: int,
                              settings: KMeansSettings = FAST) -> tuple[np.ndarray, np.ndarray, KMeansFit]:
    """The seed's cluster-distance features: fit KMeans on X_fit (the seed: train + test
    images, no labels), take every image's distances to the K centroids, standardize them
    with the train set's mean and std.

    Returns (train features (n_train, K), test features (n_test, K), the fit), float32.
    """
    fit = fit_kmeans(X_fit, k, settings)
    train, test = fit.transform(X_train), fit.transform(X_test)
    mean = train.mean(axis=0, dtype=np.float64)
    std = train.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32), fit


def scaled_lambda2(lambda2: float, n_inputs: int, n_pixels: int = 784) -> float:
    """The seed's rule for fewer inputs: Lambda2_K = Lambda2 · K / 784."""
    return lambda2 * n_inputs / n_pixels
