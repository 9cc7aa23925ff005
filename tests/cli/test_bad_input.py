"""The CLI: train, oip, and bad input (exit 2, one line, no traceback)."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
from tests.support.cli_output import one_error_line


@pytest.mark.parametrize(
    "args, message",
    [
        (["oip", "--maps", "128"], "map 128 is out of range: conv3 has maps 0-127"),
        (["oip", "--maps", "0-128"], "map 128 is out of range"),
        (["oip", "--layer", "conv9"], "--layer: 'conv9' is not one of conv1, conv2, conv3"),
        (["oip", "--maps", "a-b"], "cannot read 'a-b'"),
        (["precursor", "--maps", "x"], "--maps: cannot read 'x'"),
        (["precursor", "--grid", "9"], "patterns (limit"),
        (["precursor", "--levels", "0.2,zz"], "expected comma-separated numbers"),
        (["precursor", "--epochs-typo", "3"], "No such option"),
        (["oip", "--epochs", "ten"], "Invalid value for '--epochs'"),
        (["--data", "missing.npz", "train"], "data 'missing.npz': no such file or folder"),
        (["oip", "--model", "missing.keras"], "no model file at missing.keras"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, capsys, args, message):
    assert cli(*args) == 2
    assert message in one_error_line(capsys)


def test_corrupt_and_wrong_shape_models_exit_2(cli, capsys, tmp_path, trained_model_path):
    import keras

    (tmp_path / "garbage.keras").write_bytes(b"this is not a zip file")
    assert cli("oip", "--maps", "1", "--model", "garbage.keras") == 2
    assert "not a dreamctl model file" in one_error_line(capsys)

    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(trained_model_path.read_bytes()[:5000])
    assert cli("oip", "--maps", "1", "--model", truncated) == 2
    one_error_line(capsys)

    # a valid Keras file of the wrong shape, with dreamctl metadata copied in
    wrong = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, name="conv1")])
    wrong.save(tmp_path / "wrong.keras")
    with zipfile.ZipFile(trained_model_path) as source, zipfile.ZipFile(tmp_path / "wrong.keras", "a") as target:
        target.writestr("dreamctl.json", source.read("dreamctl.json"))
    assert cli("oip", "--maps", "1", "--model", "wrong.keras") == 2
    assert "model input is (32, 32, 3), expected (28, 28, 1)" in one_error_line(capsys)


def test_results_already_written_survive_bad_input(cli, capsys, tmp_path, trained_model_path, ray_local):
    args = ["oip", "--maps", "2,5", "--epochs", "10", "--restarts", "2", "--model", trained_model_path]
    assert cli(*args) == 0
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*") if p.is_file()}
    assert cli(*args[:-2], "--model", "missing.keras") == 2
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*") if p.is_file()} == before


def test_oip_writes_a_row_per_map_and_restart_and_a_grid(cli, capsys, tmp_path, trained_model_path, ray_local):
    assert cli("oip", "--maps", "0-2,9", "--epochs", "40", "--restarts", "3", "--model", trained_model_path,
               "--out", "oip-out") == 0
    out = capsys.readouterr().out
    assert "maps alive" in out
    folder = tmp_path / "oip-out" / "oip" / "latest"
    frame = pd.read_parquet(folder / "oips")
    assert len(frame) == 4 * 3
    assert sorted(frame["map"].unique()) == [0, 1, 2, 9]
    assert frame.groupby("map")["restart"].apply(sorted).tolist() == [[0, 1, 2]] * 4
    assert frame["loss"].dtype == np.float32 and frame["alive"].dtype == bool
    assert np.stack(frame["image"]).reshape(-1, 28, 28).dtype == np.float32
    assert (frame["alive"] == (frame["loss"] > 0)).all()
    assert (folder / "oips.png").stat().st_size > 10_000


def test_jobs_train_the_default_model_first(cli, capsys, tmp_path, monkeypatch, ray_local):
    import cluster.training
    from core.model import TrainConfig

    monkeypatch.setattr(cluster.training, "TrainConfig", lambda: TrainConfig(epochs=1))
    assert cli("oip", "--maps", "4", "--epochs", "2", "--restarts", "1") == 0
    captured = capsys.readouterr()
    assert "No model at models/cnn.keras: training one first" in captured.err
    assert (tmp_path / "models" / "cnn.keras").exists()


def test_train_saves_model_with_metadata(cli, capsys, tmp_path):
    from cluster.model_file import load_model

    assert cli("train", "--epochs", "1", "--model", "m/cnn.keras") == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out
    model, metadata = load_model(tmp_path / "m" / "cnn.keras")
    assert metadata["data"]["name"] == "mnist-5k" and metadata["data"]["n_train"] == 4000
    assert metadata["standardization"]["std"] > 0
    assert 0.5 < metadata["metrics"]["test_accuracy"] <= 1.0
