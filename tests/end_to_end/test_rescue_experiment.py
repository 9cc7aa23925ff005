"""``dreamctl experiment rescue`` (issue 13) end to end on Ray: two models, every method on two
maps, the comparison and its plot; every step a normal run listed by ``dreamctl runs``; the
rerun reuses every run (the plan and the comparison: tests/jobs/test_rescue_job.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from jobs.rescue import PRECURSOR, RANDOM, WARMUPS


def test_end_to_end_on_ray_and_resume(cli, ray_local, tmp_path, capsys):
    args = ["experiment", "rescue", "--seeds", "0,1", "--train-epochs", "1", "--maps", "3,7", "--restarts", "2",
            "--epochs", "12", "--warmup", "4", "--grid", "2", "--test-epochs", "3", "--top", "2",
            "--maps-per-shard", "1", "--precursor-maps", "all"]
    assert cli(*args) == 0
    out = capsys.readouterr().out
    assert "woken" in out and "runs: 11 (0 reused whole)" in out  # 2 × (train, 3 oip, precursor) + the comparison
    run = tmp_path / "results" / "rescue" / "latest"
    assert (run / "_SUCCESS").exists() and (run / "rescue.png").stat().st_size > 1000
    comparison = pd.read_parquet(run / "comparison")
    assert len(comparison) == 2 * 4 * 2  # models × methods × maps
    assert set(comparison["method"]) == {RANDOM, *WARMUPS, PRECURSOR}
    assert (comparison.groupby("method")["cpu_seconds"].sum() > 0).all()
    best = comparison.groupby(["seed", "map"])["ratio_to_best"].max().dropna()
    np.testing.assert_allclose(best, 1.0)
    assert sorted(pd.read_parquet(run / "models")["seed"]) == [0, 1]
    # every step is a normal run, listed by dreamctl runs
    assert cli("runs", "--json") == 0
    jobs = sorted(entry["job"] for entry in json.loads(capsys.readouterr().out))
    assert jobs == ["oip"] * 6 + ["precursor"] * 2 + ["rescue"] + ["train"] * 2
    assert cli(*args) == 0  # every run reused
    assert "runs: 11 (11 reused whole)" in capsys.readouterr().out
