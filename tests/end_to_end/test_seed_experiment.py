"""``dreamctl experiment seed`` (issue 21) on a small slice: a few hundred images, four maps, a
few epochs; end to end on Ray, interrupted and resumed."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from jobs.seed import ARTICLES

SMALL = ["experiment", "seed", "--train-epochs", "1", "--maps", "0-3", "--restarts", "2", "--oip-epochs", "20",
         "--grid", "2", "--test-epochs", "3", "--top", "2", "--full-epochs", "20", "--mlp-epochs", "3",
         "--clusters", "10", "--target", "0.3", "--n-init", "1", "--k", "10,20,30", "--silhouette", "60"]


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory, dataset):
    """400 training and 100 test images of the bundled digits, as a Keras-style mnist.npz."""
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(path, x_train=dataset.x_train[:400], y_train=dataset.y_train[:400], x_test=dataset.x_test[:100],
             y_test=dataset.y_test[:100])
    return path


def test_end_to_end_interrupted_and_resumed(small_npz, ray_local, cli, capsys, ctrl_c_after, tmp_path):
    ctrl_c_after(2)  # the training run's shard, then the oip run's first
    assert cli("--data", small_npz, *SMALL) == 3
    capsys.readouterr()
    ctrl_c_after(None)
    assert cli("--data", small_npz, *SMALL) == 0
    out = capsys.readouterr().out
    assert "the articles' numbers on small (400 train / 100 test images)" in out
    fidelity = pd.read_parquet(tmp_path / "results" / "seed" / "latest" / "fidelity").set_index("name")
    n_runs = 6 if "precursor_woken" in fidelity.index else 5  # no precursor run when no map stayed dead
    reused_whole = int(re.search(rf"runs: {n_runs} \((\d+) reused whole\)", out).group(1))
    assert 1 <= reused_whole < n_runs  # the training run reused, the interrupted oip run resumed
    assert set(fidelity.index) <= set(ARTICLES) and {"cnn_test_accuracy", "dead_maps", "mlp_reference_test_accuracy",
                                                      "kmeans_seconds_per_k", "silhouette_best"} <= set(fidelity.index)
    assert 0.1 < fidelity.loc["cnn_test_accuracy", "value"] <= 1.0
    assert fidelity.loc["silhouette_best", "value"] in (10, 20, 30)
    assert fidelity.loc["dead_maps", "text"].endswith("of 4")
    for name, row in fidelity.iterrows():  # each number names the run that measured it, and that run is there
        job, run_id = row["run"].split("/")
        assert (tmp_path / "results" / job / run_id / "_SUCCESS").exists(), name
        assert row["articles"] == ARTICLES[name][1]
    assert cli("runs", "--json") == 0
    jobs = sorted(run["job"] for run in json.loads(capsys.readouterr().out))
    assert jobs[:2] == ["clusters", "kmeans"] and "seed" in jobs and "train" in jobs and "oip" in jobs
    assert cli("--data", small_npz, *SMALL) == 0  # everything reused
    assert f"runs: {n_runs} ({n_runs} reused whole)" in capsys.readouterr().out
