"""KMeans sweep: the core functions, the sweep through Ray (one row per K, resume), bad input."""

from __future__ import annotations

import errno
import math
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.kmeans import KMeansSettings, check_k, cluster_distance_features, fit_kmeans, pixel_matrix, scaled_lambda2, silhouette

SWEEP_COLUMNS = {"k", "inertia", "fit_seconds", "fit_cpu_seconds", "n_iter", "n_steps", "n_clusters_used",
                 "silhouette_mean", "silhouette_std", "silhouette_sample", "silhouette_repeats", "silhouette_exact",
                 "silhouette_seconds", "n_samples", "n_init", "max_iter", "batch_size"}


def blobs(n: int = 600, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k well separated Gaussian blobs in 10 dimensions, float32."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=10.0, size=(k, 10))
    labels = rng.integers(0, k, n)
    return (centers[labels] + rng.normal(size=(n, 10))).astype(np.float32), labels


# ----- core -------------------------------------------------------------------------------------
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


# ----- the sweep through the CLI and Ray ------------------------------------------------------
SWEEP = ("kmeans", "sweep", "--samples", "600", "--silhouette", "300", "--silhouette-repeats", "2", "--out", "res")


def test_sweep_writes_one_row_per_k_and_resumes(ray_local, cli, capsys, tmp_path):
    assert cli(*SWEEP, "--k", "5:15:5") == 0
    run_dir = next((tmp_path / "res" / "kmeans").glob("[0-9a-f]*"))
    frame = pd.read_parquet(run_dir / "sweep").sort_values("k")
    assert list(frame["k"]) == [5, 10, 15]
    assert SWEEP_COLUMNS <= set(frame.columns)
    assert (frame["n_samples"] == 600).all() and (frame["silhouette_sample"] == 300).all()
    assert (frame["silhouette_repeats"] == 2).all() and (frame["n_init"] == 3).all()
    assert frame["inertia"].is_monotonic_decreasing and (frame["fit_seconds"] > 0).all()
    assert frame["silhouette_mean"].between(-1, 1).all() and (frame["silhouette_std"] >= 0).all()
    for name in ("elbow.png", "silhouette.png", "_SUCCESS", "_manifest.json"):
        assert (run_dir / name).is_file()
    metadata = pq.read_schema(run_dir / "sweep" / "part-k0010.parquet").metadata[b"dreamctl"]
    assert b"mnist-5k" in metadata and b"silhouette_sample" in metadata  # data identity and parameters
    printed = capsys.readouterr().out
    assert "inertia" in printed and f"results: res/kmeans/{run_dir.name}" in printed

    # interrupted run: one K's part is missing; the rerun computes only that K
    kept = run_dir / "sweep" / "part-k0005.parquet"
    kept_mtime = kept.stat().st_mtime_ns
    (run_dir / "sweep" / "part-k0015.parquet").unlink()
    (run_dir / "_SUCCESS").unlink()
    assert cli(*SWEEP, "--k", "5:15:5") == 0
    assert "2 of 3 K reused" in capsys.readouterr().out
    assert kept.stat().st_mtime_ns == kept_mtime
    again = pd.read_parquet(run_dir / "sweep").sort_values("k")
    assert list(again["k"]) == [5, 10, 15] and (run_dir / "_SUCCESS").is_file()
    assert again["inertia"].tolist() == pytest.approx(frame["inertia"].tolist())  # same seed, same fit


def test_a_full_disk_fails_the_job_in_one_line_and_keeps_what_was_written(ray_local, cli, capsys, tmp_path,
                                                                         monkeypatch):
    """Disk full while the second part is written: exit 1 and one ``job failed`` line; the
    part written before stays whole and is reused by the rerun, no temporary file is left."""
    import cluster.files

    real_write, parts_written = os.write, []

    def disk_full_after_one_part(fd, data):
        if bytes(data[:4]) == b"PAR1":  # the first bytes of a Parquet file
            if parts_written:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            parts_written.append(fd)
        return real_write(fd, data)

    with monkeypatch.context() as patch:
        patch.setattr(cluster.files.os, "write", disk_full_after_one_part)
        assert cli(*SWEEP, "--k", "5:15:5") == 1
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if line.startswith("job failed:")]
    assert len(failed) == 1 and "No space left on device" in failed[0] and "Traceback" not in err
    run_dir = next((tmp_path / "res" / "kmeans").glob("[0-9a-f]*"))
    (kept,) = (run_dir / "sweep").iterdir()
    assert kept.name.startswith("part-k") and not (run_dir / "_SUCCESS").exists()
    assert not [path for path in run_dir.rglob("*") if path.name.startswith(".")]  # no temporary left
    kept_mtime = kept.stat().st_mtime_ns
    assert cli(*SWEEP, "--k", "5:15:5") == 0
    assert "1 of 3 K reused" in capsys.readouterr().out
    assert kept.stat().st_mtime_ns == kept_mtime and len(pd.read_parquet(run_dir / "sweep")) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (("--k", "1,5"), "at least 2 clusters"),
        (("--k", "5000"), "smaller than the number of images"),
        (("--samples", "100", "--k", "100"), "smaller than the number of images"),
        (("--k", "50:10"), "empty"),
        (("--k", "abc"), "cannot read"),
        (("--k", ""), "empty"),
        (("--k", "10:x:5"), "cannot read"),
        (("--silhouette", "lots"), "--silhouette"),
        (("--silhouette", "50", "--k", "60"), "too small"),
        (("--scale", "log"), "--scale"),
        (("--n-init", "0"), "--n-init"),
    ],
)
def test_sweep_bad_input_exits_2_with_one_line(cli, capsys, args, message):
    assert cli("kmeans", "sweep", *args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], captured.err
    assert captured.out == ""
