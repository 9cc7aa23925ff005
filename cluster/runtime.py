"""Attach to Ray: ``--address``, else ``RAY_ADDRESS``, else a local Ray of our own.

An address is checked before ``ray.init`` (which otherwise retries an unreachable cluster
for many minutes, deaf to SIGTERM): its form, its host name, a TCP connection and, for
the gRPC ports (GCS ``host:6379``, Ray client ``ray://host:10001``), an HTTP/2 greeting,
each within :data:`CONNECT_TIMEOUT_S`. A local Ray started here listens on 127.0.0.1 only
and requires Ray's token; it is stopped when the job ends. See docs/SECURITY.md.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import signal
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import ray

from core.errors import BadInput, BadParameter

# Workers inherit these: keep TensorFlow's C++ log quiet in every actor.
WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}

CONNECT_TIMEOUT_S = 5.0  # per step of the address check (name lookup, TCP, gRPC greeting)
RAY_CLIENT_PORT = 10001  # Ray's default for ray://host (no port given)
LOOPBACK = "127.0.0.1"

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
    """Parse ``address`` and check that a gRPC server answers there, each network step
    within ``timeout_s`` seconds. Raises BadInput naming the address and what failed."""
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
    return parsed


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
    """Check the address a job will use (``address``, else ``$RAY_ADDRESS``) before any
    slow work: None when a local Ray will be started. BadInput names ``--address`` or
    ``$RAY_ADDRESS``, the address, and what failed; it takes at most a few seconds."""
    from_environment = not address and bool(os.environ.get("RAY_ADDRESS"))
    address = (address or os.environ.get("RAY_ADDRESS") or "").strip()
    if not address or address.lower() == "local":
        return None
    try:
        return check_address(address)
    except BadInput as error:
        if from_environment:
            raise BadInput(f"$RAY_ADDRESS: {error}") from None
        raise BadParameter("address", str(error)) from None


def _is_loopback(host: str) -> bool:
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        # No runtime_env here: under `ray job submit` it would replace the job's own.
        return ray.init(address=address.text, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise BadInput(f"cannot connect to Ray at {address.text}: {str(error).splitlines()[0]}") from None
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode


def _start_local(num_cpus: int | None):
    """Start a Ray whose every listener is on 127.0.0.1, with token authentication on."""
    from ray._private import ray_constants

    # Ray enables token authentication for a new local cluster unless RAY_AUTH_MODE says
    # otherwise, and says so at every start: keep the protection always, drop the notice.
    auth_mode = os.environ.pop("RAY_AUTH_MODE", None)
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    # Every Ray process binds its ports to the node's IP, and on Linux Ray turns 127.0.0.1
    # into the machine's routable IP unless clusters are "disabled" (its macOS/Windows
    # mode, read from this constant when the node IP is resolved).
    cluster_mode = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        context = ray.init(
            "local",  # a new Ray even when RAY_ADDRESS is set (the caller chose to start one)
            num_cpus=num_cpus,
            include_dashboard=True,
            dashboard_host=LOOPBACK,
            runtime_env={"env_vars": WORKER_ENV},
            logging_level=logging.WARNING,
            log_to_driver=False,
            _node_ip_address=LOOPBACK,
        )
    finally:
        # Ray's processes inherited both settings at their start; later connections of this
        # process (another session) must see the user's own.
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode
        if auth_mode is not None:
            os.environ["RAY_AUTH_MODE"] = auth_mode
    _tighten_token_file()
    node_ip = context.address_info.get("node_ip_address")
    if node_ip != LOOPBACK or not _token_auth_enabled():
        ray.shutdown()
        raise RuntimeError(f"the local Ray came up on {node_ip} with token authentication "
                           f"{'on' if _token_auth_enabled() else 'off'}; refusing to run on it")
    return context


def _tighten_token_file() -> None:
    """Ray writes ~/.ray/auth_token with the umask's mode (often world-readable): the token
    is the only thing between other local users and our loopback ports, so keep it ours."""
    from pathlib import Path

    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        if token_file.stat().st_mode & 0o077 and token_file.owner() == Path.home().owner():
            token_file.chmod(0o600)
    except (OSError, KeyError):
        pass  # no token file (token from RAY_AUTH_TOKEN) or not ours to change


def _give_back_sigterm(handler) -> None:
    """``ray.init`` replaces the SIGTERM handler (the driver's core worker installs one that
    aborts the process: exit -6 and a stack dump): reinstall the caller's own Python handler,
    if it set one (dreamctl turns SIGTERM into an interrupt: exit 3, finished shards kept)."""
    if callable(handler) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[RayInfo]:
    """Connect to (or start) Ray for the duration of a job and yield what was found.

    ``address``: as ``--address`` (host:port, ray://host:port, auto, or local = start one
    here); None = ``$RAY_ADDRESS``, else a local Ray with ``num_cpus`` CPUs (None = all).
    A wrong or unreachable address raises BadInput within a few seconds.
    """
    started_here = False
    sigterm_handler = signal.getsignal(signal.SIGTERM)
    if ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        context = None
    elif (checked := check_ray_address(address)) is not None:
        address = checked.text
        context = _connect(checked)
    else:
        address = None
        context = _start_local(num_cpus)
        started_here = True
    _give_back_sigterm(sigterm_handler)
    try:
        resources = ray.cluster_resources()
        yield RayInfo(
            address=address or "local",
            dashboard_url=_dashboard_url(context) if context is not None else None,
            started_here=started_here,
            cpus=float(resources.get("CPU", 0)),
            gpus=float(resources.get("GPU", 0)),
            token_auth=_token_auth_enabled(),
        )
    finally:
        if started_here:
            ray.shutdown()
