"""Ray runtime: a wrong address fails fast with one line, impossible actor shapes are
refused before any actor starts, and a local Ray of ours listens on 127.0.0.1 only (the
suite's own Ray too).

Only 127.0.0.1 is ever contacted here: no test lets ``ray.init`` run on an address (Ray
would rewrite 127.0.0.1 to the machine's routable IP).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cluster.runtime import check_address, check_resources, check_ray_address, parse_address, ray_session
from core.errors import BadInput, BadParameter
from tests.support.processes import LOOPBACK_IPS, listening_sockets, process_tree
from tests.support.servers import HTTP2Greeter, Listener, closed_port

ROOT = Path(__file__).parents[2]


@pytest.fixture
def no_ray_yet(monkeypatch):
    """Let ray_session take the connect path even if this pytest process already has a Ray
    (the check must fail before ray.init is reached: the tests assert it does)."""
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("ray.init reached with a bad address"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


# ----- 1. addresses ----------------------------------------------------------------------

@pytest.mark.parametrize("address, says", [
    ("127.0.0.1", "no port"),
    ("127.0.0.1:abc", "port 'abc'"),
    ("127.0.0.1:70000", "port '70000'"),
    (":6379", "no host"),
    ("ray://:10001", "no host"),
    ("ftp://127.0.0.1:6379", "unknown scheme ftp://"),
    ("http://127.0.0.1:8265", "ray job submit --address http://127.0.0.1:8265"),
    # host names the name lookup's IDNA codec refuses (were a UnicodeError traceback)
    ("a..b:6379", "'a..b' is not a valid host name (label empty or too long)"),
    ("a" * 64 + ".example:6379", "is not a valid host name (label empty or too long)"),
    ("xn--ü.example:6379", "'xn--ü.example' is not a valid host name (Label starts with ACE prefix)"),
    ("ray://.a:10001", "'.a' is not a valid host name"),
])
def test_malformed_address_is_one_clear_line(address, says):
    with pytest.raises(BadInput) as caught:
        parse_address(address)
    message = str(caught.value)
    assert says in message and "\n" not in message
    assert address.split("://")[-1] in message


def test_address_forms():
    assert parse_address("ray://127.0.0.1").endpoint == "127.0.0.1:10001"
    assert parse_address("ray://localhost:10002").kind == "client"
    assert parse_address(" 127.0.0.1:6379 ").endpoint == "127.0.0.1:6379"
    assert parse_address("[::1]:6379").endpoint == "[::1]:6379"


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_closed_port_ends_fast_with_bad_input(no_ray_yet, scheme):
    address = f"{scheme}127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(BadParameter) as caught:
        with ray_session(address):
            pass
    assert time.monotonic() - started < 10
    assert caught.value.parameter == "address"
    assert address in str(caught.value) and "connection refused" in str(caught.value)


def test_unknown_host_is_named(no_ray_yet):
    with pytest.raises(BadInput, match=r"unknown host 'no-such-host\.invalid'"):
        with ray_session("no-such-host.invalid:6379"):
            pass


def test_bad_ray_address_variable_is_named(no_ray_yet, monkeypatch):
    address = f"127.0.0.1:{closed_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(BadInput, match=rf"^\$RAY_ADDRESS: Ray address {address}: connection refused"):
        with ray_session():
            pass


def test_auto_without_ray_start_is_bad_input(no_ray_yet, monkeypatch):
    import ray._private.services as services

    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: None)
    with pytest.raises(BadInput, match="no Ray was started with `ray start`"):
        check_ray_address("auto")


def test_auto_follows_ray_address_variable(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6380")
    assert parse_address("auto").endpoint == "127.0.0.1:6380"


@pytest.mark.parametrize("reply, heard", [
    (None, "no gRPC answer within 1 s"),
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "not gRPC"),
    (b"", "the connection was closed"),
])
def test_a_listener_that_is_not_ray_is_refused(reply, heard):
    listener = Listener(reply)
    try:
        started = time.monotonic()
        with pytest.raises(BadInput) as caught:
            check_address(f"127.0.0.1:{listener.port}", timeout_s=1.0)
        assert time.monotonic() - started < 5
        assert f"127.0.0.1:{listener.port}" in str(caught.value) and heard in str(caught.value)
    finally:
        listener.close()


class FakeRay:
    """A gRPC server on 127.0.0.1 with Ray's GCS method GetClusterId and the Ray client
    server's ClusterInfo, answering each with ``status`` (OK: a reply), recording the
    metadata it got."""

    def __init__(self, status=None):
        import grpc
        from concurrent import futures
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc, ray_client_pb2, ray_client_pb2_grpc

        fake = self

        def answer(context, reply):
            fake.metadata.append(dict(context.invocation_metadata()))
            if status is not None:
                context.abort(status, "told to refuse")
            return reply

        class Gcs(gcs_service_pb2_grpc.NodeInfoGcsServiceServicer):
            def GetClusterId(self, request, context):
                return answer(context, gcs_service_pb2.GetClusterIdReply(cluster_id=b"x" * 28))

        class Client(ray_client_pb2_grpc.RayletDriverServicer):
            def ClusterInfo(self, request, context):
                return answer(context, ray_client_pb2.ClusterInfoResponse(json="{}"))

        self.metadata = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        gcs_service_pb2_grpc.add_NodeInfoGcsServiceServicer_to_server(Gcs(), self.server)
        ray_client_pb2_grpc.add_RayletDriverServicer_to_server(Client(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def close(self):
        self.server.stop(None)


class BareGrpc(FakeRay):
    """A gRPC server with no Ray service at all."""

    def __init__(self):
        import grpc
        from concurrent import futures

        self.metadata = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()


def unauthenticated():
    import grpc

    return FakeRay(grpc.StatusCode.UNAUTHENTICATED)


@pytest.mark.parametrize("scheme", ["", "ray://"])
@pytest.mark.parametrize("make, heard", [
    (HTTP2Greeter, "no answer to a Ray request within 1 s"),  # ray.init: minutes of retries and C++ logs
    (BareGrpc, "UNIMPLEMENTED"),
    (unauthenticated, "refused"),
])
def test_a_server_that_is_not_ray_is_refused_in_seconds(scheme, make, heard):
    server = make()
    address = f"{scheme}127.0.0.1:{server.port}"
    try:
        started = time.monotonic()
        with pytest.raises(BadInput) as caught:
            check_address(address, timeout_s=1.0)
        assert time.monotonic() - started < 5
    finally:
        server.close()
    message = str(caught.value)
    assert address in message and heard in message and "\n" not in message
    if make is unauthenticated:
        assert "token" in message


@pytest.mark.parametrize("scheme, kind", [("", "gcs"), ("ray://", "client")])
def test_a_ray_server_passes_the_check_and_gets_our_token(scheme, kind):
    from cluster.runtime import _token_header

    server = FakeRay()
    try:
        assert check_address(f"{scheme}127.0.0.1:{server.port}", timeout_s=2.0).kind == kind
    finally:
        server.close()
    sent = dict(_token_header()).get("authorization")
    assert [metadata.get("authorization") for metadata in server.metadata] == [sent]


# ----- 2. resources ----------------------------------------------------------------------

def fake_nodes(monkeypatch, *nodes: tuple[float, float], dead: tuple[float, float] | None = None):
    import ray

    listed = [{"Alive": True, "Resources": {"CPU": cpus, "GPU": gpus} if gpus else {"CPU": cpus}}
              for cpus, gpus in nodes]
    if dead:
        listed.append({"Alive": False, "Resources": {"CPU": dead[0], "GPU": dead[1]}})
    monkeypatch.setattr(ray, "nodes", lambda: listed)


def test_more_cpus_per_actor_than_any_node_is_refused(ray_local):
    cpus = max(node["Resources"]["CPU"] for node in ray_local.nodes() if node["Alive"])
    with pytest.raises(BadParameter) as caught:
        check_resources(cpus + 1, 0)
    assert caught.value.parameter == "cpus_per_actor"
    assert f"{cpus:g} CPUs" in caught.value.message and "\n" not in caught.value.message
    assert check_resources(cpus, 0).max_actors >= 1


def test_actors_never_span_nodes(monkeypatch):
    fake_nodes(monkeypatch, (3, 0), (3, 0), dead=(64, 8))
    capacity = check_resources(2, 0)
    assert (capacity.nodes, capacity.cpus, capacity.max_actors) == (2, 6, 2)  # not 6 // 2 = 3
    with pytest.raises(BadParameter, match="at most 3 CPUs .* on one node"):
        check_resources(4, 0)  # 6 CPUs in total, but no node has 4
    with pytest.raises(BadParameter) as caught:
        check_resources(2, 0, actors=3)
    assert caught.value.parameter == "actors" and "at most 2" in caught.value.message


def test_gpus_that_do_not_exist_are_refused(monkeypatch):
    fake_nodes(monkeypatch, (8, 0))
    with pytest.raises(BadParameter, match="0.5 GPUs per actor, but the cluster has 1 node, 8 CPUs, 0 GPUs"):
        check_resources(1, 0.5)


def test_fractional_and_whole_gpus(monkeypatch):
    fake_nodes(monkeypatch, (8, 1), (8, 2))
    assert check_resources(1, 0.5).max_actors == 2 + 4
    assert check_resources(1, 2).max_actors == 1
    with pytest.raises(BadParameter, match="no node has 3 GPUs"):
        check_resources(1, 3)
    with pytest.raises(BadParameter, match="whole number"):
        check_resources(1, 1.5)
    fake_nodes(monkeypatch, (8, 0.25))
    with pytest.raises(BadParameter, match="no node has 0.5 GPUs"):
        check_resources(1, 0.5)


# ----- 3. a local Ray of ours listens on loopback only --------------------------------------

PROBE = textwrap.dedent("""
    import json, os, socket, sys
    sys.path.insert(0, sys.argv[1])
    import ray
    from cluster.runtime import check_address, ray_session
    from tests.support.processes import listening_sockets, process_tree

    with ray_session(num_cpus=1) as info:
        @ray.remote(num_cpus=0)
        class Probe:
            def pid(self):
                return os.getpid()

        @ray.remote
        def task_pid():
            return os.getpid()

        @ray.remote
        def task_temp():
            import tempfile
            return tempfile.gettempdir()

        probe = Probe.remote()  # kept alive while the sockets are listed
        worker_pids = [ray.get(probe.pid.remote()), ray.get(task_pid.remote())]
        gcs = ray.get_runtime_context().gcs_address
        check_address(gcs, timeout_s=5.0)  # our own GCS passes the pre-check
        pids = process_tree(os.getpid())
        temp = os.stat(info.temp_dir)
        print(json.dumps({"info": info.__dict__, "gcs": gcs, "pids": pids, "worker_pids": worker_pids,
                          "listeners": listening_sockets(pids), "temp_mode": temp.st_mode & 0o7777,
                          "temp_uid": temp.st_uid, "sessions": os.listdir(os.path.join(info.temp_dir, "ray")),
                          "worker_temp": ray.get(task_temp.remote()), "driver_tmpdir": os.environ.get("TMPDIR")}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_local_ray_listens_on_loopback_only_with_token_auth():
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env["RAY_AUTH_MODE"] = "disabled"  # dreamctl's local Ray keeps token auth on regardless
    env["TMPDIR"] = "/tmp"  # a user's own setting, for Ray's processes replaced by the private folder's
    result = subprocess.run([sys.executable, "-c", PROBE, str(ROOT)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["info"]["started_here"] and report["info"]["token_auth"]
    listeners = report["listeners"]
    exposed = [item for item in listeners if item["ip"] not in LOOPBACK_IPS]
    assert not exposed, f"listening beyond loopback: {exposed}"
    # The measurement saw the session's servers: GCS, raylet (2), dashboard and workers.
    gcs_port = int(report["gcs"].rsplit(":", 1)[1])
    assert report["gcs"].startswith("127.0.0.1:")
    assert any(item["port"] == gcs_port and item["command"] == "gcs_server" for item in listeners)
    assert sum(item["command"] == "raylet" for item in listeners) >= 2
    assert {item["pid"] for item in listeners} >= set(report["worker_pids"])
    assert report["info"]["dashboard_url"].startswith("http://127.0.0.1:")
    token_file = Path.home() / ".ray" / "auth_token"  # the token guards those ports from other local users
    assert not token_file.exists() or not token_file.stat().st_mode & 0o077
    # Its files and sockets are in a folder of its own that only we can enter (Ray's default
    # /tmp/ray is shared and writable by all), whose path leaves room for Ray's socket paths...
    temp_dir = report["info"]["temp_dir"]
    assert (report["temp_mode"], report["temp_uid"]) == (0o700, os.getuid())
    assert any(name.startswith("session_") for name in report["sessions"])
    assert report["worker_temp"] == os.path.join(temp_dir, "tmp")  # what killed workers leave goes with it
    assert report["driver_tmpdir"] == env.get("TMPDIR")  # the user's own, back once Ray has started
    assert len(temp_dir + "/ray/session_2026-12-02_00-02-07_166445_4194304/sockets/dash_TaskEventsHead") <= 107
    # ... and the session's processes are gone once ray_session has ended.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in report["pids"]):
        time.sleep(0.5)
    assert not [pid for pid in report["pids"] if os.path.exists(f"/proc/{pid}")]
    assert not os.path.lexists(temp_dir)  # ... and no session folder is left behind


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_folders_that_killed_runs_left_are_removed_by_the_next_local_run(tmp_path):
    """kill -9 (or the OOM killer) leaves a local Ray's private folder: the next run
    (private_temp_dir, in $TMPDIR or /tmp) removes it once it is old and nothing has a file
    open in it, and nothing else of that name."""
    from cluster.runtime import ABANDONED_AFTER_S, TEMP_PREFIX, remove_abandoned_folders

    long_ago = time.time() - ABANDONED_AFTER_S - 60

    def folder(name: str, old: bool = True) -> Path:
        made = tmp_path / f"{TEMP_PREFIX}{name}"
        (made / "ray" / "session_x" / "logs").mkdir(mode=0o700, parents=True)
        (made / "ray" / "session_x" / "logs" / "raylet.out").write_text("log")
        made.chmod(0o700)
        if old:
            os.utime(made, (long_ago, long_ago))
        return made

    abandoned, recent, in_use, shared = folder("abandoned"), folder("recent", old=False), folder("in-use"), folder("open")
    shared.chmod(0o777)  # not made by private_temp_dir
    elsewhere = tmp_path / "someone-elses"
    elsewhere.mkdir()
    (elsewhere / "data").write_text("keep")
    (tmp_path / f"{TEMP_PREFIX}link").symlink_to(elsewhere)
    os.utime(tmp_path / f"{TEMP_PREFIX}link", (long_ago, long_ago), follow_symlinks=False)
    with (in_use / "ray" / "session_x" / "logs" / "raylet.out").open("a") as log:
        agent = subprocess.Popen(["sleep", "60"], stdout=log)  # an agent that outlived its driver
    try:
        remove_abandoned_folders(str(tmp_path))
        assert not abandoned.exists()
        assert recent.exists() and in_use.exists() and shared.exists()
        assert (tmp_path / f"{TEMP_PREFIX}link").is_symlink() and (elsewhere / "data").read_text() == "keep"
    finally:
        agent.kill()
        agent.wait()
    remove_abandoned_folders(str(tmp_path))  # its agent gone, the folder goes too
    assert not in_use.exists() and recent.exists()


# ----- 4. the test suite's own Ray is started as dreamctl starts its own ---------------------
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_suites_own_ray_is_started_as_dreamctl_starts_its_own(ray_local):
    """tests/conftest.py's Ray listened on all interfaces (0.0.0.0 / ::) while the suite ran."""
    from ray._private import worker

    from cluster.runtime import _token_auth_enabled

    listeners = listening_sockets(process_tree(os.getpid()))
    assert {"gcs_server", "raylet"} <= {item["command"] for item in listeners}
    exposed = [item for item in listeners if item["ip"] not in LOOPBACK_IPS]
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert _token_auth_enabled()
    private = Path(worker._global_node.get_temp_dir_path()).parent  # .../dreamctl-ray-XXXXXXXX/ray
    info = private.stat()
    assert private.name.startswith("dreamctl-ray-") and (info.st_mode & 0o777, info.st_uid) == (0o700, os.getuid())
