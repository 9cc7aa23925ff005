"""``dreamctl kmeans sweep`` through Ray: one row per K with what the sweep measures, its plots
and metadata; an interrupted sweep recomputes only the missing K; a full disk fails the job in
one line and keeps the parts written before."""

from __future__ import annotations

import errno
import os

import pandas as pd
import pyarrow.parquet as pq
import pytest

SWEEP_COLUMNS = {"k", "inertia", "fit_seconds", "fit_cpu_seconds", "n_iter", "n_steps", "n_clusters_used",
                 "silhouette_mean", "silhouette_std", "silhouette_sample", "silhouette_repeats", "silhouette_exact",
                 "silhouette_seconds", "n_samples", "n_init", "max_iter", "batch_size"}
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
