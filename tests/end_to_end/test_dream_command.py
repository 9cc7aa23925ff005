"""``dreamctl dream`` through Ray: the maps job writes its outputs and resumes; a weighted,
tiled dream with octaves (the math of both: tests/core/test_dream.py)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest


def test_dream_maps_job_writes_outputs_and_resumes(cli, capsys, ray_local, trained_model_path, tmp_path):
    from PIL import Image

    args = ["dream", "--maps", "3,56", "--size", "112", "--iterations", "2", "--epochs", "5",
            "--model", trained_model_path, "--out", tmp_path / "out"]
    assert cli(*args) == 0
    first = capsys.readouterr().out
    run_dir = tmp_path / "out" / "dream" / "latest"
    summary = pq.read_table(run_dir / "summary.parquet").to_pandas()
    assert summary["map"].tolist() == [3, 56]
    assert all(len(losses) == 2 for losses in summary["losses"])
    assert (summary["height"] == 112).all() and (summary["image"] == "flower.jpg").all()
    for column in ("dream_png", "panels_png", "contact_sheet_png"):
        assert all(Image.open(path).size[0] > 0 for path in summary[column])
    assert Image.open(summary["dream_png"][0]).size == (112, 112)
    parts = sorted((run_dir / "dreams").glob("part-*.parquet"))
    assert len(parts) == 2  # two shards: both actors get work
    dreams = pq.read_table(run_dir / "dreams").to_pandas()
    assert len(dreams) == 2 and len(dreams["dream"][0]) == 112 * 112
    stamps = [part.stat().st_mtime_ns for part in parts]

    assert cli(*args) == 0  # same parameters: everything is reused
    assert "2 of 2 shards reused" in capsys.readouterr().out
    assert [part.stat().st_mtime_ns for part in parts] == stamps
    assert "results:" in first


@pytest.mark.slow  # ~16 s: a second actor pool; the fast tests cover its math in-process
def test_weighted_tiled_dream_job(cli, capsys, ray_local, trained_model_path, tmp_path):
    args = ["dream", "--objective", "conv3:56=1,conv2=0.5", "--size", "112", "--iterations", "2", "--epochs", "5",
            "--octaves", "2", "--tile-grid", "2", "--model", trained_model_path, "--out", tmp_path / "out"]
    assert cli(*args) == 0
    summary = pq.read_table(tmp_path / "out" / "dream" / "latest" / "summary.parquet").to_pandas()
    assert summary["objective"].tolist() == ["conv3:56=1,conv2=0.5"] and summary["map"].tolist() == [-1]
    assert len(summary["losses"][0]) == 4  # 2 octaves × 2 iterations
    assert summary["contact_sheet_png"].isna().all() and summary["panels_png"].notna().all()
