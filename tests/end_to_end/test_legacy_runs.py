"""Run folders written by an earlier dreamctl (tests/fixtures/legacy_results, commit 19cc753)
are listed, read and resumed by this one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

FIXTURE = Path(__file__).parents[1] / "fixtures" / "legacy_results"
KMEANS = ("kmeans", "sweep", "--k", "10,20", "--samples", "600", "--n-init", "1", "--silhouette", "300")
CLUSTERS = ("experiment", "clusters", "--k", "10", "--epochs", "3", "--n-init", "1")


def copy_fixture(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results, symlinks=True)
    return results


def test_runs_lists_the_old_runs(tmp_path, cli, capsys):
    copy_fixture(tmp_path)
    assert cli("runs", "--json") == 0
    runs = {run["job"]: run for run in json.loads(capsys.readouterr().out)}
    assert runs["kmeans"]["status"] == "done" and runs["kmeans"]["latest"] and runs["kmeans"]["rows"] == 2
    assert runs["clusters"]["status"] == "partial" and runs["clusters"]["shards_done"] == 1


def test_a_finished_old_run_is_reused_whole(tmp_path, cli, capsys, ray_local):
    results = copy_fixture(tmp_path)
    before = pd.read_parquet(results / "kmeans" / "a36b189319c7" / "sweep")
    assert cli(*KMEANS) == 0
    out = capsys.readouterr().out
    assert "results/kmeans/a36b189319c7" in out and "2 of 2 K reused" in out
    pd.testing.assert_frame_equal(pd.read_parquet(results / "kmeans" / "latest" / "sweep"), before)


def test_an_interrupted_old_run_resumes_to_the_result_of_an_uninterrupted_one(tmp_path, cli, capsys, ray_local):
    results = copy_fixture(tmp_path)
    reference_part = (results / "clusters" / "2604f0131c09" / "epochs" / "part-reference.parquet").read_bytes()
    assert cli(*CLUSTERS) == 0
    captured = capsys.readouterr()
    assert "results/clusters/2604f0131c09" in captured.out and "1 of 3 shards reused" in captured.out
    run = results / "clusters" / "2604f0131c09"
    assert (run / "_SUCCESS").exists() and (run / "epochs" / "part-reference.parquet").read_bytes() == reference_part
    assert cli(*CLUSTERS, "--out", "fresh") == 0  # the same command, uninterrupted, elsewhere
    columns = ["config", "epoch", "train_acc", "test_acc", "loss"]
    resumed = pd.read_parquet(run / "epochs").sort_values(["config", "epoch"])[columns].reset_index(drop=True)
    uninterrupted = pd.read_parquet(Path("fresh/clusters/2604f0131c09/epochs")).sort_values(["config", "epoch"])
    pd.testing.assert_frame_equal(resumed, uninterrupted[columns].reset_index(drop=True))
