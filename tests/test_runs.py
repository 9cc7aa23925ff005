"""``dreamctl runs``: done, partial and running runs as the store leaves them on disk."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pyarrow as pa

from cluster.store import LOCK, RunStore
from jobs.base import Shard

SCHEMA = pa.schema([("map", pa.int32()), ("loss", pa.float32())])
PARAMS = {"layer": "conv3", "maps": [0, 1, 2, 3, 9], "epochs": 20, "restarts": 2, "seed": 0}


def write_run(results, run_id: str, parts_written: int, n_shards: int, finish: bool) -> RunStore:
    """An ``oip`` run with ``n_shards`` shards of 3 rows, ``parts_written`` of them written;
    finished (``_SUCCESS``) when ``finish``. Returns the store, its lock still held."""
    store = RunStore(results, "oip", run_id, {"params": PARAMS, "model_hash": "m" * 16, "data": {"name": "mnist-5k"}})
    store.open(False)
    shards = [Shard(f"maps-{i:04d}", i, 3, 3) for i in range(n_shards)]
    store.write_manifest({"oips": shards}, "running")
    for shard in shards[:parts_written]:
        store.write_part("oips", shard, pa.table({"map": [shard.payload] * 3, "loss": [0.5] * 3}, schema=SCHEMA))
    if finish:
        store.write_manifest({"oips": shards}, "done")
        store.mark_success()
    return store


def test_runs_lists_done_partial_and_running_runs(tmp_path, cli, capsys):
    results = tmp_path / "results"
    write_run(results, "aaaa00000001", 2, 2, finish=True).close()
    write_run(results, "bbbb00000002", 1, 3, finish=False).close()  # stopped: lock released
    running = write_run(results, "cccc00000003", 1, 2, finish=False)  # this process holds the lock
    killed = write_run(results, "dddd00000004", 2, 4, finish=False)
    killed.close()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {"pid": int(gone.stdout), "host": socket.gethostname(), "since": "2026-01-01T00:00:00+0000",
              "process_start": None, "boot_id": None, "token": "0" * 16}
    (results / "oip" / "dddd00000004" / LOCK).write_text(json.dumps(record))  # its writer was killed
    try:
        assert cli("runs", "--out", results, "--json") == 0
        found = {run["run_id"]: run for run in json.loads(capsys.readouterr().out)}
        assert cli("runs", "--out", results) == 0  # the table: one row per run
        table = capsys.readouterr().out
    finally:
        running.close()
    assert {run_id: run["status"] for run_id, run in found.items()} == {
        "aaaa00000001": "done", "bbbb00000002": "partial", "cccc00000003": "running", "dddd00000004": "partial"}
    assert (found["aaaa00000001"]["rows"], found["aaaa00000001"]["shards_done"], found["aaaa00000001"]["shards"]) == (6, 2, 2)
    assert (found["bbbb00000002"]["rows"], found["bbbb00000002"]["shards_done"], found["bbbb00000002"]["shards"]) == (3, 1, 3)
    assert found["aaaa00000001"]["latest"] and not found["bbbb00000002"]["latest"]
    assert found["aaaa00000001"]["key_params"] == "layer=conv3 maps=0-3,9 epochs=20 restarts=2 seed=0"
    assert found["aaaa00000001"]["job"] == "oip" and found["aaaa00000001"]["model_hash"] == "m" * 16
    assert all(status in table for status in ("done", "partial", "running"))
    assert sum(run_id[:8] in table for run_id in found) == 4


def test_runs_show_one_run(tmp_path, cli, capsys):
    results = tmp_path / "results"
    write_run(results, "aaaa00000001", 2, 3, finish=False).close()
    write_run(results, "aaab00000002", 1, 1, finish=True).close()
    assert cli("runs", "show", "aaaa", "--out", results, "--json") == 0
    run = json.loads(capsys.readouterr().out)
    assert run["run_id"] == "aaaa00000001" and run["status"] == "partial"
    assert run["phases"] == {"oips": {"shards": 3, "done": 2, "rows": 6}}
    assert run["params"] == PARAMS
    assert cli("runs", "show", "oip/latest", "--out", results, "--json") == 0  # the link names the finished run
    assert json.loads(capsys.readouterr().out)["run_id"] == "aaab00000002"
    assert cli("runs", "show", "aaa", "--out", results) == 2
    assert "ambiguous" in capsys.readouterr().err
    assert cli("runs", "show", "ffff", "--out", results) == 2
    assert "no run 'ffff'" in capsys.readouterr().err
    assert cli("runs", "--out", tmp_path / "nowhere") == 2
