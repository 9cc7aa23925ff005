"""Attach to Ray: ``--address``, else ``RAY_ADDRESS``, else a local Ray of our own.

An address is checked before ``ray.init`` (which otherwise retries an unreachable cluster
for many minutes, deaf to SIGTERM): its form, its host name, a TCP connection, an HTTP/2
greeting and one real Ray RPC (the GCS's cluster id for ``host:6379``, a ping for the Ray
client server ``ray://host:10001``), each within :data:`CONNECT_TIMEOUT_S`; so is the token
Ray will send. A local Ray started here listens on 127.0.0.1 only, requires Ray's token and
keeps its files in a new folder only this user can enter; when the job ends it is stopped,
every process it started is gone and its folder removed. Starting and stopping it are never
cut in the middle by a signal (cluster/interrupts.py). See docs/SECURITY.md.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import ray

from cluster import interrupts
from core.errors import BadInput, BadParameter
from core.params import as_bytes

# Workers inherit these: keep TensorFlow's C++ log quiet in every actor.
WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}

CONNECT_TIMEOUT_S = 5.0  # per step of the address check (name lookup, TCP, gRPC greeting, Ray RPC)
RAY_CLIENT_PORT = 10001  # Ray's default for ray://host (no port given)
LOOPBACK = "127.0.0.1"
STOP_TIMEOUT_S = 10.0  # after ray.shutdown, what of our local Ray still runs is killed
ABANDONED_AFTER_S = 600.0  # a private folder of a killed run, this old and unused, is removed
# A local Ray's files go to PRIVATE/ray, PRIVATE a new folder only we can enter: Ray makes
# every folder it creates writable by all (0777), PRIVATE it does not create. Its AF_UNIX
# sockets live at PRIVATE/ray/session_<date>_<time>_<µs>_<pid>/sockets/<name>, the longest
# dash_TaskEventsHead: at most 70 characters after PRIVATE/ray, and a socket path has at
# most 107 bytes on Linux.
SOCKET_PATH_MAX, SOCKET_SUFFIX_MAX = 107, 70
TEMP_PREFIX, RAY_FOLDER, RAY_TEMP = "dreamctl-ray-", "ray", "tmp"  # PRIVATE/tmp: $TMPDIR of Ray's processes
MAX_TEMP_BASE = (SOCKET_PATH_MAX - SOCKET_SUFFIX_MAX - len(RAY_FOLDER) - 1
                 - len(TEMP_PREFIX) - 8 - 1)  # mkdtemp adds 8 characters

# HTTP/2 client connection preface followed by an empty SETTINGS frame (RFC 9113 §3.4):
# every gRPC server answers it with a SETTINGS frame of its own.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS = 0x04


@dataclass(frozen=True)
class RayInfo:
    address: str
    dashboard_url: str | None
    started_here: bool
    cpus: float
    gpus: float
    token_auth: bool = False  # the driver sends Ray's token (always true for a Ray started here)
    temp_dir: str | None = None  # the private folder of a Ray started here, mode 0700 (removed when the job ends)


@dataclass(frozen=True)
class RayAddress:
    """A parsed ``--address``: ``kind`` is ``gcs`` (host:port), ``client`` (ray://host:port)
    or ``auto`` (the Ray that ``ray start`` recorded on this machine, host/port resolved)."""

    text: str
    kind: str
    host: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _split_host_port(text: str, default_port: int | None) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or (with a default port) ``host`` → (host, port)."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("an IPv6 host is written [host]:port")
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" not in text:
        host, port_text = text, ""
    else:
        raise ValueError("write an IPv6 host as [host]:port")
    if not host or "/" in host or any(char.isspace() for char in host):
        raise ValueError("no host name")
    try:
        host.encode("idna")  # what the name lookup does first: empty or 64+ character labels, bad xn-- names
    except UnicodeError as error:
        reason = str(error).removeprefix("encoding with 'idna' codec failed (UnicodeError: ").removesuffix(")")
        raise ValueError(f"{host!r} is not a valid host name ({reason})") from None
    if not port_text:
        if default_port is None:
            raise ValueError("no port (e.g. host:6379)")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def parse_address(address: str) -> RayAddress:
    """Parse a Ray address without touching the network (``auto`` excepted: it reads the
    address file of ``ray start``). Raises BadInput naming the address and the problem."""
    text = address.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    scheme = scheme.lower()
    if scheme in ("http", "https"):
        raise BadInput(
            f"{text} is a Ray dashboard (job submission) address, not one dreamctl can run actors "
            f"through: submit the command with `ray job submit --address {text} --working-dir . -- dreamctl ...`, "
            "or pass the cluster's GCS address (host:6379) or ray://host:10001")
    if scheme not in ("", "ray"):
        raise BadInput(f"Ray address {text!r}: unknown scheme {scheme}:// (use host:6379, ray://host:10001 or auto)")
    if scheme == "" and rest.lower() == "auto":
        return _resolve_auto(text)
    try:
        host, port = _split_host_port(rest, RAY_CLIENT_PORT if scheme == "ray" else None)
    except ValueError as error:
        raise BadInput(f"Ray address {text!r} is malformed: {error} "
                       "(use host:6379, ray://host:10001 or auto)") from None
    return RayAddress(text, "client" if scheme == "ray" else "gcs", host, port)


def _resolve_auto(text: str) -> RayAddress:
    """``auto``: ``$RAY_ADDRESS`` if set (as under ``ray job submit``), else the cluster that
    ``ray start`` last recorded on this machine. Ray would
    also fall back to any GCS process it finds with ``ps``; on a shared machine that can be
    someone else's Ray, so dreamctl does not."""
    from ray._private.services import find_bootstrap_address

    environment = os.environ.get("RAY_ADDRESS", "").strip()
    if environment and environment.lower() != "auto":  # ray.init("auto") prefers it too
        return parse_address(environment)
    recorded = find_bootstrap_address(None)
    if not recorded:
        raise BadInput("Ray address 'auto': no Ray was started with `ray start` on this machine "
                       "(start one with `ray start --head`, or pass host:6379)")
    try:
        host, port = _split_host_port(recorded, None)
    except ValueError as error:
        raise BadInput(f"Ray address 'auto': the address {recorded!r} recorded by `ray start` is malformed: {error}") from None
    return RayAddress(text, "auto", host, port)


def check_address(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> RayAddress:
    """Parse ``address`` and check that Ray answers there, each network step within
    ``timeout_s`` seconds. Raises BadInput naming the address and what failed."""
    parsed = parse_address(address)
    where = parsed.text if parsed.text == parsed.endpoint else f"{parsed.text} ({parsed.endpoint})"
    try:
        targets = socket.getaddrinfo(parsed.host, parsed.port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise BadInput(f"Ray address {where}: unknown host {parsed.host!r} ({error.strerror})") from None
    family, kind, proto, _, sockaddr = targets[0]
    with socket.socket(family, kind, proto) as connection:
        connection.settimeout(timeout_s)
        try:
            connection.connect(sockaddr)
        except ConnectionRefusedError:
            raise BadInput(f"Ray address {where}: connection refused (nothing listens on port {parsed.port}; "
                           "is Ray running there?)") from None
        except (socket.timeout, TimeoutError):
            raise BadInput(f"Ray address {where}: no answer within {timeout_s:g} s "
                           "(host down, firewalled, or the wrong network)") from None
        except OSError as error:
            raise BadInput(f"Ray address {where}: cannot connect ({error.strerror or error})") from None
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return parsed  # the gRPC greeting would need the TLS handshake first: TCP must do
        try:
            connection.sendall(_H2_PREFACE)
            header = _read_exactly(connection, 9)
        except (socket.timeout, TimeoutError):
            header = None
        except OSError:
            header = b""
    if header is None or len(header) < 9 or header[3] != _H2_SETTINGS:
        expected = "Ray client server (port 10001)" if parsed.kind == "client" else "Ray GCS (port 6379)"
        heard = "no gRPC answer" if header is None else "the connection was closed" if not header else "not gRPC"
        raise BadInput(f"Ray address {where}: something listens there but it is not a {expected} ({heard}"
                       f"{' within ' + format(timeout_s, 'g') + ' s' if header is None else ''}); "
                       "the dashboard's port 8265 is not a cluster address")
    _ask_ray(parsed, where, timeout_s)
    return parsed


def _ask_ray(parsed: RayAddress, where: str, timeout_s: float) -> None:
    """One real Ray RPC with a deadline, with the token Ray would send: the cluster id from a
    GCS, a ping to a Ray client server. Any other HTTP/2 or gRPC server fails it within
    ``timeout_s``, where ``ray.init`` would retry for minutes, writing C++ logs."""
    import grpc

    if parsed.kind == "client":
        from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc

        expected = "Ray client server (port 10001)"
        ask = lambda channel, **call: ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo(  # noqa: E731
            ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING), **call)
    else:
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

        expected = "Ray GCS (port 6379)"
        ask = lambda channel, **call: gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(  # noqa: E731
            gcs_service_pb2.GetClusterIdRequest(), **call)
    token = _token_header()
    # No proxy: Ray's own connections ignore $http_proxy / $grpc_proxy too.
    with grpc.insecure_channel(parsed.endpoint, options=[("grpc.enable_http_proxy", 0)]) as channel:
        try:
            ask(channel, timeout=timeout_s, metadata=token)
            return
        except grpc.RpcError as error:
            code, details = error.code(), (error.details() or "").splitlines()[0:1]
    heard = f"{code.name}{': ' + details[0] if details else ''}"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        raise BadInput(f"Ray address {where}: the cluster refused {'our token' if token else 'a driver without a token'} "
                       f"({heard}); give it the cluster's token in $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        heard = f"no answer to a Ray request within {timeout_s:g} s"
    raise BadInput(f"Ray address {where}: something answers there but it is not a {expected} ({heard})")


def _token_header() -> tuple[tuple[str, str], ...]:
    """The ``authorization`` metadata Ray's own client sends (empty without a token)."""
    from ray._raylet import AuthenticationTokenLoader

    loader = AuthenticationTokenLoader.instance()
    return tuple(loader.get_token_for_http_header().items()) if loader.has_token(ignore_auth_mode=True) else ()


def check_token_source() -> None:
    """The token Ray will read, checked before any slow work (Ray fails deep in ``ray.init``
    with a traceback): ``$RAY_AUTH_TOKEN`` when set (Ray then ignores the file variable), else
    the file ``$RAY_AUTH_TOKEN_PATH`` names, when set. Raises BadInput naming the variable."""
    token = os.environ.get("RAY_AUTH_TOKEN")
    if token:
        if not token.strip():
            raise BadInput("$RAY_AUTH_TOKEN is set but blank: set it to the cluster's token or unset it")
        return
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if not path:
        return
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO there must not block us
    except OSError as error:
        raise BadInput(f"$RAY_AUTH_TOKEN_PATH: cannot read the token file {path!r} ({error.strerror}); "
                       "point it at the file holding the cluster's token, or unset it") from None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise BadInput(f"$RAY_AUTH_TOKEN_PATH: {path!r} is not a regular file")
        blank = not os.read(descriptor, 4096).strip()
    except OSError as error:
        raise BadInput(f"$RAY_AUTH_TOKEN_PATH: cannot read the token file {path!r} ({error.strerror})") from None
    finally:
        os.close(descriptor)
    if blank:
        raise BadInput(f"$RAY_AUTH_TOKEN_PATH: the token file {path!r} is empty")


def _read_exactly(connection: socket.socket, n_bytes: int) -> bytes:
    data = b""
    while len(data) < n_bytes:
        chunk = connection.recv(n_bytes - len(data))
        if not chunk:
            break
        data += chunk
    return data


@dataclass(frozen=True)
class Capacity:
    """What the alive nodes can grant to actors of one shape (totals, not what is free now)."""

    nodes: int
    cpus: float
    gpus: float
    max_actors: int  # actors of this shape that fit at once (an actor never spans nodes)


def _node_totals() -> list[tuple[float, float]]:
    """(CPUs, GPUs) of every alive node."""
    return [(float(node["Resources"].get("CPU", 0)), float(node["Resources"].get("GPU", 0)))
            for node in ray.nodes() if node.get("Alive")]


def check_resources(cpus_per_actor: float, gpus_per_actor: float, actors: int | None = None) -> Capacity:
    """Refuse actor shapes the alive nodes can never grant (Ray would wait forever).

    ``cpus_per_actor`` / ``gpus_per_actor``: what one actor asks for; ``actors``: how many
    the user asked for (None = as many as fit). Call after :func:`ray_session` started and
    before any actor is created. Raises BadParameter (in its own parameter names) with one
    line saying what the cluster has; returns the cluster's :class:`Capacity`.
    """
    nodes = _node_totals()
    cpus, gpus = sum(c for c, _ in nodes), sum(g for _, g in nodes)
    has = (f"the cluster has {len(nodes)} node{'s' if len(nodes) != 1 else ''}, {cpus:g} CPUs, {gpus:g} GPUs"
           + (f", at most {max(c for c, _ in nodes):g} CPUs and {max(g for _, g in nodes):g} GPUs on one node"
              if len(nodes) > 1 else ""))
    if not nodes:
        raise BadInput("the Ray cluster has no alive node")
    if gpus_per_actor > 1 and gpus_per_actor != int(gpus_per_actor):
        raise BadParameter("gpus_per_actor", f"{gpus_per_actor:g} GPUs: more than 1 GPU per actor must be a whole number")
    if cpus_per_actor > max(c for c, _ in nodes):
        raise BadParameter("cpus_per_actor", f"{cpus_per_actor:g} CPUs per actor is more than any node has: {has}")
    if gpus_per_actor > 0:
        if gpus == 0:
            raise BadParameter("gpus_per_actor", f"{gpus_per_actor:g} GPUs per actor, but {has}")
        if not any(c >= cpus_per_actor and g >= gpus_per_actor for c, g in nodes):
            raise BadParameter("gpus_per_actor", f"no node has {gpus_per_actor:g} GPUs and {cpus_per_actor:g} CPUs "
                                                 f"for one actor: {has}")
    max_actors = 0
    for node_cpus, node_gpus in nodes:
        fit = math.floor(node_cpus / cpus_per_actor + 1e-9) if cpus_per_actor > 0 else math.inf
        if gpus_per_actor > 0:
            fit = min(fit, math.floor(node_gpus / gpus_per_actor + 1e-9))
        max_actors += int(fit) if fit != math.inf else 0
    if actors is not None and actors > max_actors:
        raise BadParameter("actors", f"{actors} actors of {cpus_per_actor:g} CPUs"
                                     + (f" and {gpus_per_actor:g} GPUs" if gpus_per_actor else "")
                                     + f" do not fit at once (at most {max_actors}): {has}")
    return Capacity(len(nodes), cpus, gpus, max_actors)


def _dashboard_url(context) -> str | None:
    url = getattr(context, "dashboard_url", None) or None
    if url and not url.startswith("http"):
        url = f"http://{url}"
    return url


def _token_auth_enabled() -> bool:
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    return bool(is_token_auth_enabled())


def check_ray_address(address: str | None) -> RayAddress | None:
    """Check what a job needs to use Ray, before any slow work: the address (``address``,
    else ``$RAY_ADDRESS``; None when a local Ray will be started), the token Ray will read
    (:func:`check_token_source`) and that this process's command line and working folder
    can be sent to Ray (UTF-8). BadInput names ``--address``, ``$RAY_ADDRESS`` or the
    variable, and what failed; it takes at most a few seconds."""
    check_token_source()
    _check_utf8_process()
    from_environment = not address and bool(os.environ.get("RAY_ADDRESS"))
    address = (address or os.environ.get("RAY_ADDRESS") or "").strip()
    if not address or address.lower() == "local":
        _check_token_home()
        return None
    try:
        return check_address(address)
    except BadInput as error:
        if from_environment:
            raise BadInput(f"$RAY_ADDRESS: {error}") from None
        raise BadParameter("address", str(error)) from None


def _check_token_home() -> None:
    """A new local Ray reads its token from ~/.ray/auth_token, and writes one there first
    when there is none (unless ``$RAY_AUTH_TOKEN`` or ``$RAY_AUTH_TOKEN_PATH`` names one):
    that folder must exist or be creatable."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    try:
        token = Path.home() / ".ray" / "auth_token"
    except RuntimeError:  # no $HOME and no entry in the user database
        raise BadInput("no home folder ($HOME is not set) for Ray's token ~/.ray/auth_token: "
                       "set $HOME, or $RAY_AUTH_TOKEN_PATH to a token file") from None
    if token.is_file():
        return
    existing = next((folder for folder in token.parents if os.path.lexists(folder)), Path("/"))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise BadInput(f"a local Ray keeps its token in {token}, but {existing} is not a folder this user can "
                       "write: set $HOME, or $RAY_AUTH_TOKEN_PATH to a token file")


def _check_utf8_process() -> None:
    """Ray sends the driver's command line and working folder to the cluster as UTF-8 (and
    raises a UnicodeEncodeError from deep inside ``ray.init`` when a byte is not)."""
    for argument in sys.argv:
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput(f"the argument '{as_bytes(argument)}' is not valid UTF-8: Ray cannot take it") from None
    try:
        folder = os.getcwd()
        folder.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"the working folder '{as_bytes(folder)}' is not valid UTF-8: Ray cannot run from it "
                       "(run dreamctl from another folder)") from None
    except OSError as error:  # removed while we ran in it
        raise BadInput(f"the working folder is gone ({error.strerror}): run dreamctl from an existing folder") from None


def _is_loopback(host: str) -> bool:
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def _ray_init_guarded() -> Iterator[None]:
    """Around ``ray.init``: SIGINT, SIGTERM and SIGHUP wait until it returns (interrupts.held), Ray
    does not replace our SIGTERM handler with its own (``sys.exit(15)``), and the driver's C++
    failure-signal handler (a stack dump on SIGTERM) is not installed. What Ray set up is
    then stopped by the caller's cleanup, never left half-made."""
    from ray._private import ray_constants, utils

    set_sigterm_handler, disable_dumps = utils.set_sigterm_handler, ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER
    utils.set_sigterm_handler = lambda handler: None
    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
    try:
        with interrupts.held():
            yield
    finally:
        utils.set_sigterm_handler = set_sigterm_handler
        ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = disable_dumps


def _authentication_error() -> type[Exception]:
    from ray.exceptions import AuthenticationError

    return AuthenticationError


def _connect(address: RayAddress):
    """``ray.init`` on an address that passed :func:`check_ray_address`."""
    from ray._private import ray_constants

    # On Linux Ray rewrites a 127.0.0.1 address to the machine's routable IP, where a head
    # started with --node-ip-address 127.0.0.1 does not listen (ray.init would retry for
    # minutes): for a loopback head, connect as Ray does on one machine (see _start_local).
    cluster_mode = ray_constants.ENABLE_RAY_CLUSTER
    if _is_loopback(address.host):
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with _ray_init_guarded():
            # No runtime_env here: under `ray job submit` it would replace the job's own.
            return ray.init(address=address.text, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError, _authentication_error()) as error:
        raise BadInput(f"cannot connect to Ray at {address.text}: {str(error).splitlines()[0]}") from None
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode


def private_temp_dir() -> str:
    """A new folder that only this user can enter, for one local Ray's files and sockets (in
    its subfolder :data:`RAY_FOLDER`; Ray's default, /tmp/ray, is shared by every user of the
    machine and writable by all). In ``$TMPDIR`` when its path leaves room for Ray's socket
    paths, else in /tmp; the folders that killed runs left there are removed first."""
    base = tempfile.gettempdir()
    if len(base.encode()) > MAX_TEMP_BASE:
        base = "/tmp"
    remove_abandoned_folders(base)
    try:
        return tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=base)  # mode 0700, a name nobody had
    except OSError as error:
        raise BadInput(f"cannot create a folder for Ray's files in {base} ({error.strerror}); "
                       "set $TMPDIR to a writable folder") from None


def remove_abandoned_folders(base: str) -> None:
    """Remove the private folders in ``base`` that local Rays of killed runs left (kill -9 or
    the OOM killer: nobody stopped their Ray): this user's real folders named like
    :func:`private_temp_dir`'s, unchanged for :data:`ABANDONED_AFTER_S`, where no process
    has a file open (Ray's agents outlive a killed driver by about a minute)."""
    try:
        entries = [entry for entry in os.scandir(base) if entry.name.startswith(TEMP_PREFIX)]
    except OSError:
        return
    for entry in entries:
        try:
            found = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if (stat.S_ISDIR(found.st_mode) and found.st_uid == os.getuid() and not found.st_mode & 0o077
                and time.time() - found.st_mtime > ABANDONED_AFTER_S and not _holding(entry.path)):
            shutil.rmtree(entry.path, ignore_errors=True)  # fd-based: never follows a link inside


def _start_local(num_cpus: int | None, temp_dir: str, dashboard: bool = True):
    """Start a Ray whose every listener is on 127.0.0.1, with token authentication on and
    its files in ``temp_dir`` (a :func:`private_temp_dir`), its processes' temporary files
    too (``$TMPDIR``): Ray ends its workers and its dashboard without their exit handlers,
    which left TensorFlow's autograph modules and a multiprocessing folder in /tmp, ~30
    files a run."""
    from ray._private import ray_constants

    ray_temp = os.path.join(temp_dir, RAY_TEMP)
    os.mkdir(ray_temp, 0o700)
    user_temp = os.environ.get("TMPDIR")
    # Ray enables token authentication for a new local cluster unless RAY_AUTH_MODE says
    # otherwise, and says so at every start: keep the protection always, drop the notice.
    auth_mode = os.environ.pop("RAY_AUTH_MODE", None)
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    # Every Ray process binds its ports to the node's IP, and on Linux Ray turns 127.0.0.1
    # into the machine's routable IP unless clusters are "disabled" (its macOS/Windows
    # mode, read from this constant when the node IP is resolved).
    cluster_mode = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    # A closed terminal sends SIGHUP to its whole process group, Ray's processes with the
    # driver, and they die of it (gcs_server, raylet: no handler), which left the driver
    # waiting on a half-started Ray for ever. Started with SIGHUP blocked (a mask is
    # inherited), they leave the hang-up to the driver, which stops them as for SIGINT;
    # a SIGHUP meanwhile is delivered here when the mask is put back.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        os.environ["TMPDIR"] = ray_temp  # inherited by Ray's processes; this one has its tempdir already
        with _ray_init_guarded():
            context = ray.init(
                "local",  # a new Ray even when RAY_ADDRESS is set (the caller chose to start one)
                num_cpus=num_cpus,
                include_dashboard=dashboard,
                dashboard_host=LOOPBACK,
                runtime_env={"env_vars": WORKER_ENV},
                logging_level=logging.WARNING,
                log_to_driver=False,
                _node_ip_address=LOOPBACK,
                _temp_dir=os.path.join(temp_dir, RAY_FOLDER),
            )
    except _authentication_error() as error:
        raise BadInput(f"cannot start a local Ray: {str(error).splitlines()[0]}") from None
    except OSError as error:  # e.g. ~/.ray not writable for the new token, though the check above passed
        raise BadInput(f"cannot start a local Ray: {error.strerror or error}"
                       + (f": {error.filename}" if error.filename else "")) from None
    finally:
        # Ray's processes inherited these settings at their start; later connections of this
        # process (another session) must see the user's own.
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode
        if auth_mode is not None:
            os.environ["RAY_AUTH_MODE"] = auth_mode
        if user_temp is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = user_temp
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    _tighten_token_file()
    node_ip = context.address_info.get("node_ip_address")
    if node_ip != LOOPBACK or not _token_auth_enabled():
        raise RuntimeError(f"the local Ray came up on {node_ip} with token authentication "
                           f"{'on' if _token_auth_enabled() else 'off'}; refusing to run on it")
    return context


def _tighten_token_file() -> None:
    """Ray writes ~/.ray/auth_token with the umask's mode (often world-readable): the token
    is the only thing between other local users and our loopback ports, so keep it ours."""
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        if token_file.stat().st_mode & 0o077 and token_file.owner() == Path.home().owner():
            token_file.chmod(0o600)
    except (OSError, KeyError, RuntimeError):
        pass  # no token file (token from RAY_AUTH_TOKEN), not ours to change, or no home


def _own_processes() -> list[int]:
    """This process's descendants (Linux /proc; empty elsewhere)."""
    found, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(child) for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def _holding(folder: str) -> list[int]:
    """Processes of this user with a file open under ``folder`` (Ray's agents and workers
    keep their logs there, also after their parent died)."""
    prefix, found = folder.rstrip("/") + "/", []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            descriptors = os.listdir(f"/proc/{entry.name}/fd")
            if any(os.readlink(f"/proc/{entry.name}/fd/{fd}").startswith(prefix) for fd in descriptors):
                found.append(int(entry.name))
        except OSError:
            continue  # ended meanwhile, or not ours to look at
    return found


def _is_ray(pid: int) -> bool:
    """Whether ``pid`` is one of Ray's processes (its command line names Ray: gcs_server,
    raylet, ``ray::IDLE``, the dashboard and its forkserver ...)."""
    try:
        return b"ray" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _running(pids) -> list[int]:
    """The ``pids`` that still run (a zombie has ended)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            alive.append(pid)
    return alive


def _stop_local(temp_dir: str, before: set[int]) -> None:
    """Stop the local Ray started here: ``ray.shutdown``, then whatever of it still runs
    after :data:`STOP_TIMEOUT_S` (Ray's processes among those started since ``before`` was
    taken, and any process holding a file in ``temp_dir``) is killed, and ``temp_dir`` is
    removed."""
    ray.shutdown()

    def leftovers() -> list[int]:
        started = {pid for pid in set(_own_processes()) - before if _is_ray(pid)}
        return _running(started | set(_holding(temp_dir)))

    deadline = time.monotonic() + STOP_TIMEOUT_S
    while (remaining := leftovers()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in remaining:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for _ in range(20):  # a process killed a moment ago may still be closing a log file
        shutil.rmtree(temp_dir, ignore_errors=True)
        if not os.path.lexists(temp_dir):
            break
        time.sleep(0.1)


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, dashboard: bool = True) -> Iterator[RayInfo]:
    """Connect to (or start) Ray for the duration of a job and yield what was found.

    ``address``: as ``--address`` (host:port, ray://host:port, auto, or local = start one
    here); None = ``$RAY_ADDRESS``, else a local Ray with ``num_cpus`` CPUs (None = all) and
    a dashboard unless ``dashboard`` is False. A wrong or unreachable address raises
    BadInput within a few seconds. A local Ray is stopped when the block ends, however it
    ends (a signal included): no process of it is left, nor its files.
    """
    interrupts.mark_started()
    temp_dir, before, context = None, set(), None
    if ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
    elif (checked := check_ray_address(address)) is not None:
        address = checked.text
        context = _connect(checked)
    else:
        address = None
        before = set(_own_processes())
        temp_dir = private_temp_dir()
    try:
        if temp_dir is not None:
            context = _start_local(num_cpus, temp_dir, dashboard)
        resources = ray.cluster_resources()
        yield RayInfo(
            address=address or "local",
            dashboard_url=_dashboard_url(context) if context is not None else None,
            started_here=temp_dir is not None,
            cpus=float(resources.get("CPU", 0)),
            gpus=float(resources.get("GPU", 0)),
            token_auth=_token_auth_enabled(),
            temp_dir=temp_dir,
        )
    finally:
        if temp_dir is not None:
            with interrupts.held():
                _stop_local(temp_dir, before)
