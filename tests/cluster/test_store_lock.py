"""One writer per run folder: a second process is refused with the holder's name, a held
run is never deleted by --fresh, a dead holder's lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest

from cluster.store import RunStore
from core.errors import BadInput
from tests.support.run_files import part_path, run_dir

ROOT = Path(__file__).parents[2]
PART = SimpleNamespace(shard_id="a", n_rows=2)  # what the store reads of a jobs.base.Shard
HOLDER = """
import sys, time
import pyarrow as pa
from types import SimpleNamespace
from cluster.store import RunStore
store = RunStore(sys.argv[1], "job", "abc123", {})
store.open(fresh=False)
store.write_part("scores", SimpleNamespace(shard_id="a", n_rows=2), pa.table({"map": [1, 2]}))
print("held", flush=True)
time.sleep(600)
"""


def lock_owner(store: RunStore) -> dict:
    return json.loads((run_dir(store) / "_lock").read_text())


def test_a_held_run_is_refused_and_never_deleted_until_its_owner_is_gone(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        store = RunStore(tmp_path, "job", "abc123", {})
        with pytest.raises(BadInput) as refused:
            store.open(fresh=False)
        message = str(refused.value)
        assert "\n" not in message and f"pid {holder.pid} on {socket.gethostname()} since 20" in message
        with pytest.raises(BadInput, match=f"in use by pid {holder.pid}"):
            store.open(fresh=True)
        assert part_path(store, "scores", PART).is_file()  # --fresh deleted nothing
        assert lock_owner(store)["pid"] == holder.pid
        with pytest.raises(RuntimeError, match="open"):
            store.write_part("scores", PART, pa.table({"map": [3, 4]}))  # no lock, no writing
    finally:
        holder.kill()
        holder.wait()

    warnings = []
    store.warn = warnings.append
    assert store.open(fresh=True) == 0  # the holder is gone: its lock is stale, taken over
    assert len(warnings) == 1 and f"held by pid {holder.pid}" in warnings[0] and f"pid {holder.pid} is gone" in warnings[0]
    assert lock_owner(store)["pid"] == os.getpid() and not part_path(store, "scores", PART).exists()
    store.close()
    assert not (run_dir(store) / "_lock").exists()


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with RunStore(tmp_path, "job", "abc123", {}) as store:
            store.open(fresh=False)
            assert (run_dir(store) / "_lock").exists()
            1 / 0
    warnings = []
    with RunStore(tmp_path, "job", "abc123", {}, warn=warnings.append) as again:
        again.open(fresh=False)
    assert warnings == [] and not (run_dir(again) / "_lock").exists()


def test_a_second_store_in_the_same_process_is_refused(tmp_path):
    with RunStore(tmp_path, "job", "abc123", {}) as store:
        store.open(fresh=False)
        store.open(fresh=False)  # the holder reopening its own run is fine
        with pytest.raises(BadInput, match=f"in use by pid {os.getpid()}"):
            RunStore(tmp_path, "job", "abc123", {}).open(fresh=True)
        assert store.locked


def test_fresh_empties_the_run_but_keeps_its_lock(tmp_path):
    with RunStore(tmp_path, "job", "abc123", {}) as store:
        store.open(fresh=False)
        store.write_part("scores", PART, pa.table({"map": [1, 2]}))
        owner = lock_owner(store)
        assert store.open(fresh=True) == 0
        assert sorted(p.name for p in run_dir(store).iterdir()) == ["_lock"] and lock_owner(store) == owner


def plant_lock(tmp_path, **owner) -> RunStore:
    store = RunStore(tmp_path, "job", "abc123", {})
    run_dir(store).mkdir(parents=True)
    (run_dir(store) / "_lock").write_text(json.dumps({"since": "2024-01-01T00:00:00+0000", **owner}))
    return store


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    store = plant_lock(tmp_path, pid=1, host="elsewhere")
    with pytest.raises(BadInput, match="in use by pid 1 on elsewhere since 2024-01-01"):
        store.open(fresh=True)
    assert lock_owner(store)["host"] == "elsewhere"


@pytest.mark.parametrize("owner, reason", [
    ({"process_start": "1"}, "is now another process"),  # our pid, reused: another start time
    ({"boot_id": "an-earlier-boot"}, "machine restarted"),
])
def test_a_lock_whose_process_is_gone_is_taken_over(tmp_path, owner, reason):
    store = plant_lock(tmp_path, pid=os.getpid(), host=socket.gethostname(), **owner)
    warnings = []
    store.warn = warnings.append
    store.open(fresh=False)
    assert len(warnings) == 1 and reason in warnings[0] and lock_owner(store)["pid"] == os.getpid()
    store.close()


def test_an_unreadable_lock_is_respected_while_new_then_taken_over(tmp_path):
    store = RunStore(tmp_path, "job", "abc123", {})
    run_dir(store).mkdir(parents=True)
    (run_dir(store) / "_lock").write_text("")  # a writer between create and write, or one killed there
    with pytest.raises(BadInput, match="being locked by another process"):
        store.open(fresh=False)
    old = time.time() - 60
    os.utime(run_dir(store) / "_lock", (old, old))
    warnings = []
    store.warn = warnings.append
    store.open(fresh=False)
    assert len(warnings) == 1 and "unreadable" in warnings[0]
    store.close()
