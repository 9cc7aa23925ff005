"""One writer per run folder: a lock naming its owner (pid, host, start time, token).

:class:`RunLock` is a file in a local run folder; :class:`ObjectLock` an object on an object
store (cluster/object_store.py), which has no atomic create.

The lock is created exclusively: its complete record is written to a unique hidden file,
then hard-linked to the lock's name (``link`` fails when the name exists, as
``O_CREAT | O_EXCL`` does, and a reader never sees a half-written record). Where hard links
are not supported it is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and written.

A lock is stale when its owner ran on this host and that process is gone: no such pid, a
zombie, a different process under a reused pid (its start time differs), or the machine
rebooted since (another boot id). A stale lock is taken over with a warning; a live one,
or one from another host (whose processes we cannot see), is never touched.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import stat
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from core.errors import BadInput, JobFailed

if TYPE_CHECKING:
    from cluster.object_store import ObjectBackend

# A lock file that does not parse was not written by the link path (its records are whole);
# the O_EXCL fallback writes right after creating, so give such a writer this long.
UNREADABLE_GRACE_SECONDS = 10.0


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process_state(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks since boot) of ``pid`` from /proc, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (command) ": state is field 3
    return fields[0], fields[19]  # starttime is field 22


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def owner_record() -> dict:
    """The lock record of this process."""
    state = _process_state(os.getpid())
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "process_start": state[1] if state else None,
        "boot_id": _boot_id(),
        "token": secrets.token_hex(8),
    }


def stale_reason(owner: dict) -> str | None:
    """Why the process named by ``owner`` is gone, or None when it may still run."""
    if owner.get("host") != socket.gethostname():
        return None
    boot_id = _boot_id()
    if owner.get("boot_id") and boot_id and owner["boot_id"] != boot_id:
        return "this machine restarted since it was taken"
    pid = int(owner["pid"])
    if not 0 < pid < 1 << 22:  # beyond Linux's pid_max: no process of ours ever had it
        return f"pid {pid} cannot exist"
    if not _pid_exists(pid):
        return f"pid {pid} is gone"
    state = _process_state(pid)
    if state is not None:
        if state[0] in ("Z", "X"):
            return f"pid {pid} has exited"
        if owner.get("process_start") and state[1] != owner["process_start"]:
            return f"pid {pid} is now another process"
    return None


def describe(owner: dict) -> str:
    return f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('since')}"


class RunLock:
    """The lock file at ``path``; ``acquire`` raises :class:`BadInput` when it is held."""

    def __init__(self, path: Path, warn: Callable[[str], None] = lambda message: None):
        self.path = Path(path)
        self.warn = warn
        self.owner: dict | None = None  # our record while we hold the lock

    @property
    def held(self) -> bool:
        return self.owner is not None

    def acquire(self, what: str = "") -> None:
        """Take the lock, taking over a stale one; ``what`` names the locked thing in messages."""
        what = what or str(self.path.parent)
        record = owner_record()
        data = json.dumps(record).encode()
        for _ in range(5):  # each round: create, or find a holder that vanished / was stale
            if self._create(data):
                self.owner = record
                return
            seen = self._read()
            if seen is None:
                continue  # released between our attempt and our look: try again
            owner = self._parse(seen)
            if owner is None:
                if not stat.S_ISREG(self.path.lstat().st_mode):
                    raise BadInput(f"{what}: {self.path} is not a regular file; remove it to run (a lock is a file)")
                age = time.time() - self.path.lstat().st_mtime
                if age < UNREADABLE_GRACE_SECONDS:
                    raise BadInput(f"{what} is being locked by another process right now (lock {self.path})")
                reason = "its lock file is unreadable"
            else:
                reason = stale_reason(owner)
                if reason is None:
                    raise BadInput(f"{what} is in use by {describe(owner)} (lock {self.path}); "
                                   f"wait for it to finish, or delete the lock if that process is gone")
            if self._take_away(seen):
                held_by = describe(owner) if owner else "an unknown owner"
                self.warn(f"took over the stale lock of {what} held by {held_by}: {reason}")
        raise BadInput(f"{what}: could not take the lock {self.path} (other processes keep taking it)")

    def confirm(self) -> None:
        """Nothing to do: no other process can take a held local lock from us."""

    def holder_alive(self) -> bool:
        """True when a lock exists and its writer may still be writing."""
        seen = self._read()
        if seen is None:
            return False
        owner = self._parse(seen)
        return owner is None or stale_reason(owner) is None  # unparsable: being written right now

    def release(self) -> None:
        """Remove the lock if it is still ours (idempotent)."""
        if self.owner is None:
            return
        seen = self._read()
        owner = self._parse(seen) if seen is not None else None
        if owner is not None and owner.get("token") == self.owner["token"]:
            self.path.unlink(missing_ok=True)
        self.owner = None

    # ----- file operations --------------------------------------------------------------
    def _create(self, data: bytes) -> bool:
        """Create the lock holding ``data`` exclusively; False when it exists."""
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}.new")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        descriptor = os.open(temporary, flags, 0o644)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            try:
                os.link(temporary, self.path, follow_symlinks=False)
                return True
            except FileExistsError:
                return False
            except OSError:  # no hard links on this file system
                pass
        finally:
            temporary.unlink(missing_ok=True)
        try:
            descriptor = os.open(self.path, flags, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        return True

    def _read(self) -> bytes | None:
        return self._read_path(self.path)

    @staticmethod
    def _parse(data: bytes) -> dict | None:
        try:
            owner = json.loads(data)
            int(owner["pid"])
            return owner
        except (ValueError, KeyError, TypeError, OverflowError):
            return None

    def _take_away(self, seen: bytes) -> bool:
        """Remove the stale lock whose content was ``seen``, unless another process replaced
        it meanwhile (then put that one back). True when the stale lock was removed."""
        aside = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}.stale")
        try:
            os.rename(self.path, aside)  # atomic: of two processes taking over, one moves it
        except FileNotFoundError:
            return False
        try:
            moved = self._read_path(aside)
            if moved == seen:
                return True
            try:  # we moved a fresh lock of another process: restore it unless a third holds it
                os.link(aside, self.path, follow_symlinks=False)
            except FileExistsError:
                pass
            return False
        finally:
            aside.unlink(missing_ok=True)

    @staticmethod
    def _read_path(path: Path) -> bytes | None:
        """The file's bytes; None when missing; b"" for anything but a regular file (a link,
        a FIFO, a folder planted at the lock's name: its content means nothing)."""
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError:
            return b""
        with os.fdopen(descriptor, "rb") as file:
            return file.read() if stat.S_ISREG(os.fstat(descriptor).st_mode) else b""


class ObjectLock:
    """One writer per run folder on an object store, without an atomic create.

    ``acquire``: when the lock object ``<run>/_lock`` is missing or stale, write our record
    (unique token), wait ``settle_seconds``, read it back: ours when our token is still there
    (of writers that raced, the last PUT wins and the others back off). While held, a thread
    rewrites the record every ``heartbeat_seconds``; a lock whose object is older than
    ``stale_seconds`` (or whose owner ran on this host and is gone) is stale and taken over.
    :meth:`confirm` raises JobFailed when another process has taken the lock since.
    docs/CLUSTER.md, "Object storage", says what this does and does not guarantee."""

    settle_seconds = 2.0
    heartbeat_seconds = 10.0
    stale_seconds = 60.0

    def __init__(self, backend: ObjectBackend, run: str, warn: Callable[[str], None] = lambda message: None):
        self.backend, self.key, self.warn = backend, f"{run}/_lock", warn
        self.owner: dict | None = None
        self.lost: str | None = None  # why the heartbeat found the lock taken away
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self.owner is not None

    def acquire(self, what: str) -> None:
        for _ in range(3):
            seen = self._read()
            took_over = None
            if seen is not None:
                owner, age = seen
                reason = self._stale_reason(owner, age)
                if reason is None:
                    raise BadInput(f"{what} is in use by {describe(owner)} (lock {self.backend.show(self.key)}, "
                                   f"heartbeat {age:.0f} s ago); wait for it to finish, or delete the lock if that "
                                   f"process is gone")
                took_over = f"took over the stale lock of {what} held by {describe(owner)}: {reason}"
            record = {**owner_record(), "heartbeat": time.time()}
            self.backend.write(self.key, json.dumps(record).encode())
            time.sleep(self.settle_seconds)
            now = self._read()
            if now is not None and now[0].get("token") == record["token"]:
                self.owner, self.lost = record, None
                if took_over:
                    self.warn(took_over)
                self._stop.clear()
                self._heartbeat = threading.Thread(target=self._beat, name="dreamctl-lock-heartbeat", daemon=True)
                self._heartbeat.start()
                return
        raise BadInput(f"{what}: could not take the lock {self.backend.show(self.key)} (other processes keep taking it)")

    def confirm(self) -> None:
        """Raise JobFailed unless the lock object still holds our token."""
        if self.lost is None:
            seen = self._read()
            if seen is None or seen[0].get("token") != self.owner["token"]:
                self.lost = f"now held by {describe(seen[0])}" if seen else "its lock object was deleted"
        if self.lost is not None:
            raise JobFailed(f"lost the lock of {self.backend.show(self.key)}: {self.lost}; "
                            f"another dreamctl writes this run (its committed parts stay valid)")

    def release(self) -> None:
        """Stop the heartbeat and delete the lock object if it is still ours (idempotent)."""
        if self.owner is None:
            return
        self._stop.set()
        if self._heartbeat is not None and self._heartbeat is not threading.current_thread():
            self._heartbeat.join()
        try:
            seen = self._read()
            if seen is not None and seen[0].get("token") == self.owner["token"]:
                self.backend.delete(self.key)
        except (OSError, JobFailed):  # unreachable now: the lock goes stale after stale_seconds
            pass
        self.owner = None

    def holder_alive(self) -> bool:
        """True when a lock object exists and its writer may still be writing (not stale)."""
        seen = self._read()
        return seen is not None and self._stale_reason(*seen) is None

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                seen = self._read()
                owner = self.owner
                if owner is None:
                    return
                if seen is None or seen[0].get("token") != owner["token"]:
                    self.lost = f"now held by {describe(seen[0])}" if seen else "its lock object was deleted"
                    return
                self.backend.write(self.key, json.dumps({**owner, "heartbeat": time.time()}).encode())
            except (OSError, JobFailed):  # a network hiccup: try again at the next beat
                continue

    def _read(self) -> tuple[dict, float] | None:
        """(owner record, seconds since the lock object was last written) or None."""
        data = self.backend.read(self.key)
        if data is None:
            return None
        mtime = self.backend.call(self.backend.fs.get_file_info, self.key).mtime
        age = time.time() - mtime.timestamp() if mtime is not None else 0.0
        owner = RunLock._parse(data)
        return owner or {"pid": -1, "host": "?", "since": "?", "token": None}, age

    def _stale_reason(self, owner: dict, age: float) -> str | None:
        if owner.get("host") == socket.gethostname() and int(owner.get("pid", -1)) >= 0:
            return stale_reason(owner)  # its process can be seen from here
        if age > self.stale_seconds:
            return f"no heartbeat for {age:.0f} s (stale after {self.stale_seconds:.0f} s)"
        return None
