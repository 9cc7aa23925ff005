"""core.kmeans: fits, silhouettes, the bounds of K, pixel scaling and cluster-distance features
(the sweep through Ray: tests/end_to_end/test_kmeans_command.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.kmeans import KMeansSettings, check_k, cluster_distance_features, fit_kmeans, pixel_matrix, scaled_lambda2, silhouette


def blobs(n: int = 600, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k well separated Gaussian blobs in 10 dimensions, float32."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=10.0, size=(k, 10))
    labels = rng.integers(0, k, n)
    return (centers[labels] + rng.normal(size=(n, 10))).astype(np.float32), labels


def test_fit_finds_blobs_and_records_what_the_sweep_needs():
    X, _ = blobs()
    fits = {k: fit_kmeans(X, k, KMeansSettings(n_init=3, batch_size=100)) for k in (2, 4, 8)}
    fit = fits[4]
    assert fit.centroids.shape == (4, 10) and fit.labels.shape == (600,)
    assert fit.n_iter >= 1 and fit.n_steps >= 1 and fit.fit_seconds > 0 and fit.n_clusters_used == 4
    # four true blobs: the inertia drops sharply up to K = 4, little after (an elbow)
    assert fits[2].inertia > 5 * fits[4].inertia > 5 * fits[8].inertia * 0.5
    distances = fit.transform(X[:5])
    assert distances.shape == (5, 4) and distances.dtype == np.float32
    np.testing.assert_allclose(distances.argmin(axis=1), fit.labels[:5])
    np.testing.assert_allclose(np.sum(distances.min(axis=1) ** 2), np.sum((X[:5] - fit.centroids[fit.labels[:5]]) ** 2), rtol=1e-4)


def test_fit_is_reproducible_with_a_seed():
    X, _ = blobs()
    a, b = (fit_kmeans(X, 5, KMeansSettings(n_init=2, batch_size=100, seed=3)) for _ in range(2))
    assert a.inertia == b.inertia
    np.testing.assert_array_equal(a.labels, b.labels)


def test_silhouette_sampled_is_close_to_exact_and_reports_its_spread():
    X, labels = blobs(n=800)
    exact = silhouette(X, labels, None)
    assert exact.exact and exact.sample_size == 800 and exact.repeats == 1 and exact.std == 0.0
    sampled = silhouette(X, labels, 200, repeats=4, seed=1)
    assert not sampled.exact and sampled.sample_size == 200 and sampled.repeats == 4
    assert sampled.std > 0 and abs(sampled.mean - exact.mean) < 0.05
    again = silhouette(X, labels, 200, repeats=4, seed=1)  # seeded: the same samples
    assert (again.mean, again.std) == (sampled.mean, sampled.std)
    # a sample at least as large as the data is the exact score
    assert silhouette(X, labels, 5000).exact
    # one cluster in the data: undefined, reported as nan rather than an error
    assert math.isnan(silhouette(X, np.zeros(800, dtype=int), 100, repeats=2).mean)


def test_check_k_bounds():
    check_k(2, 3)
    for k, n in ((1, 100), (100, 100), (150, 100)):
        with pytest.raises(ValueError):
            check_k(k, n)


def test_pixel_scaling_and_cluster_distance_features():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    unit = pixel_matrix(images)
    assert unit.shape == (300, 784) and unit.dtype == np.float32 and 0 <= unit.min() and unit.max() <= 1
    standard = pixel_matrix(images, "standard")
    np.testing.assert_allclose(standard.mean(axis=0), 0, atol=1e-5)
    train, test, fit = cluster_distance_features(unit, unit[:200], unit[200:], 6, KMeansSettings(n_init=1, batch_size=100))
    assert train.shape == (200, 6) and test.shape == (100, 6) and fit.k == 6
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-5)  # standardized with the train statistics
    np.testing.assert_allclose(train.std(axis=0), 1, atol=1e-4)
    assert scaled_lambda2(0.2, 70) == pytest.approx(0.2 * 70 / 784)
