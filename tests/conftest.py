"""Shared fixtures: a small trained CNN and one local Ray (2 CPUs) for the whole session, dreamctl
in-process, an empty HOME."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def dataset():
    from core.data import load_dataset

    return load_dataset("mnist-5k")


@pytest.fixture(scope="session")
def trained_model_path(tmp_path_factory, dataset):
    """A CNN trained 4 epochs on the bundled digits (~93 % test accuracy), saved as .keras."""
    from cluster.model_file import save_model
    from core.model import TrainConfig, train_cnn

    model, standardization, metrics = train_cnn(dataset, TrainConfig(epochs=4))
    path = tmp_path_factory.mktemp("model") / "cnn.keras"
    save_model(model, path, standardization, dataset.identity(), metrics)
    return path


@pytest.fixture(scope="session")
def trained_model(trained_model_path):
    """(keras model, metadata) of :func:`trained_model_path`."""
    from cluster.model_file import load_model

    return load_model(trained_model_path)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray with 2 CPUs and no dashboard for the session, started as dreamctl starts
    its own (cluster.runtime.ray_session: every listener on 127.0.0.1, token authentication,
    a private temporary folder); stopped, its processes and folder gone, after the session."""
    import ray

    from cluster.runtime import ray_session

    with ray_session("local", num_cpus=2, dashboard=False):
        yield ray


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """Run ``dreamctl ARGS`` in-process from a temp working dir and return its exit code
    (read the output with pytest's ``capsys``)."""
    from cli.app import main

    monkeypatch.chdir(tmp_path)
    return lambda *args: main([str(arg) for arg in args])


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty HOME (no Keras cache), set after core.data was imported, no KERAS_HOME."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    return folder


@pytest.fixture
def ctrl_c_after(monkeypatch):
    """``ctrl_c_after(n)``: jobs run in this process get Ctrl-C (KeyboardInterrupt) right after
    the n-th shard they report done; ``ctrl_c_after(None)`` takes that back (for the rerun)."""
    import cluster.progress

    advance = cluster.progress.JobProgress.advance

    def arm(n: int | None) -> None:
        if n is None:
            monkeypatch.setattr(cluster.progress.JobProgress, "advance", advance)
            return
        calls = {"n": 0}

        def advance_then_interrupt(self, items):
            advance(self, items)
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt

        monkeypatch.setattr(cluster.progress.JobProgress, "advance", advance_then_interrupt)

    return arm
