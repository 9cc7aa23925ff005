"""``dreamctl runs``: done, partial, running and damaged runs as they are on disk; one damaged
run never hides the others."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pyarrow as pa
import pytest

from cluster.storage import LOCK
from cluster.store import RunStore, run_id
from jobs.base import Shard

SCHEMA = pa.schema([("map", pa.int32()), ("loss", pa.float32())])
MODEL, DATA = "m" * 16, {"name": "mnist-5k"}


def params(seed: int) -> dict:
    return {"layer": "conv3", "maps": [0, 1, 2, 3, 9], "epochs": 20, "restarts": 2, "seed": seed}


def write_run(results, seed: int, parts_written: int, n_shards: int, finish: bool) -> RunStore:
    """An ``oip`` run (parameters of ``seed``) with ``n_shards`` shards of 3 rows,
    ``parts_written`` of them written; finished when ``finish``. Returns the store, its lock
    still held; ``store.run_id`` is the run's id."""
    rid = run_id("oip", params(seed), MODEL, DATA)
    store = RunStore(results, "oip", rid, {"params": params(seed), "model_hash": MODEL, "data": DATA})
    store.open(False)
    shards = [Shard(f"maps-{i:04d}", i, 3, 3) for i in range(n_shards)]
    store.write_manifest({"oips": shards}, "running")
    for shard in shards[:parts_written]:
        store.write_part("oips", shard, pa.table({"map": [shard.payload] * 3, "loss": [0.5] * 3}, schema=SCHEMA))
    if finish:  # as the runner does: the phase read back, the manifest, then success
        store.read_phase("oips", shards, SCHEMA)
        store.write_manifest({"oips": shards}, "done")
        store.mark_success()
    return store


def listed(cli, capsys, results) -> tuple[dict, str]:
    assert cli("runs", "--out", results, "--json") == 0
    found = {run["run_id"]: run for run in json.loads(capsys.readouterr().out)}
    assert cli("runs", "--out", results) == 0  # the table: one row per run
    return found, capsys.readouterr().out


def test_runs_lists_done_partial_and_running_runs(tmp_path, cli, capsys):
    results = tmp_path / "results"
    done = write_run(results, 1, 2, 2, finish=True)
    done.close()
    stopped = write_run(results, 2, 1, 3, finish=False)  # stopped: lock released
    stopped.close()
    running = write_run(results, 3, 1, 2, finish=False)  # this process holds the lock
    killed = write_run(results, 4, 2, 4, finish=False)
    killed.close()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {"pid": int(gone.stdout), "host": socket.gethostname(), "since": "2026-01-01T00:00:00+0000",
              "process_start": None, "boot_id": None, "token": "0" * 16}
    (results / "oip" / killed.run_id / LOCK).write_text(json.dumps(record))  # its writer was killed
    try:
        found, table = listed(cli, capsys, results)
    finally:
        running.close()
    assert {rid: run["status"] for rid, run in found.items()} == {
        done.run_id: "done", stopped.run_id: "partial", running.run_id: "running", killed.run_id: "partial"}
    assert (found[done.run_id]["rows"], found[done.run_id]["shards_done"], found[done.run_id]["shards"]) == (6, 2, 2)
    assert (found[stopped.run_id]["rows"], found[stopped.run_id]["shards_done"], found[stopped.run_id]["shards"]) == (3, 1, 3)
    assert found[done.run_id]["latest"] and not found[stopped.run_id]["latest"]
    assert found[done.run_id]["key_params"] == "layer=conv3 maps=0-3,9 epochs=20 restarts=2 seed=1"
    assert found[done.run_id]["job"] == "oip" and found[done.run_id]["model_hash"] == MODEL
    assert all(status in table for status in ("done", "partial", "running"))
    assert sum(rid[:8] in table for rid in found) == 4


def damage(run_dir, how: str) -> str:
    """Damage a finished run folder ``how``; returns what its reason must say."""
    manifest = run_dir / "_manifest.json"
    if how == "edited manifest":
        values = json.loads(manifest.read_text())
        values["params"]["epochs"] = 1200  # the parameters no longer hash to the run id
        manifest.write_text(json.dumps(values))
        return "are not those of run"
    if how == "manifest of the wrong JSON type":
        manifest.write_text("[1, 2, 3]")
        return "has no valid job"
    if how == "manifest not JSON":
        manifest.write_text("{not json")
        return "is not JSON"
    if how == "a FIFO as manifest":
        manifest.unlink()
        os.mkfifo(manifest)
        return "not a regular file"
    if how == "a folder as manifest":
        manifest.unlink()
        manifest.mkdir()
        return "not a regular file"
    if how == "a self-referencing link as manifest":
        manifest.unlink()
        manifest.symlink_to(manifest.name)
        return "not a regular file"
    if how == "an edited part":
        part = next((run_dir / "oips").glob("part-*.parquet"))
        part.write_bytes(part.read_bytes()[:-8] + b"PAR1PAR1")
        return "content changed since its commit"
    if how == "a name that is not UTF-8 in a phase folder":
        with open(os.path.join(os.fsencode(run_dir / "oips"), b"part-\xff.parquet"), "wb") as file:
            file.write(b"planted")
        return "a part the manifest does not list"
    if how == "a shard dropped from the manifest and its files":
        values = json.loads(manifest.read_text())
        dropped = values["phases"]["oips"].pop()
        manifest.write_text(json.dumps(values))
        (run_dir / "oips" / f"part-{dropped}.parquet").unlink()
        (run_dir / "_commits" / "oips" / f"{dropped}.json").unlink()
        return "lists other parts or outputs than the run finished with"
    if how == "a manifest of 100 MB":
        with open(manifest, "r+b") as file:
            file.truncate(100 << 20)  # sparse: no disk used
        return "more than"
    if how == "a lock with a huge pid":
        (run_dir / LOCK).write_text(json.dumps({"pid": 10 ** 30, "host": socket.gethostname()}))
        return ""
    if how == "a lock with a non-numeric pid":
        (run_dir / LOCK).write_text(json.dumps({"pid": "twelve", "host": socket.gethostname()}))
        return ""
    if how == "a FIFO as lock":
        os.mkfifo(run_dir / LOCK)
        return ""
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["edited manifest", "manifest of the wrong JSON type", "manifest not JSON",
                                 "a FIFO as manifest", "a folder as manifest", "a self-referencing link as manifest",
                                 "an edited part", "a name that is not UTF-8 in a phase folder", "a manifest of 100 MB",
                                 "a shard dropped from the manifest and its files",
                                 "a lock with a huge pid", "a lock with a non-numeric pid",
                                 "a FIFO as lock"])
def test_one_damaged_run_never_hides_the_others(tmp_path, cli, capsys, how):
    results = tmp_path / "results"
    good = write_run(results, 1, 2, 2, finish=True)
    good.close()
    bad = write_run(results, 2, 2, 2, finish=True)
    bad.close()
    reason = damage(results / "oip" / bad.run_id, how)
    (results / "oip" / "stray-file").write_text("not a run")  # a file where a run folder could be
    with open(os.path.join(os.fsencode(results / "oip"), b"\xfe"), "wb"):  # a name that is not UTF-8
        pass
    found, table = listed(cli, capsys, results)
    assert found[good.run_id]["status"] == "done" and found[good.run_id]["rows"] == 6
    if reason:  # the manifest or a part: named and refused, never shown as done
        assert found[bad.run_id]["status"] == "damaged" and reason in found[bad.run_id]["problem"]
        assert f"oip/{bad.run_id} is damaged" in table
    else:  # a bad lock of a finished run changes nothing
        assert found[bad.run_id]["status"] == "done"
    assert "stray-file" in found and found["stray-file"]["status"] == "damaged"
    assert found["'\\\\xfe'"]["status"] == "damaged"  # shown escaped


def test_runs_show_one_run(tmp_path, cli, capsys):
    results = tmp_path / "results"
    partial = write_run(results, 1, 2, 3, finish=False)
    partial.close()
    done = write_run(results, 2, 1, 1, finish=True)
    done.close()
    assert cli("runs", "show", partial.run_id[:6], "--out", results, "--json") == 0
    run = json.loads(capsys.readouterr().out)
    assert run["run_id"] == partial.run_id and run["status"] == "partial"
    assert run["phases"] == {"oips": {"shards": 3, "done": 2, "rows": 6}}
    assert run["params"] == params(1)
    assert cli("runs", "show", "oip/latest", "--out", results, "--json") == 0  # the link names the finished run
    assert json.loads(capsys.readouterr().out)["run_id"] == done.run_id
    assert cli("runs", "show", results / "oip" / done.run_id, "--json") == 0  # the run folder itself
    assert json.loads(capsys.readouterr().out)["run_id"] == done.run_id
    common = os.path.commonprefix([partial.run_id, done.run_id])
    assert cli("runs", "show", common, "--out", results) == 2
    assert "ambiguous" in capsys.readouterr().err
    assert cli("runs", "show", "zzzz", "--out", results) == 2
    assert "no run 'zzzz'" in capsys.readouterr().err
    assert cli("runs", "--out", tmp_path / "nowhere") == 2
