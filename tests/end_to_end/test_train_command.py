"""``dreamctl train`` saves a model with its metadata; a job with no model trains the default
one first."""

from __future__ import annotations


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
