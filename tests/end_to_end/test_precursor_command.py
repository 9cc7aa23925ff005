"""The precursor job end to end on a local Ray: schema, counts, top-N selection, pruned vs
exhaustive phase 1, resume, and an actor killed mid-run."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pandas as pd
import pytest

from cluster.store import read_run_metadata
from tests.support.precursor_runs import SMALL, read, run_dir, run_once

N_PATTERNS = 3**4  # 2x2 grid, 3 levels
TEST_EPOCHS, SHARD = 3, 20


@pytest.fixture(scope="module")
def reference(tmp_path_factory, trained_model_path, ray_local):
    """One uninterrupted small run, phase 1 pruned: (run dir, scores, oips)."""
    return run_once(tmp_path_factory.mktemp("reference"), SMALL, trained_model_path)


@pytest.fixture(scope="module")
def exhaustive(tmp_path_factory, trained_model_path, ray_local):
    """The same run with ``--exhaustive`` (every start runs all test epochs)."""
    return run_once(tmp_path_factory.mktemp("exhaustive"), [*SMALL, "--exhaustive"], trained_model_path)


def test_end_to_end_schema_counts_and_top_selection(reference, trained_model_path):
    path, scores, oips = reference
    assert (path / "_SUCCESS").exists() and (path / "_manifest.json").exists() and (path / "oips.png").exists()
    assert (path.parent / "latest").resolve() == path.resolve()
    assert list(scores.columns) == ["layer", "map", "pattern", "loss", "steps"]
    assert len(scores) == 2 * N_PATTERNS
    assert sorted(scores.groupby("map")["pattern"].nunique().to_dict().items()) == [(3, N_PATTERNS), (7, N_PATTERNS)]
    assert list(oips.columns) == ["layer", "map", "rank", "pattern", "score", "loss", "alive", "image"]
    assert len(oips) == 2 * 2
    assert all(len(image) == 784 and image.dtype == np.float32 for image in oips["image"])
    # phase-2 candidates are the best phase-1 scores among the starts that ran all test
    # epochs (ties: lower pattern index); a start cut early never takes their place
    for map_id, group in scores.groupby("map"):
        assert (group["steps"] == TEST_EPOCHS).sum() >= 2
        best = group[group["steps"] == TEST_EPOCHS].sort_values(["loss", "pattern"], ascending=[False, True]).head(2)
        chosen = oips[oips["map"] == map_id].sort_values("rank")
        assert chosen["pattern"].tolist() == best["pattern"].tolist()
        np.testing.assert_allclose(chosen["score"], best["loss"])
    assert (oips["alive"] == (oips["loss"] > 0)).all()
    metadata = read_run_metadata(next((path / "oips").glob("part-*.parquet")))
    assert metadata["params"]["grid"] == 2 and metadata["params"]["top"] == 2
    assert metadata["data"]["name"] == "mnist-5k" and len(metadata["model_hash"]) == 16


def test_pruned_phase_1_finds_the_exhaustive_top_candidates(reference, exhaustive):
    pruned_path, pruned_scores, pruned_oips = reference
    full_path, full_scores, full_oips = exhaustive
    assert pruned_path.name != full_path.name  # the schedule is a parameter: its own run id
    # --exhaustive: every start ran all test epochs
    assert (full_scores["steps"] == TEST_EPOCHS).all()
    # pruned: per map and shard, at most 8 moving starts passed step 1 and 4 reached the end
    # (frozen starts, loss 0 at step 0, never move: their loss is exact at every step)
    frozen = (pruned_scores["loss"] == 0) & (pruned_scores["steps"] == TEST_EPOCHS)
    moving = pruned_scores[~frozen].assign(shard=lambda frame: frame["pattern"] // SHARD)
    assert set(moving["steps"]) == {1, 2, 3}
    per_shard = moving.groupby(["map", "shard"])["steps"]
    assert per_shard.apply(lambda steps: (steps >= 2).sum()).max() <= 8
    assert per_shard.apply(lambda steps: (steps == 3).sum()).max() <= 4
    assert (pruned_scores["steps"] < TEST_EPOCHS).sum() > len(pruned_scores) / 2
    # a survivor's loss is the exhaustive run's loss of the same start
    both = pruned_scores.merge(full_scores, on=["map", "pattern"], suffixes=("", "_full"))
    survivors = both[both["steps"] == TEST_EPOCHS]
    np.testing.assert_allclose(survivors["loss"], survivors["loss_full"], rtol=1e-6)
    # phase 2 gets the same candidates and so finds the same OIPs
    columns = ["map", "rank", "pattern", "score", "loss", "alive"]
    pd.testing.assert_frame_equal(pruned_oips[columns], full_oips[columns], rtol=1e-6)
    np.testing.assert_allclose(np.stack(pruned_oips["image"]), np.stack(full_oips["image"]), atol=1e-5)
    params = [json.loads((path / "_manifest.json").read_text())["params"] for path in (pruned_path, full_path)]
    assert [(p["prune"], p["exhaustive"]) for p in params] == [([[1, 8], [2, 4]], False), ([], True)]


def test_interrupted_run_resumes_to_the_same_result(reference, trained_model_path, tmp_path, cli, ctrl_c_after, capsys):
    _, scores, oips = reference
    ctrl_c_after(3)
    assert cli(*SMALL, "--model", trained_model_path) == 3
    assert "rerun the same command to resume" in capsys.readouterr().err
    path = run_dir(tmp_path)
    saved = sorted((path / "scores").iterdir())
    assert len(saved) == 3 and all(p.name.startswith("part-") for p in saved)  # complete parts only
    assert not (path / "_SUCCESS").exists()

    ctrl_c_after(None)
    assert cli(*SMALL, "--model", trained_model_path) == 0
    assert "3 of 11 shards reused" in capsys.readouterr().out  # 10 scores shards + 1 oips shard
    pd.testing.assert_frame_equal(read(path, "scores"), scores)
    pd.testing.assert_frame_equal(read(path, "oips").drop(columns="image"), oips.drop(columns="image"))
    np.testing.assert_allclose(np.stack(read(path, "oips")["image"]), np.stack(oips["image"]), atol=1e-5)

    assert cli(*SMALL, "--model", trained_model_path, "--fresh") == 0
    assert "reused" not in capsys.readouterr().out


def test_killed_actor_loses_and_duplicates_nothing(reference, trained_model_path, tmp_path, cli, monkeypatch, capsys):
    import ray

    import cluster.scheduler

    _, scores, oips = reference
    pools = []
    original_init = cluster.scheduler.ActorPool.__init__

    def remember(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        pools.append(self)

    write_part = cluster.scheduler.RunStore.write_part
    killed = {}

    def kill_after_first_part(self, phase, shard, table):
        write_part(self, phase, shard, table)
        if not killed:
            pid = ray.get(pools[0].actors[0].pid.remote())
            os.kill(pid, signal.SIGKILL)
            killed["pid"] = pid

    monkeypatch.setattr(cluster.scheduler.ActorPool, "__init__", remember)
    monkeypatch.setattr(cluster.scheduler.RunStore, "write_part", kill_after_first_part)
    assert cli(*SMALL, "--model", trained_model_path) == 0
    assert killed
    path = run_dir(tmp_path)
    result = read(path, "scores")
    assert not result.duplicated(["map", "pattern"]).any()
    pd.testing.assert_frame_equal(result, scores)
    pd.testing.assert_frame_equal(read(path, "oips").drop(columns="image"), oips.drop(columns="image"))


def test_readme_pandas_example_runs_on_a_result(reference, monkeypatch, capsys):
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    path, _, oips = reference
    monkeypatch.chdir(path.parents[2])  # the folder that holds results/
    namespace: dict = {}
    exec(example, namespace)
    assert len(namespace["best"]) == oips["map"].nunique()
    assert namespace["images"].shape == (oips["map"].nunique(), 28, 28)
    assert "dead maps:" in capsys.readouterr().out


# the default phase 1 (adaptive pruning) on shards large enough for the rule to act. The
# sample is 10 % of a shard: with 16 (5 %), the fixture model trained on an AVX2-only AMD
# EPYC lost map 3's pattern 601 at step 1 (its gain nearly doubled at step 2, faster than
# any sampled start's), while the one trained on an AVX-512 Xeon kept it.
ADAPTIVE = ["precursor", "--maps", "3,7", "--grid", "2", "--levels", "0.1,0.3,0.5,0.7,0.9", "--test-epochs", "5",
            "--top", "4", "--full-epochs", "20", "--patterns-per-shard", "320", "--prune-sample", "32",
            "--prune-leaders", "16", "--actors", "2", "--chunk-size", "32"]


def test_adaptive_phase_1_finds_the_exhaustive_top_candidates_with_fewer_steps(tmp_path_factory, trained_model_path,
                                                                              ray_local):
    adaptive_path, adaptive_scores, adaptive_oips = run_once(tmp_path_factory.mktemp("adaptive"), ADAPTIVE,
                                                             trained_model_path)
    full_path, full_scores, full_oips = run_once(tmp_path_factory.mktemp("adaptive-exhaustive"),
                                                 [*ADAPTIVE, "--exhaustive"], trained_model_path)
    params = json.loads((adaptive_path / "_manifest.json").read_text())["params"]
    assert (params["prune"], params["prune_sample"], params["prune_leaders"], params["exhaustive"]) == (None, 32, 16, False)
    full_params = json.loads((full_path / "_manifest.json").read_text())["params"]
    assert (full_params["prune"], full_params["prune_sample"], full_params["exhaustive"]) == ([], None, True)
    # the same candidates for phase 2, hence the same OIPs
    columns = ["map", "rank", "pattern", "score", "loss", "alive"]
    pd.testing.assert_frame_equal(adaptive_oips[columns], full_oips[columns])
    # every start reports its loss after the steps it ran, as the exhaustive run had it then
    both = adaptive_scores.merge(full_scores, on=["map", "pattern"], suffixes=("", "_full"))
    finished = both[both["steps"] == 5]
    np.testing.assert_array_equal(finished["loss"], finished["loss_full"])
    # fewer image-steps (frozen starts, loss 0 all along, count none)
    moving = (full_scores["loss"] != 0) | (adaptive_scores["loss"] != 0)
    assert adaptive_scores.loc[moving, "steps"].sum() < 0.8 * full_scores.loc[moving, "steps"].sum()
    assert set(adaptive_scores["steps"]) - {5} <= {0, 1, 2, 3, 4}
