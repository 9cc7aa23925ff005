"""One writer per run folder: a lock file naming its owner (pid, host, start time).

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
import time
from pathlib import Path
from typing import Callable

from core.errors import BadInput

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
        try:
            descriptor = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError:  # a link planted at the lock's name: its content means nothing
            return b""
        with os.fdopen(descriptor, "rb") as file:
            return file.read()

    @staticmethod
    def _parse(data: bytes) -> dict | None:
        try:
            owner = json.loads(data)
            int(owner["pid"])
            return owner
        except (ValueError, KeyError, TypeError):
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
    def _read_path(path: Path) -> bytes:
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return b""
        with os.fdopen(descriptor, "rb") as file:
            return file.read()
