"""Faults end to end (issue 9): a real ``dreamctl`` process stopped by SIGTERM or killed
with SIGKILL leaves only complete parts and resumes to the uninterrupted result; non-finite
results fail the job (exit 1) and are never marked done. Bad options and resources the
cluster cannot grant (exit 2, one line, before anything is trained or written):
tests/cli/test_bad_input.py.

The real processes start their own local Ray (127.0.0.1, as a user's would); only their
own pids are signalled, and any Ray process they leave is killed by pid.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cluster.files import is_temporary
from tests.support.precursor_runs import read, run_once
from tests.support.precursor_runs import run_dir as the_run_dir
from tests.support.processes import Dreamctl

# 8 maps × 27 phase-1 shards of 3 patterns (~20 ms each on one actor) + 1 phase-2 shard: the
# run computes for a few seconds after its first part, time enough to stop it half-way
RUN = ["precursor", "--maps", "0-7", "--grid", "2", "--test-epochs", "3", "--exhaustive", "--patterns-per-shard", "3",
       "--top", "2", "--full-epochs", "20", "--actors", "1", "--chunk-size", "32"]
N_SCORES_SHARDS, N_SHARDS = 8 * 27, 8 * 27 + 1


def assert_same_result(run_dir: Path, reference: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    scores, oips = reference
    pd.testing.assert_frame_equal(read(run_dir, "scores"), scores)
    pd.testing.assert_frame_equal(read(run_dir, "oips").drop(columns="image"), oips.drop(columns="image"))
    np.testing.assert_allclose(np.stack(read(run_dir, "oips")["image"]), np.stack(oips["image"]), atol=1e-5)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, trained_model_path, ray_local) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, oips) of one uninterrupted RUN, in this process."""
    _, scores, oips = run_once(tmp_path_factory.mktemp("uninterrupted"), RUN, trained_model_path)
    return scores, oips


def n_committed(folder: Path) -> int:
    """Phase-1 parts committed under ``folder``/results (a record being written has a
    temporary name that also ends in .json)."""
    return sum(not is_temporary(path.name) for path in folder.glob("results/precursor/*/_commits/scores/*.json"))


def committed_parts(run_dir: Path) -> dict[str, Path]:
    """The phase-1 parts whose commit record vouches for them (shard id, bytes, sha256,
    rows), by shard id; asserts that every part on disk is complete Parquet and that
    nothing but parts and records is there."""
    parts = sorted((run_dir / "scores").iterdir())
    assert parts and all(re.fullmatch(r"part-map\d{4}-\d{9}\.parquet", p.name) for p in parts), parts
    for part in parts:
        assert pq.read_table(part).num_rows == 3  # complete: a torn part would not read
    committed = {}
    for record_path in (run_dir / "_commits" / "scores").iterdir():
        if is_temporary(record_path.name):
            continue  # a record cut short by the signal: its part is not committed
        record = json.loads(record_path.read_text())
        part = run_dir / "scores" / record["part"]
        assert record_path.stem == record["shard_id"] and part.is_file()
        data = part.read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["sha256"] and record["rows"] == 3
        committed[record["shard_id"]] = part
    # a part whose record was not yet written when the signal came is complete but not
    # committed: the rerun recomputes it (at most the one being written)
    assert len(parts) - len(committed) <= 1
    return committed


def reused_shards(stdout: str) -> int:
    found = re.search(rf"\((\d+) of {N_SHARDS} shards reused\)", stdout)
    return int(found.group(1)) if found else 0


# ----- a real process: SIGTERM, kill -9 -----------------------------------------------------------
def test_sigterm_ends_a_real_run_with_exit_3_complete_parts_and_it_resumes(reference, trained_model_path, tmp_path,
                                                                           cli, capsys):
    dreamctl = Dreamctl(tmp_path, *RUN, "--model", str(trained_model_path))
    try:
        dreamctl.wait_until(lambda: n_committed(tmp_path) >= 3, "3 committed parts")
        dreamctl.process.send_signal(signal.SIGTERM)
        exit_code = dreamctl.process.wait(timeout=60)  # SIGTERM always ends dreamctl
        left = dreamctl.left_behind(grace_s=5)  # its local Ray stopped: actors, raylet, agents
    finally:
        dreamctl.end()
    stderr = dreamctl.stderr
    assert exit_code == 3, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "interrupted: finished shards are saved; rerun the same command to resume"
    assert "Traceback" not in stderr
    assert not left, f"processes of the run still running after it ended: {left}"
    run_dir = the_run_dir(tmp_path)
    committed = committed_parts(run_dir)
    assert 3 <= len(committed) < N_SCORES_SHARDS  # stopped half-way
    assert not (run_dir / "_SUCCESS").exists() and not os.path.lexists(run_dir.parent / "latest")
    assert not (run_dir / "_lock").exists()  # released on the way out
    assert not [name for _, _, names in os.walk(run_dir) for name in names if is_temporary(name)]

    assert cli(*RUN, "--model", trained_model_path) == 0
    assert reused_shards(capsys.readouterr().out) == len(committed)
    assert_same_result(run_dir, reference)
    assert (run_dir / "_SUCCESS").exists() and (run_dir.parent / "latest").resolve() == run_dir.resolve()


def test_a_killed_driver_leaves_a_stale_lock_that_the_rerun_takes_over(reference, trained_model_path, tmp_path,
                                                                        cli, capsys):
    dreamctl = Dreamctl(tmp_path, *RUN, "--model", str(trained_model_path))
    try:
        dreamctl.wait_until(lambda: n_committed(tmp_path) >= 3, "3 committed parts")
        dreamctl.process.send_signal(signal.SIGKILL)
        assert dreamctl.process.wait(timeout=60) == -signal.SIGKILL
    finally:
        dreamctl.end(grace_s=0)  # the Ray agents it leaves would stop by themselves a minute later
    run_dir = the_run_dir(tmp_path)
    lock = json.loads((run_dir / "_lock").read_text())  # nobody released it
    assert (lock["pid"], lock["host"]) == (dreamctl.pid, socket.gethostname())
    committed = committed_parts(run_dir)
    assert 3 <= len(committed) < N_SCORES_SHARDS and not (run_dir / "_SUCCESS").exists()

    assert cli(*RUN, "--model", trained_model_path) == 0
    captured = capsys.readouterr()
    warning = f"took over the stale lock of run folder {run_dir.relative_to(tmp_path)} held by pid {dreamctl.pid}"
    assert warning in " ".join(captured.err.split())  # the console may wrap the line
    assert reused_shards(captured.out) == len(committed)
    assert_same_result(run_dir, reference)
    assert not (run_dir / "_lock").exists() and (run_dir / "_SUCCESS").exists()
    assert not [name for _, _, names in os.walk(run_dir) for name in names if is_temporary(name)]


# ----- non-finite results ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def overflowing_model(tmp_path_factory, trained_model_path) -> Path:
    """The session's CNN with its conv3 kernel scaled by 1e38: conv3's activations overflow
    float32 to inf (and inf − inf to nan)."""
    from cluster.model_file import load_model, save_model
    from core.model import Standardization

    model, metadata = load_model(trained_model_path)
    kernel, bias = model.get_layer("conv3").get_weights()
    model.get_layer("conv3").set_weights([kernel * np.float32(1e38), bias])
    path = tmp_path_factory.mktemp("overflowing-model") / "cnn.keras"
    save_model(model, path, Standardization(**metadata["standardization"]), metadata["data"], metadata["metrics"])
    return path


def failure_line(stderr: str) -> str:
    """The one 'job failed: …' line (progress lines may precede it), no traceback."""
    assert "Traceback" not in stderr and "interrupted" not in stderr
    failed = [line for line in stderr.splitlines() if line.startswith("job failed:")]
    assert len(failed) == 1, stderr
    return failed[0]


def test_non_finite_oip_results_fail_the_job_and_are_never_marked_done(overflowing_model, trained_model_path, ray_local,
                                                                        tmp_path, cli, capsys):
    small = ["oip", "--maps", "2", "--epochs", "3", "--restarts", "2", "--actors", "1", "--chunk-size", "32"]
    assert cli(*small, "--model", trained_model_path) == 0
    latest = tmp_path / "results" / "oip" / "latest"
    good_run = latest.resolve()
    capsys.readouterr()

    for _ in range(2):  # a rerun fails the same way: nothing non-finite was kept to reuse
        assert cli(*small, "--model", overflowing_model) == 1
        line = failure_line(capsys.readouterr().err)
        assert "of oips failed" in line and "non-finite values (nan or inf) in loss" in line
    (bad_run,) = [p for p in latest.parent.iterdir() if not p.is_symlink() and p.resolve() != good_run]
    assert not (bad_run / "_SUCCESS").exists() and not (bad_run / "_lock").exists()
    assert not list(bad_run.glob("oips/*")) and not list(bad_run.glob("_commits/oips/*"))  # no part stored
    assert json.loads((bad_run / "_manifest.json").read_text())["status"] == "running"
    assert latest.resolve() == good_run  # latest did not move


@pytest.mark.filterwarnings("error::RuntimeWarning")  # the overflow is reported once, not as numpy warnings
def test_non_finite_loss_of_a_job_run_here_fails_it(tmp_path, cli, capsys):
    # the numpy MLP runs in this process (no Ray): a learning rate of 1e30 overflows its loss
    assert cli("mlp", "train", "--epochs", "2", "--learning-rate", "1e30", "--out", "res") == 1
    line = failure_line(capsys.readouterr().err)
    assert line == "job failed: shard reference of epochs: non-finite values (nan or inf) in loss"
    (run_dir,) = (tmp_path / "res" / "mlp").iterdir()
    assert not (run_dir / "_SUCCESS").exists() and not list(run_dir.glob("epochs/*"))
    assert not os.path.lexists(tmp_path / "res" / "mlp" / "latest")
