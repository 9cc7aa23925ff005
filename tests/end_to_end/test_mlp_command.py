"""``dreamctl mlp train`` and ``dreamctl experiment clusters``: results on disk, the
time-to-accuracy arithmetic on hand-made metrics, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.experiment import auto_targets, best_accuracy, time_to_accuracy
from jobs.clusters import compare

EPOCH_COLUMNS = ["config", "k", "n_inputs", "lambda2", "epoch", "learning_rate", "loss", "l2_share", "train_acc",
                 "test_acc", "seconds", "cpu_seconds", "elapsed_seconds", "elapsed_cpu_seconds", "prep_seconds",
                 "prep_cpu_seconds", "forward_cpu_s_0", "forward_cpu_s_1", "forward_cpu_s_2", "backward_cpu_s_0",
                 "backward_cpu_s_1", "backward_cpu_s_2"]


# ----- time to accuracy -----------------------------------------------------------------------
def test_time_to_accuracy_on_a_hand_made_run():
    #            epoch:  1    2       3    4     5    6
    accuracy = [0.50, math.nan, 0.80, 0.75, 0.90, 0.95]  # epoch 2 not evaluated
    cpu = [1.0, 2.0, 1.0, 1.0, 1.0, 1.0]  # cumulative: 1 3 4 5 6 7
    wall = [2.0] * 6
    low, mid, high, never = time_to_accuracy(accuracy, cpu, wall, [0.8, 0.9, 0.95, 0.99])
    assert (low.epoch_first, low.cpu_seconds_first, low.wall_seconds_first) == (3, 4.0, 6.0)
    assert (low.epoch_stable, low.cpu_seconds_stable) == (5, 6.0)  # it dipped to 0.75 at epoch 4
    assert (mid.epoch_first, mid.epoch_stable, mid.cpu_seconds_first) == (5, 5, 6.0)
    assert (high.epoch_first, high.epoch_stable, high.cpu_seconds_first) == (6, 6, 7.0)
    assert never.epoch_first is None and never.epoch_stable is None and math.isnan(never.cpu_seconds_first)
    # reached early but lost at the end: a first epoch, no stable one
    (lost,) = time_to_accuracy([0.9, 0.7], [1, 1], [1, 1], [0.85])
    assert lost.epoch_first == 1 and lost.epoch_stable is None
    assert best_accuracy(accuracy) == (0.95, 6)
    assert auto_targets(accuracy) == (0.945, 0.95)
    assert auto_targets(accuracy, [0.96, 0.97]) == (0.945, 0.95, 0.965, 0.97)  # + the best other run's level


def hand_made_epochs() -> pd.DataFrame:
    """Reference: 1 CPU s per epoch; K = 70: 0.25 CPU s per epoch, better and sooner."""
    rows = []
    for epoch, (ref, clustered) in enumerate(zip([0.90, 0.95, 0.96, 0.97], [0.92, 0.97, 0.975, 0.98]), start=1):
        rows.append({"config": "reference", "k": 0, "n_inputs": 784, "lambda2": 0.2, "epoch": epoch, "train_acc": 1.0,
                     "test_acc": ref, "seconds": 2.0, "cpu_seconds": 1.0, "prep_cpu_seconds": 0.0})
        rows.append({"config": "k0070", "k": 70, "n_inputs": 70, "lambda2": 0.2 * 70 / 784, "epoch": epoch,
                     "train_acc": 1.0, "test_acc": clustered, "seconds": 0.5, "cpu_seconds": 0.25, "prep_cpu_seconds": 0.5})
    return pd.DataFrame(rows)


def test_comparison_relative_to_the_reference():
    table = compare(hand_made_epochs(), (0.95, 0.97, 0.98)).to_pandas().set_index(["config", "target"])
    assert len(table) == 6
    k70 = table.loc["k0070"]
    # 0.95: reference at epoch 2 (2 CPU s), K = 70 at epoch 2 (0.5 CPU s) → 4×
    assert k70.loc[0.95, "epoch_first"] == 2 and k70.loc[0.95, "speedup_cpu_first"] == pytest.approx(4.0)
    assert k70.loc[0.95, "speedup_cpu_first_with_prep"] == pytest.approx(2.0 / 1.0)
    # 0.97: reference at epoch 4 (4 CPU s), K = 70 at epoch 2 (0.5 CPU s) → 8×
    assert k70.loc[0.97, "speedup_cpu_first"] == pytest.approx(8.0)
    # 0.98: the reference never gets there; the seed's ratio uses its whole run (4 CPU s / 1 CPU s)
    assert math.isnan(table.loc[("reference", 0.98), "epoch_first"])
    assert math.isnan(k70.loc[0.98, "speedup_cpu_first"])
    assert k70.loc[0.98, "speedup_cpu_vs_reference_run"] == pytest.approx(4.0)
    assert k70.loc[0.98, "best_test_acc"] == 0.98 and k70.loc[0.98, "best_vs_reference"] == pytest.approx(0.01)
    assert (table.loc["reference", "speedup_cpu_first"].dropna() == 1.0).all()


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


# ----- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (("mlp", "train", "--clusters", "1"), "at least 2 clusters"),
        (("mlp", "train", "--clusters", "5000"), "smaller than the number of images"),
        (("mlp", "train", "--clusters", "4000", "--fit-on", "train"), "smaller than the number of images"),
        (("mlp", "train", "--hidden", "70,x"), "--hidden"),
        (("mlp", "train", "--dtype", "float16"), "--dtype"),
        (("mlp", "train", "--fit-on", "test"), "--fit-on"),
        (("mlp", "train", "--learning-rate", "0"), "--learning-rate"),
        (("mlp", "train", "--epochs", "0"), "--epochs"),
        (("experiment", "clusters", "--k", "1,40"), "at least 2 clusters"),
        (("experiment", "clusters", "--k", "5000"), "smaller than the number of images"),
        (("experiment", "clusters", "--k", ""), "empty"),
        (("experiment", "clusters", "--k", "90:40:10"), "empty"),
        (("experiment", "clusters", "--k", "forty"), "cannot read"),
        (("experiment", "clusters", "--targets", "0.9,1.5"), "--targets"),
        (("experiment", "clusters", "--targets", "high"), "--targets"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, capsys, args, message):
    assert cli(*args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], captured.err
    assert captured.out == ""
