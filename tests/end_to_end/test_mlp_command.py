"""``dreamctl mlp train`` and ``dreamctl experiment clusters``: epoch metrics, curves and the
comparison on disk, resumed (the arithmetic on hand-made metrics: tests/core/test_experiment.py,
tests/jobs/test_clusters_job.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

EPOCH_COLUMNS = ["config", "k", "n_inputs", "lambda2", "epoch", "learning_rate", "loss", "l2_share", "train_acc",
                 "test_acc", "seconds", "cpu_seconds", "elapsed_seconds", "elapsed_cpu_seconds", "prep_seconds",
                 "prep_cpu_seconds", "forward_cpu_s_0", "forward_cpu_s_1", "forward_cpu_s_2", "backward_cpu_s_0",
                 "backward_cpu_s_1", "backward_cpu_s_2"]


# ----- mlp train ------------------------------------------------------------------------------------
def run_dir_of(tmp_path, job: str):
    (run_dir,) = [p for p in (tmp_path / "res" / job).iterdir() if p.name != "latest"]
    return run_dir


def test_mlp_train_writes_epoch_metrics_curves_and_resumes(cli, capsys, tmp_path):
    assert cli("mlp", "train", "--epochs", "3", "--out", "res") == 0
    run_dir = run_dir_of(tmp_path, "mlp")
    frame = pd.read_parquet(run_dir / "epochs")
    assert list(frame.columns) == EPOCH_COLUMNS
    assert list(frame["epoch"]) == [1, 2, 3] and (frame["n_inputs"] == 784).all() and (frame["lambda2"] == 0.2).all()
    assert frame["train_acc"].between(0, 1).all() and frame["test_acc"].between(0, 1).all()
    assert frame["test_acc"].iloc[-1] > max(0.3, frame["test_acc"].iloc[0])  # it learns (10 classes: chance 0.1)
    assert (frame["loss"] > 0).all() and frame["l2_share"].between(0, 1).all()
    assert (frame[[c for c in EPOCH_COLUMNS if "_cpu_s_" in c]] > 0).all().all()
    np.testing.assert_allclose(frame["elapsed_cpu_seconds"], frame["cpu_seconds"].cumsum())
    for name in ("curves.png", "_SUCCESS", "_manifest.json"):
        assert (run_dir / name).is_file()
    manifest = json.loads((run_dir / "_manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["data"]["name"] == "mnist-5k"
    assert manifest["params"]["mlp"]["epochs"] == 3 and manifest["params"]["clusters"] is None
    assert b"checksum" in pq.read_schema(run_dir / "epochs" / "part-reference.parquet").metadata[b"dreamctl"]
    printed = capsys.readouterr()
    assert "best test" in printed.out and "mlp: epochs" in printed.err  # the table, the progress (plain lines here)

    assert cli("mlp", "train", "--epochs", "3", "--out", "res") == 0  # same options: nothing retrained
    assert "reused" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "epochs"), frame)


def test_mlp_train_on_cluster_features_scales_lambda2(cli, capsys, tmp_path):
    assert cli("mlp", "train", "--clusters", "20", "--epochs", "2", "--eval-every", "2", "--out", "res") == 0
    frame = pd.read_parquet(run_dir_of(tmp_path, "mlp") / "epochs")
    assert (frame["n_inputs"] == 20).all() and (frame["k"] == 20).all()
    assert frame["lambda2"].iloc[0] == pytest.approx(0.2 * 20 / 784)
    assert (frame["prep_seconds"] > 0).all()
    assert math.isnan(frame["test_acc"].iloc[0]) and not math.isnan(frame["test_acc"].iloc[1])
    assert "distances to 20 cluster centroids" in capsys.readouterr().out
    assert cli("mlp", "train", "--clusters", "20", "--epochs", "1", "--lambda2", "0.05", "--out", "given") == 0
    given = pd.read_parquet(next((tmp_path / "given" / "mlp").glob("[0-9a-f]*")) / "epochs")
    assert given["lambda2"].iloc[0] == 0.05  # a given Lambda2 is used as is


# ----- the experiment -----------------------------------------------------------------------------
def test_experiment_trains_reference_and_clusters_and_compares(ray_local, cli, capsys, tmp_path):
    assert cli("experiment", "clusters", "--k", "10,20", "--epochs", "4", "--out", "res") == 0
    run_dir = run_dir_of(tmp_path, "clusters")
    epochs = pd.read_parquet(run_dir / "epochs")
    assert sorted(epochs["config"].unique()) == ["k0010", "k0020", "reference"]
    assert len(epochs) == 3 * 4 and list(epochs.columns) == EPOCH_COLUMNS
    lambdas = epochs.groupby("config")["lambda2"].first()
    assert lambdas["reference"] == 0.2 and lambdas["k0010"] == pytest.approx(0.2 * 10 / 784)
    comparison = pd.read_parquet(run_dir / "comparison")
    targets = sorted(comparison["target"].unique())
    assert 2 <= len(targets) <= 4 and len(comparison) == 3 * len(targets)  # configurations × auto targets
    best = epochs.groupby("config")["test_acc"].max()
    assert {math.floor(best["reference"] * 1e4 + 1e-6) / 1e4, math.floor(best.drop("reference").max() * 1e4 + 1e-6) / 1e4} <= set(targets)
    reference = comparison[comparison["config"] == "reference"].set_index("target")
    assert reference.loc[reference.index <= best["reference"], "epoch_first"].notna().all()
    assert (reference["speedup_cpu_first"].dropna() == 1.0).all()
    assert (run_dir / "comparison.png").is_file() and (run_dir / "_SUCCESS").is_file()
    assert "time to reach a test accuracy" in capsys.readouterr().out
