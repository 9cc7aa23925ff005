"""dreamctl beyond one Ray node, all on this machine and on 127.0.0.1 (docs/CLUSTER.md):

1. a 3-node cluster (``ray.cluster_utils.Cluster``, tests/support/multinode_script.py in a process
   of its own): kmeans tasks and precursor actors spread over the nodes, each shard's node
   in the manifest; a worker node removed mid-run loses and duplicates nothing, and the
   result equals a one-node run's;
2. a GPU node without a GPU: 4 actors of half a GPU each get their own
   CUDA_VISIBLE_DEVICES, memory growth and the precision; more GPUs per actor than any node
   has is exit 2 at once;
3. ``ray job submit`` to a head started with ``ray start`` (token authentication on),
   followed with ``ray job status`` / ``ray job logs``, results read with pandas (not
   marked slow: it runs in CI with `make test`).

Every Ray process started here is stopped by pid and checked gone.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from cluster.scheduler import IN_FLIGHT_PER_WORKER
from tests.support.processes import LOOPBACK_IPS, listening_sockets, process_tree

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PRECURSOR = ["precursor", "--maps", "3,7", "--grid", "2", "--full-epochs", "20", "--patterns-per-shard", "16"]
N_SCORE_SHARDS = 2 * 6  # 2 maps x ceil(81 patterns / 16)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def ray_env(token_file: Path, temp_root: Path) -> dict:
    """The environment of every Ray process and client here: token auth on with our own
    token, Ray's temp files (and its 'current cluster' record) and every process's
    temporary files ($TMPDIR: Ray's dashboard, ended by SIGTERM, leaves one) in our own folder."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: Ray's single-machine mode, every listener on
    # 127.0.0.1 (otherwise `ray start` binds the GCS and raylet to all interfaces)
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file),
               RAY_TMPDIR=str(temp_root), TMPDIR=str(temp_root),
               TF_CPP_MIN_LOG_LEVEL="2", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


def new_token(folder: Path) -> Path:
    token_file = folder / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    return token_file


def stop_and_check_gone(pids: list[int], timeout_s: float = 30.0) -> list[int]:
    """SIGTERM ``pids`` still running, then SIGKILL what is left after ``timeout_s``;
    returns the pids that needed SIGKILL (the caller asserts there are none)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.5)
    left = [pid for pid in pids if alive(pid)]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def short_temp_dir() -> Path:
    """Ray's Unix sockets live under its temp dir: keep the path short (107-byte limit)."""
    return Path(tempfile.mkdtemp(prefix="dm", dir="/tmp"))


# ----- 1 and 2: the 3-node cluster -------------------------------------------------------------
@pytest.fixture(scope="module")
def multinode(trained_model_path, tmp_path_factory):
    """Run tests/support/multinode_script.py once: (its JSON report, its results folder)."""
    out = tmp_path_factory.mktemp("multinode")
    temp_root = short_temp_dir()
    try:
        env = ray_env(new_token(temp_root), temp_root)
        del env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"]  # the script sets it for its nodes, not its driver
        script = subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "multinode_script.py"),
                                   str(trained_model_path), str(out)], cwd=ROOT, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  start_new_session=True)  # its own group: no Ray signal reaches pytest
        try:
            stdout, stderr = script.communicate(timeout=420)
        except subprocess.TimeoutExpired:
            leftovers = process_tree(script.pid)
            for pid in leftovers:
                os.kill(pid, signal.SIGKILL)
            stdout, stderr = script.communicate()
            pytest.fail(f"the 3-node run did not end within 420 s:\n{stderr[-3000:]}")
        assert script.returncode == 0, stderr[-3000:]
        report = json.loads(next(line for line in stdout.splitlines() if line.startswith("REPORT "))[7:])
        assert not stop_and_check_gone(report["pids"]), "cluster processes outlived the cluster"
        yield report, out
    finally:
        shutil.rmtree(temp_root, ignore_errors=True)


def manifest(out: Path, name: str, job: str) -> dict:
    return json.loads((out / name / job / "latest" / "_manifest.json").read_text())


def read(folder: Path, phase: str) -> pd.DataFrame:
    keys = ["map", "pattern"] if phase == "scores" else ["map", "rank"]
    return pd.read_parquet(folder / phase).sort_values(keys).reset_index(drop=True)


def test_tasks_and_actors_spread_over_three_nodes_and_the_manifest_names_them(multinode):
    report, out = multinode
    cluster_nodes = {report["nodes"][name] for name in ("head", "worker1", "worker2")}
    assert report["kmeans_exit"] == 0
    sweep = manifest(out, "kmeans3", "kmeans")
    assert sweep["status"] == "done"
    assert set(sweep["nodes"]["sweep"]) == set(sweep["phases"]["sweep"])  # one node per K
    assert set(sweep["nodes"]["sweep"].values()) <= cluster_nodes
    assert len(set(sweep["nodes"]["sweep"].values())) >= 2
    precursor = manifest(out, "removed", "precursor")
    assert set(precursor["nodes"]["scores"]) == set(precursor["phases"]["scores"])
    assert len(precursor["phases"]["scores"]) == N_SCORE_SHARDS
    exposed = [item for item in report["listeners"] if item["ip"] not in LOOPBACK_IPS]
    assert report["listeners"] and not exposed, f"listening beyond loopback: {exposed}"
    used = set(precursor["nodes"]["scores"].values())
    assert used <= cluster_nodes and len(used) == 3  # one actor per node (1 CPU each)
    # the commit record of a part says the same
    shard, node = next(iter(precursor["nodes"]["scores"].items()))
    run_dir = out / "removed" / "precursor" / "latest"
    assert json.loads((run_dir / "_commits" / "scores" / f"{shard}.json").read_text())["node"] == node


def test_node_removed_mid_run_loses_and_duplicates_nothing(multinode, trained_model_path, ray_local, cli):
    report, out = multinode
    assert report["precursor_exit"] == 0
    written, removed_after = report["removal"]["written"], report["removal"]["removed_after"]
    worker1 = report["nodes"]["worker1"]
    assert removed_after < N_SCORE_SHARDS  # removed with shards still to come ...
    assert worker1 in {node for _, _, node in written[:removed_after]}  # ... after it had done one
    # afterwards only results that had already reached the driver (at most the shards in
    # flight on that actor) can name it; the rest was done by the other nodes
    after = [node for _, _, node in written[removed_after:]]
    assert after.count(worker1) <= IN_FLIGHT_PER_WORKER, written
    assert len(after) - after.count(worker1) > 0, written
    shard_ids = [(phase, shard) for phase, shard, _ in written]
    assert len(shard_ids) == len(set(shard_ids)) == N_SCORE_SHARDS + 1  # each shard written once (+ oips)
    run_dir = out / "removed" / "precursor" / "latest"
    scores, oips = read(run_dir, "scores"), read(run_dir, "oips")
    assert not scores.duplicated(["map", "pattern"]).any() and len(scores) == 2 * 81
    # the same job on one node (the session's local Ray) gives the same Parquet results
    assert cli(*PRECURSOR, "--model", trained_model_path, "--out", "one-node") == 0
    one_node = Path("one-node") / "precursor" / "latest"
    pd.testing.assert_frame_equal(scores, read(one_node, "scores"))
    pd.testing.assert_frame_equal(oips, read(one_node, "oips"))


def test_half_gpu_actors_get_their_own_devices_memory_growth_and_precision(multinode):
    report, out = multinode
    assert report["gpu_exit"] == 0
    settings = report["gpu_settings"]
    assert len(settings) == 4  # 2 GPUs / 0.5 per actor
    assert sorted(actor["cuda_visible_devices"] for actor in settings) == ["0", "0", "1", "1"]
    assert all(actor["node_id"] == report["nodes"]["gpu"] for actor in settings)
    # no real GPU: TensorFlow finds none, the actor reports that memory growth is asked for each
    assert all(actor["use_gpu"] and actor["memory_growth"] == {} for actor in settings)
    assert all(actor["precision"] == "tf32" and actor["tf32"] for actor in settings)
    assert set(manifest(out, "gpu", "precursor")["nodes"]["scores"].values()) == {report["nodes"]["gpu"]}


def test_more_gpus_per_actor_than_any_node_has_is_exit_2_at_once(multinode):
    report, out = multinode
    assert report["too_many_gpus_exit"] == 2
    assert report["too_many_gpus_seconds"] < 5  # connect, count, refuse: no actor waits forever
    assert not (out / "refused" / "precursor").exists() or not any((out / "refused" / "precursor").rglob("*.parquet"))


# ----- 3: ray job submit ------------------------------------------------------------------------
def ray_cli(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_ray_job_submit_to_a_ray_start_head_with_token_auth(trained_model_path):
    temp_root = short_temp_dir()
    env = ray_env(new_token(temp_root), temp_root)
    dashboard = f"http://127.0.0.1:{free_port()}"
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(free_port()), "--dashboard-host", "127.0.0.1", "--dashboard-port", dashboard.rsplit(":", 1)[1],
         "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
         "--num-cpus", "2", "--temp-dir", str(temp_root / "ray"), "--disable-usage-stats"],
        env=env, cwd=temp_root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)  # --block: stopping this process stops the head
    pids: list[int] = [head.pid]
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{dashboard}/api/version", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # it answers (401 without the token)
            except OSError:
                assert head.poll() is None, f"ray start ended: {head.stderr.read()[-2000:]}"
                assert time.monotonic() < deadline, "the head's dashboard did not come up within 90 s"
                time.sleep(1)
        pids = process_tree(head.pid)
        exposed = [item for item in listening_sockets(pids) if item["ip"] not in LOOPBACK_IPS]
        assert not exposed, f"the head listens beyond loopback: {exposed}"

        # the head enforces the token: a client without it is turned away
        no_token = {**env, "RAY_AUTH_MODE": "disabled"}
        del no_token["RAY_AUTH_TOKEN_PATH"]
        refused = ray_cli("job", "list", "--address", dashboard, env=no_token)
        assert refused.returncode != 0
        assert "auth" in (refused.stdout + refused.stderr).lower()

        out = temp_root / "results"
        submit = ray_cli("job", "submit", "--address", dashboard, "--working-dir", str(ROOT), "--no-wait",
                         "--submission-id", "dreamctl-precursor", "--",
                         "dreamctl", *PRECURSOR, "--model", str(Path(trained_model_path).resolve()),
                         "--out", str(out), env=env)
        assert submit.returncode == 0, submit.stderr[-2000:]
        deadline, status = time.monotonic() + 180, ""
        while time.monotonic() < deadline:
            status = ray_cli("job", "status", "--address", dashboard, "dreamctl-precursor", env=env).stdout
            if any(word in status.lower() for word in ("succeeded", "failed", "stopped")):
                break
            time.sleep(2)
        logs = ray_cli("job", "logs", "--address", dashboard, "dreamctl-precursor", env=env).stdout
        assert "succeeded" in status.lower(), f"{status}\n{logs[-3000:]}"
        assert "Ray at 127.0.0.1:" in logs and "results: " in logs  # the job attached to this head
        run_dir = out / "precursor" / "latest"
        scores, oips = read(run_dir, "scores"), read(run_dir, "oips")
        assert len(scores) == 2 * 81 and set(scores["map"]) == {3, 7}
        assert len(oips) == 2 * 8 and oips["loss"].notna().all()
        pids = sorted(set(pids) | set(process_tree(head.pid)))
    finally:
        if head.poll() is None:
            head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        leftovers = stop_and_check_gone(pids)
        shutil.rmtree(temp_root, ignore_errors=True)
    assert not leftovers, f"processes of the head outlived it: {leftovers}"
