"""The processes of a run as Linux's /proc shows them (a process tree, the private folders of
its local Rays, its listening sockets), and ``dreamctl`` as a real process (:class:`Dreamctl`)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

LOOPBACK_IPS = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
DREAMCTL = Path(sys.executable).with_name("dreamctl")
STARTUP_TIMEOUT_S = 240  # TensorFlow import, a local Ray and actors on a busy 2-core machine


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (Linux /proc)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # the process just ended
        for task in tasks:
            try:
                todo += [int(child) for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except OSError:
                pass  # the thread just ended
    return found


def private_ray_folders(pids) -> set[str]:
    """The private folders (cluster.runtime.private_temp_dir) of the local Rays whose
    processes are among ``pids``, read from their command lines."""
    found = set()
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        found.update(re.findall(r"(/[^\0 ]*?/dreamctl-ray-[^/\0 ]+)/ray/", command))
    return found


def listening_sockets(pids: list[int]) -> list[dict]:
    """Listening TCP sockets (IPv4 and IPv6) held by ``pids``: pid, command, ip, port."""
    by_inode = {}
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)  # 32-bit words in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            by_inode[fields[9]] = (socket.inet_ntop(family, raw), int(hex_port, 16))
    found = []
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue  # ended meanwhile
        for link in links:
            if link.startswith("socket:[") and link[8:-1] in by_inode:
                ip, port = by_inode[link[8:-1]]
                found.append({"pid": pid, "command": os.path.basename(command), "ip": ip, "port": port})
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def group_members(pgid: int) -> list[int]:
    """Running processes of the process group ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                found.append(int(entry))
    return found


def as_a_shell_starts_it(ignore_hangup: bool) -> Callable[[], None]:
    """What the child starts with, as a shell in a terminal starts a command: SIGINT, SIGTERM and
    SIGHUP at their defaults and not blocked, whatever the test process has (an ignored or
    blocked signal is inherited through exec; a suite started with ``nohup … &`` ignores
    SIGINT), SIGHUP ignored when ``nohup`` runs it."""

    def setup() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
        if ignore_hangup:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    return setup


class Dreamctl:
    """``dreamctl ARGS`` as a real process in ``folder``, started as a shell starts it (a process
    group of its own, default signal dispositions) with its own local Ray (127.0.0.1); notes its
    process tree and its Ray's private folder while it runs. Signal only its own pids; call
    :meth:`end` after the assertions."""

    def __init__(self, folder: Path, *args: str, stdout=None, stderr=None, env: dict | None = None,
                 ignore_hangup: bool = False):
        environment = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
        environment.update({"TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
        command = [str(DREAMCTL)] if DREAMCTL.exists() else [sys.executable, "-c", "from cli.app import run; run()"]
        self.stderr_path = folder / f"dreamctl-{time.monotonic_ns()}.err"
        with self.stderr_path.open("w") as default_stderr:
            self.process = subprocess.Popen([*command, *args], cwd=folder, env=environment, start_new_session=True,
                                            stdout=subprocess.DEVNULL if stdout is None else stdout,
                                            stderr=default_stderr if stderr is None else stderr,
                                            preexec_fn=as_a_shell_starts_it(ignore_hangup))
        self.pid = self.process.pid
        self.tree: set[int] = {self.pid}
        self.temp_dirs: set[str] = set()  # its local Ray's private folder (kill -9 leaves it)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def watch(self) -> None:
        """Note the process tree and the private folder of its Ray (from gcs_server's command line)."""
        pids = process_tree(self.pid)
        self.tree.update(pids)
        self.temp_dirs.update(private_ray_folders(pids))

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not ready():
            assert self.process.poll() is None, f"dreamctl ended before {what} ({self.process.returncode}): {self.stderr[-2000:]}"
            assert time.monotonic() < deadline, f"no {what} within {STARTUP_TIMEOUT_S} s"
            self.watch()
            time.sleep(0.05)
        self.watch()

    def children(self) -> list[int]:
        return [pid for pid in process_tree(self.pid) if pid != self.pid]

    def has_ray_starting(self) -> bool:
        return any(b"gcs_server" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in self.children()
                   if os.path.exists(f"/proc/{pid}/cmdline"))

    def left_behind(self, grace_s: float = 5.0) -> list[int]:
        """The run's processes still running ``grace_s`` after it ended (its tree and its group)."""
        deadline = time.monotonic() + grace_s
        while True:
            left = sorted({pid for pid in self.tree - {self.pid} if running(pid)} | set(group_members(self.pid)))
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)

    def end(self, grace_s: float = 30.0) -> None:
        """Kill the process if it still runs, then whatever of its tree and group is left
        ``grace_s`` later, and remove its Ray's private folder. A driver killed with SIGKILL
        leaves Ray's dashboard and runtime-env agents, which stop by themselves about a minute
        later (seen: 62 s): pass ``grace_s=0`` not to wait for that."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pid in self.left_behind(grace_s=grace_s):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for folder in self.temp_dirs:
            shutil.rmtree(folder, ignore_errors=True)
