"""``--out s3://bucket/prefix``: a precursor run on a real S3-compatible server (moto's server
mode on 127.0.0.1, its own process), interrupted, resumed with a tampered part refused, read
back with pandas through pyarrow, listed by ``dreamctl runs``; the object-store lock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest

from tests.support.cli_output import one_error_line
from tests.support.precursor_runs import SMALL, run_once

BUCKET = "dreamctl-results"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1 (a subprocess, terminated at the end) with one bucket;
    AWS_* variables hold dummy credentials meanwhile. Yields 'host:port'."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {name: os.environ.get(name) for name in
             ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                      AWS_EC2_METADATA_DISABLED="true")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        endpoint = f"127.0.0.1:{port}"
        s3(endpoint, allow_bucket_creation=True).create_dir(BUCKET)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def s3(endpoint: str, **options) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", **options)


def uri(endpoint: str, prefix: str) -> str:
    return f"s3://{BUCKET}/{prefix}?endpoint_override={endpoint}&scheme=http"


@pytest.fixture(autouse=True)
def quick_lock(monkeypatch):
    """The lock's settle delay (2 s) shortened: nothing races here but the lock tests."""
    from cluster.lock import ObjectLock

    monkeypatch.setattr(ObjectLock, "settle_seconds", 0.2)


def test_interrupted_s3_run_resumes_to_the_local_result(s3_endpoint, trained_model_path, ray_local, tmp_path,
                                                        tmp_path_factory, cli, ctrl_c_after, capsys):
    _, local_scores, local_oips = run_once(tmp_path_factory.mktemp("local"), SMALL, trained_model_path)
    out = uri(s3_endpoint, "team/runs")
    filesystem = s3(s3_endpoint)

    ctrl_c_after(3)
    assert cli(*SMALL, "--model", trained_model_path, "--out", out) == 3
    capsys.readouterr()
    assert list(tmp_path.iterdir()) == []  # nothing written locally (the working folder)
    [run_key] = [info.path for info in filesystem.get_file_info(pafs.FileSelector(f"{BUCKET}/team/runs/precursor"))]
    parts = [info for info in filesystem.get_file_info(pafs.FileSelector(f"{run_key}/scores"))]
    records = filesystem.get_file_info(pafs.FileSelector(f"{run_key}/_commits/scores"))
    assert len(parts) == 3 and len(records) == 3  # complete parts, each committed
    assert filesystem.get_file_info(f"{run_key}/_SUCCESS").type == pafs.FileType.NotFound
    assert filesystem.get_file_info(f"{run_key}/_lock").type == pafs.FileType.NotFound  # released on interrupt

    # one committed part changed behind the store's back: resume refuses it and recomputes it
    tampered = parts[0].path
    with filesystem.open_output_stream(tampered) as stream:
        stream.write(b"not the committed bytes")
    ctrl_c_after(None)
    assert cli(*SMALL, "--model", trained_model_path, "--out", out) == 0
    captured = capsys.readouterr()
    err, stdout = (" ".join(text.split()) for text in (captured.err, captured.out))  # rich wraps long lines
    assert "its content changed since its commit" in err and "recomputing it" in err
    assert "(2 of 11 shards reused)" in stdout  # 10 scores shards + 1 oips shard
    run_url = f"s3://{BUCKET}/team/runs/precursor/{run_key.rsplit('/', 1)[-1]}"
    assert f"results: {run_url}" in stdout and f"figure: {run_url}/oips.png" in stdout
    assert filesystem.get_file_info(f"{run_key}/oips.png").size > 1000  # the figure was uploaded
    assert filesystem.get_file_info(f"{run_key}/_SUCCESS").type == pafs.FileType.File
    with filesystem.open_input_stream(f"{BUCKET}/team/runs/precursor/latest") as stream:
        assert stream.read().decode() == run_key.rsplit("/", 1)[-1]

    # the results, read with pandas through pyarrow, equal the local run's
    scores = pd.read_parquet(f"{run_key}/scores", filesystem=filesystem)
    oips = pd.read_parquet(f"{run_key}/oips", filesystem=filesystem)
    sort = lambda frame, keys: frame.sort_values(keys).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(sort(scores, ["map", "pattern"]), local_scores)
    pd.testing.assert_frame_equal(sort(oips, ["map", "rank"]).drop(columns="image"), local_oips.drop(columns="image"))
    np.testing.assert_allclose(np.stack(sort(oips, ["map", "rank"])["image"]), np.stack(local_oips["image"]), atol=1e-5)

    # dreamctl runs reads the same URI
    assert cli("runs", "--out", out, "--json") == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["job"], listed["status"], listed["latest"], listed["rows"]) == ("precursor", "done", True, 2 * 81 + 4)
    assert listed["path"] == run_url
    assert cli("runs", "show", "precursor/latest", "--out", out, "--json") == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == listed["run_id"]

    # copied down (aws s3 sync would do the same), `latest` is a file holding the run id: followed too
    copied = tmp_path / "copied"
    pafs.copy_files(f"{BUCKET}/team/runs", str(copied), source_filesystem=filesystem,
                    destination_filesystem=pafs.LocalFileSystem())
    assert (copied / "precursor" / "latest").is_file()
    assert cli("runs", "show", "precursor/latest", "--out", copied, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["run_id"], shown["status"], shown["latest"]) == (listed["run_id"], "done", True)
    from cluster.store import finished_run

    assert finished_run(copied, "precursor").run_id == listed["run_id"]

    # dreamctl report on the URI: made on a checked local copy, then uploaded next to the run
    report = ["report", "--model", trained_model_path, "--copy-to", tmp_path / "copies", "--oip-restarts", "2",
              "--oip-epochs", "20", "--actors", "2", "--chunk-size", "32"]
    (tmp_path / "a-file").write_text("")
    assert cli(*report[:3], "--copy-to", tmp_path / "a-file", *report[5:], "--out", out) == 2  # before any copy
    assert "--copy-to" in one_error_line(capsys) and not (tmp_path / "copies").exists()
    assert cli(*report, "--out", out) == 0
    stdout = " ".join(capsys.readouterr().out.split())
    local_page = tmp_path / "copies" / "precursor" / listed["run_id"] / "report" / "index.html"
    assert local_page.stat().st_size > 1000 and f"uploaded: {run_url}/report" in stdout
    with filesystem.open_input_stream(f"{run_key}/report/index.html") as stream:
        assert stream.read() == local_page.read_bytes()
    with filesystem.open_output_stream(f"{run_key}/oips/{parts[0].base_name}") as stream:  # a part that is no oips part
        stream.write(b"planted")
    assert cli(*report, uri(s3_endpoint, f"team/runs/precursor/{listed['run_id']}")) == 2
    assert "a part the manifest does not list" in one_error_line(capsys)


def test_bad_uris_fail_fast_with_one_line(s3_endpoint, cli, capsys):
    from cluster.runner import check_out_folder
    from core.errors import BadParameter

    for out, expected in ((uri(s3_endpoint, "x").replace(BUCKET, "no-such-bucket"), "bucket 'no-such-bucket'"),
                          ("nosuchscheme://bucket/prefix", "Unrecognized filesystem type"),
                          ("s3:///prefix", "names no bucket"),
                          (f"s3://{BUCKET}/x?endpoint_override=127.0.0.1:{free_port()}&scheme=http", "cannot reach")):
        assert cli("kmeans", "sweep", "--k", "2:3", "--out", out) == 2, out
        assert expected in one_error_line(capsys)
        started = time.monotonic()  # the check itself is quick: seconds (the SDK's retries), not a hang
        with pytest.raises(BadParameter):
            check_out_folder(out)
        assert time.monotonic() - started < 20, (out, time.monotonic() - started)
    assert cli("runs", "--out", uri(s3_endpoint, "nothing-here")) == 2
    assert "no results under" in one_error_line(capsys)
    assert cli("report", "--out", uri(s3_endpoint, "x")) == 2
    assert "no finished precursor run under" in one_error_line(capsys)
    unreachable = f"s3://{BUCKET}/x?endpoint_override=127.0.0.1:{free_port()}&scheme=http"
    assert cli("report", "--out", unreachable) == 2
    assert "cannot read" in one_error_line(capsys)


def test_one_writer_per_run_on_s3(s3_endpoint, monkeypatch):
    from cluster.lock import ObjectLock
    from cluster.store import RunStore
    from core.errors import BadInput, JobFailed

    out = uri(s3_endpoint, "locks")
    warnings = []
    first = RunStore(out, "kmeans", "run1", {}, warn=warnings.append)
    first.open(fresh=False)
    second = RunStore(out, "kmeans", "run1", {})
    with pytest.raises(BadInput, match=f"in use by pid {os.getpid()}"):
        second.open(fresh=False)

    # another process took the run over (it judged our heartbeat stale): we never commit again
    backend = first.backend
    backend.write("kmeans/run1/_lock", json.dumps({"pid": 1, "host": "other-host", "since": "now",
                                                   "token": "theirs"}).encode())
    with pytest.raises(JobFailed, match="lost the lock .* now held by pid 1 on other-host"):
        first.mark_success()
    first.close()
    assert backend.read("kmeans/run1/_lock") is not None  # theirs stays
    assert backend.read("kmeans/run1/_SUCCESS") is None

    # a lock of another host is stale only when its heartbeat stopped; one of a gone pid here at once
    monkeypatch.setattr(ObjectLock, "stale_seconds", 0.5)
    time.sleep(1.1)  # object times have 1 s resolution
    third = RunStore(out, "kmeans", "run1", {}, warn=warnings.append)
    third.open(fresh=False)
    assert any("no heartbeat" in message for message in warnings)
    third.close()
    assert backend.read("kmeans/run1/_lock") is None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    backend.write("kmeans/run1/_lock", json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                                   "since": "now", "token": "dead"}).encode())
    monkeypatch.setattr(ObjectLock, "stale_seconds", 60.0)
    with RunStore(out, "kmeans", "run1", {}, warn=warnings.append) as fourth:
        fourth.open(fresh=False)
        assert "is gone" in warnings[-1] or "exited" in warnings[-1]


def test_lock_race_leaves_one_writer(s3_endpoint):
    """Two stores opening the same run at the same time: exactly one holds it."""
    import threading

    from cluster.store import RunStore
    from core.errors import BadInput

    out = uri(s3_endpoint, "race")
    stores = [RunStore(out, "kmeans", "run1", {}) for _ in range(2)]
    results = [None, None]

    def open_one(index):
        try:
            stores[index].open(fresh=False)
            results[index] = "held"
        except BadInput:
            results[index] = "refused"

    threads = [threading.Thread(target=open_one, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["held", "refused"]
    for store in stores:
        store.close()


def test_a_store_that_never_answers_fails_within_its_timeout(cli, capsys):
    """A listener that accepts and says nothing, and a provider nobody can reach: one line,
    exit 2, within the URI's timeout (default 15 s, retries included), not minutes of SDK retries."""
    from cluster.storage import DEFAULT_TIMEOUT_S, open_uri

    assert open_uri(f"s3://{BUCKET}/x")[2] == DEFAULT_TIMEOUT_S == 15
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        for out in (f"s3://{BUCKET}/x?endpoint_override=127.0.0.1:{silent.getsockname()[1]}&scheme=http&timeout=1",
                    "gs://no-such-bucket-of-dreamctl/x?timeout=1"):
            started = time.monotonic()
            assert cli("kmeans", "sweep", "--k", "2:3", "--out", out) == 2
            assert "cannot reach" in one_error_line(capsys) and time.monotonic() - started < 8, out
            started = time.monotonic()
            assert cli("runs", "--out", out) == 2
            assert time.monotonic() - started < 8, out
            capsys.readouterr()
    assert cli("runs", "--out", f"s3://{BUCKET}/x?timeout=soon") == 2
    assert "timeout must be a number of seconds" in one_error_line(capsys)


def test_a_dream_run_on_s3_records_figures_that_are_in_the_bucket(s3_endpoint, trained_model_path, ray_local, cli,
                                                                  capsys):
    """The store writes a job's artifacts the same way on every backend: the PNG locations
    ``dream``'s summary records are objects of the bucket, next to the summary (was: paths in
    a local staging folder deleted afterwards)."""
    from PIL import Image

    filesystem = s3(s3_endpoint)
    out = uri(s3_endpoint, "team/dreams")
    assert cli("dream", "--maps", "3,56", "--size", "56", "--iterations", "1", "--epochs", "2",
               "--model", trained_model_path, "--out", out) == 0
    capsys.readouterr()
    with filesystem.open_input_stream(f"{BUCKET}/team/dreams/dream/latest") as stream:
        run_key = f"{BUCKET}/team/dreams/dream/{stream.read().decode()}"
    summary = pd.read_parquet(f"{run_key}/summary.parquet", filesystem=filesystem)
    locations = [*summary["dream_png"], *summary["panels_png"], *summary["contact_sheet_png"]]
    assert len(locations) == 6 and all(location.startswith(f"s3://{run_key}/") for location in locations)
    for location in set(locations):
        with filesystem.open_input_file(location.removeprefix("s3://")) as file:
            assert Image.open(file).size[0] > 0  # a PNG, there
