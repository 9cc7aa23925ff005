"""Results under a pyarrow filesystem URI (``s3://bucket/prefix``, ``gs://bucket/prefix``):
the same layout, commit records, verified resume and one-writer lock as cluster/store.py.

Object stores have no rename, no ``O_EXCL`` and no links, so the guarantees are kept another way:

- An object PUT is atomic (a reader sees the whole object or none), so a part is written
  straight to its final key, then its commit record; a part without a record, or whose bytes
  no longer match it, is never reused (the same checks as a local run).
- ``<job>/latest`` is a small object holding the run id (readers follow it and the local link).
- Jobs write figures to ``path(name)``, a local staging folder; :meth:`ObjectRunStore.publish`
  uploads them before ``_SUCCESS`` is written.
- The run lock (:class:`ObjectLock`): pyarrow exposes no conditional write (``If-None-Match``),
  so it is a lock object with a unique token, confirmed after a settle delay, kept alive by a
  heartbeat and checked before every commit record. docs/CLUSTER.md, "Object storage", says
  what this does and does not guarantee.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from cluster.lock import describe, owner_record, stale_reason
from cluster.store import COMMITS, LATEST, LOCK, MANIFEST, NODE_KEY, SUCCESS, PartChanged, RunStore, versions
from core.errors import BadInput, BadParameter, JobFailed

if TYPE_CHECKING:  # jobs.base imports Keras
    from jobs.base import Shard


class ObjectURL(str):
    """A result's address on an object store, printed as is; ``name`` and ``suffix`` as a Path has."""

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        name = self.name
        return name[name.rindex("."):] if "." in name.lstrip(".") else ""


@dataclass(frozen=True)
class Location:
    """A folder on a pyarrow filesystem: ``base`` is the filesystem path (``bucket/prefix``),
    ``display`` the URI without its query (options such as the endpoint) for messages."""

    filesystem: pafs.FileSystem
    base: str
    display: str

    def key(self, *names: str) -> str:
        return "/".join([self.base, *names]) if names else self.base

    def url(self, *names: str) -> ObjectURL:
        return ObjectURL("/".join([self.display, *names]) if names else self.display)

    def parent(self) -> Location:
        return Location(self.filesystem, self.base.rsplit("/", 1)[0], self.display.rsplit("/", 1)[0])

    def child(self, *names: str) -> Location:
        return Location(self.filesystem, self.key(*names), self.url(*names))

    # ----- objects ------------------------------------------------------------------
    def read(self, *names: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        try:
            with self.filesystem.open_input_stream(self.key(*names)) as stream:
                return stream.read()
        except FileNotFoundError:
            return None

    def write(self, data: bytes, *names: str) -> None:
        """One PUT: the object appears whole or not at all."""
        with self.filesystem.open_output_stream(self.key(*names)) as stream:
            stream.write(data)

    def delete(self, *names: str) -> None:
        try:
            self.filesystem.delete_file(self.key(*names))
        except FileNotFoundError:
            pass

    def info(self, *names: str) -> pafs.FileInfo:
        return self.filesystem.get_file_info(self.key(*names))

    def entries(self, *names: str) -> list[pafs.FileInfo]:
        """The objects and folders directly in the folder (none when it does not exist)."""
        selector = pafs.FileSelector(self.key(*names), recursive=False, allow_not_found=True)
        return self.filesystem.get_file_info(selector)

    def files(self, *names: str) -> list[str]:
        """Paths of every object under the folder, relative to it ('' when there is none)."""
        prefix = self.key(*names)
        selector = pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
        return sorted(info.path[len(prefix) + 1:] for info in self.filesystem.get_file_info(selector)
                      if info.type == pafs.FileType.File)


def open_location(uri: str) -> Location:
    """The filesystem and folder a URI names; BadInput when pyarrow cannot open it (unknown
    scheme, bad query option)."""
    try:
        filesystem, base = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, ValueError, OSError) as error:
        raise BadInput(f"{_without_query(uri)}: {_first_line(error)}") from None
    return Location(filesystem, base.rstrip("/"), _without_query(uri).rstrip("/"))


def check_location(uri: str, parameter: str = "out") -> None:
    """Fail fast (BadParameter, one line) when the URI's bucket does not exist or its endpoint
    cannot be reached: checked before any model is trained or Ray is started."""
    try:
        location = open_location(uri)
    except BadInput as error:
        raise BadParameter(parameter, str(error)) from None
    bucket = location.base.split("/", 1)[0]
    try:
        found = location.filesystem.get_file_info(bucket)
    except OSError as error:
        raise BadParameter(parameter, f"cannot reach {location.display}: {_first_line(error)}") from None
    if found.type != pafs.FileType.Directory:
        raise BadParameter(parameter, f"bucket {bucket!r} of {location.display} does not exist")


def _without_query(uri: str) -> str:
    """The URI as shown to users: no query (endpoint options) and no user info (keys)."""
    parts = urlsplit(uri)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# ----- the lock ---------------------------------------------------------------------------
class ObjectLock:
    """One writer per run folder on an object store, without an atomic create.

    ``acquire``: when the lock object is missing or stale, write our record (unique token),
    wait ``settle_seconds``, read it back: ours when our token is still there (of writers that
    raced, the last PUT wins and the others back off). While held, a thread rewrites the record
    every ``heartbeat_seconds``; a lock whose object is older than ``stale_seconds`` (or whose
    owner ran on this host and is gone) is stale and taken over. :meth:`confirm` raises
    JobFailed when another process has taken the lock since."""

    settle_seconds = 2.0
    heartbeat_seconds = 10.0
    stale_seconds = 60.0

    def __init__(self, location: Location, warn: Callable[[str], None] = lambda message: None):
        self.location = location  # the run folder; the lock is its LOCK object
        self.warn = warn
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
                    raise BadInput(f"{what} is in use by {describe(owner)} (lock {self.location.url(LOCK)}, "
                                   f"heartbeat {age:.0f} s ago); wait for it to finish, or delete the lock if that "
                                   f"process is gone")
                took_over = f"took over the stale lock of {what} held by {describe(owner)}: {reason}"
            record = {**owner_record(), "heartbeat": time.time()}
            self.location.write(json.dumps(record).encode(), LOCK)
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
        raise BadInput(f"{what}: could not take the lock {self.location.url(LOCK)} (other processes keep taking it)")

    def confirm(self) -> None:
        """Raise JobFailed unless the lock object still holds our token."""
        if self.lost is None:
            seen = self._read()
            if seen is None or seen[0].get("token") != self.owner["token"]:
                self.lost = f"now held by {describe(seen[0])}" if seen else "its lock object was deleted"
        if self.lost is not None:
            raise JobFailed(f"lost the lock of {self.location.display}: {self.lost}; "
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
                self.location.delete(LOCK)
        except OSError:  # unreachable now: the lock goes stale after stale_seconds
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
                self.location.write(json.dumps({**owner, "heartbeat": time.time()}).encode(), LOCK)
            except OSError:  # a network hiccup: try again at the next beat
                continue

    def _read(self) -> tuple[dict, float] | None:
        """(owner record, seconds since the lock object was last written) or None."""
        data = self.location.read(LOCK)
        if data is None:
            return None
        info = self.location.info(LOCK)
        age = time.time() - info.mtime.timestamp() if info.mtime is not None else 0.0
        try:
            owner = json.loads(data)
            int(owner["pid"])
        except (ValueError, KeyError, TypeError):
            owner = {"pid": -1, "host": "?", "since": "?", "token": None}
        return owner, age

    def _stale_reason(self, owner: dict, age: float) -> str | None:
        if owner.get("host") == socket.gethostname() and int(owner.get("pid", -1)) >= 0:
            return stale_reason(owner)  # its process can be seen from here
        if age > self.stale_seconds:
            return f"no heartbeat for {age:.0f} s (stale after {self.stale_seconds:.0f} s)"
        return None


# ----- the store --------------------------------------------------------------------------
class ObjectRunStore(RunStore):
    """:class:`~cluster.store.RunStore` on a pyarrow filesystem URI: ``<uri>/<job>/<run_id>``.

    ``run_dir`` is the run's URI (an :class:`ObjectURL`); parts, records, manifest and
    ``_SUCCESS`` are objects; :meth:`path` is a local staging file uploaded by :meth:`publish`."""

    def __init__(self, uri: str, job: str, run_id: str, metadata: dict,
                 warn: Callable[[str], None] = lambda message: None):
        self.location = open_location(uri)
        self.job_location = self.location.child(job)
        self.run_location = self.job_location.child(run_id)
        self.root = self.location.display
        self.job_dir = self.job_location.display
        self.run_dir = self.run_location.display
        self.run_id = run_id
        self.metadata = metadata
        self.warn = warn
        self.nodes: dict[str, dict[str, str]] = {}
        self._staging: Path | None = None
        store = weakref.ref(self)
        self._lock = ObjectLock(self.run_location, lambda message: store() and store().warn(message))
        weakref.finalize(self, self._lock.release)

    # ----- lifecycle --------------------------------------------------------------------
    def open(self, fresh: bool) -> int:
        """Take the run's lock, delete the run's objects when ``fresh``; return how many
        part objects exist. BadInput when another process holds the run."""
        if not self._lock.held:
            self._lock.acquire(f"run {self.run_dir}")
        try:
            if fresh:
                for name in self.run_location.files():
                    if name != LOCK:
                        self.run_location.delete(name)
            self.run_location.delete(SUCCESS)
            return sum(1 for name in self.run_location.files()
                       if name.count("/") == 1 and name.split("/")[1].startswith("part-"))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._lock.release()
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def write_manifest(self, shards: dict[str, list[Shard]], status: str) -> None:
        self._require_lock()
        manifest = {
            "job": self.job_location.url().name,
            "run_id": self.run_id,
            "status": status,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **self.metadata,
            "versions": versions(),
            "phases": {phase: [s.shard_id for s in phase_shards] for phase, phase_shards in shards.items()},
            **({"nodes": self.nodes} if self.nodes else {}),
        }
        self.run_location.write(json.dumps(manifest, indent=2, default=str).encode(), MANIFEST)

    def publish(self, outputs: list) -> list:
        """Upload every file written under :meth:`path` to the run folder; return the
        outputs' URIs (call before :meth:`mark_success`)."""
        self._require_lock()
        if self._staging is None:
            return list(outputs)
        for file in sorted(p for p in self._staging.rglob("*") if p.is_file()):
            self.run_location.write(file.read_bytes(), *file.relative_to(self._staging).parts)
        return [self.run_location.url(*Path(p).relative_to(self._staging).parts)
                if isinstance(p, Path) and p.is_relative_to(self._staging) else p for p in outputs]

    def mark_success(self) -> None:
        """Write ``_SUCCESS``, then the ``<job>/latest`` object naming this run."""
        self._require_lock()
        self._lock.confirm()
        self.run_location.write(b"", SUCCESS)
        self.job_location.write(self.run_id.encode(), LATEST)

    @property
    def succeeded(self) -> bool:
        return self.run_location.info(SUCCESS).type == pafs.FileType.File

    # ----- parts ------------------------------------------------------------------------
    def phase_dir(self, phase: str) -> ObjectURL:
        return self.run_location.url(phase)

    def part_path(self, phase: str, shard: Shard) -> ObjectURL:
        return self.run_location.url(phase, f"part-{shard.shard_id}.parquet")

    def commit_path(self, phase: str, shard: Shard) -> ObjectURL:
        return self.run_location.url(COMMITS, phase, f"{shard.shard_id}.json")

    def _part_names(self, phase: str, shard: Shard) -> tuple[tuple[str, str], tuple[str, str, str]]:
        return (phase, f"part-{shard.shard_id}.parquet"), (COMMITS, phase, f"{shard.shard_id}.json")

    def is_done(self, phase: str, shard: Shard) -> bool:
        """As RunStore.is_done: True when the part matches its commit record; a part that
        does not is deleted (one warning) and recomputed."""
        self._require_lock()
        part, record = self._part_names(phase, shard)
        if self.run_location.info(*part).type == pafs.FileType.NotFound and \
                self.run_location.info(*record).type == pafs.FileType.NotFound:
            return False
        try:
            self._verified_bytes(phase, shard)
            return True
        except PartChanged as problem:
            self.warn(f"{phase}/{part[-1]}: {problem}; recomputing it")
            self.run_location.delete(*part)
            self.run_location.delete(*record)
            return False

    def _verified_bytes(self, phase: str, shard: Shard) -> bytes:
        """The part's bytes, checked against its commit record; PartChanged says why not."""
        part, record_names = self._part_names(phase, shard)
        data = self.run_location.read(*part)
        if data is None:
            raise PartChanged("is missing (its commit record exists)")
        record_bytes = self.run_location.read(*record_names)
        if record_bytes is None:
            raise PartChanged("has no commit record (written before its commit finished, or by an older dreamctl)")
        try:
            record = json.loads(record_bytes)
        except ValueError:
            raise PartChanged("its commit record is unreadable") from None
        if not isinstance(record, dict) or record.get("shard_id") != shard.shard_id:
            named = record.get("shard_id") if isinstance(record, dict) else None
            raise PartChanged(f"its commit record names shard {named!r}, not {shard.shard_id!r}")
        digest = hashlib.sha256(data).hexdigest()
        if digest != record.get("sha256") or len(data) != record.get("bytes"):
            raise PartChanged(f"its content changed since its commit (sha256 {digest[:12]}, "
                              f"committed {str(record.get('sha256'))[:12]})")
        try:
            rows = pq.read_metadata(pa.BufferReader(data)).num_rows
        except (OSError, pa.ArrowInvalid):
            raise PartChanged("is not readable Parquet") from None
        if rows != shard.n_rows or record.get("rows") != shard.n_rows:
            raise PartChanged(f"has {rows} rows, the shard writes {shard.n_rows}")
        if record.get("node"):
            self.nodes.setdefault(phase, {})[shard.shard_id] = record["node"]
        return data

    def write_part(self, phase: str, shard: Shard, table: pa.Table) -> None:
        """PUT the part (atomic per object), then, if the lock is still ours, its commit record."""
        if table.num_rows != shard.n_rows:
            raise RuntimeError(f"shard {shard.shard_id} returned {table.num_rows} rows, expected {shard.n_rows}")
        self._require_lock()
        schema_metadata = dict(table.schema.metadata or {})
        node = schema_metadata.pop(NODE_KEY, b"").decode() or None
        data = self._parquet_bytes(table.replace_schema_metadata(schema_metadata), phase)
        part, record_names = self._part_names(phase, shard)
        self.run_location.write(data, *part)
        record = {
            "shard_id": shard.shard_id,
            "phase": phase,
            "part": part[-1],
            "rows": table.num_rows,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "run_id": self.run_id,
            **({"node": node} if node else {}),
            "committed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self._lock.confirm()  # a writer that lost the lock never commits
        self.run_location.write(json.dumps(record, indent=1).encode(), *record_names)
        if node:
            self.nodes.setdefault(phase, {})[shard.shard_id] = node

    def write_table(self, name: str, table: pa.Table) -> Path:
        """A Parquet file next to the phase folders, staged locally and uploaded by :meth:`publish`."""
        self._require_lock()
        path = self.path(name)
        path.write_bytes(self._parquet_bytes(table, None))
        return path

    def path(self, name: str) -> Path:
        """A local staging file for an output (figures, summaries); :meth:`publish` uploads it."""
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix=f"dreamctl-{self.run_id[:12]}-"))
        return self._staging / name


def read_latest(job_location: Location) -> str | None:
    """The run id the ``<job>/latest`` object names, or None."""
    data = job_location.read(LATEST)
    run_id = data.decode(errors="replace").strip() if data else ""
    return run_id if run_id and "/" not in run_id and run_id not in (".", "..") else None


# ----- reading a run here (dreamctl report) --------------------------------------------------
def finished_run(results: str, job: str, run_name: str = LATEST) -> Location:
    """``<results>/<job>/<run_name>`` (``latest`` followed) as a Location; BadInput when it
    holds no manifest or is not finished."""
    job_location = open_location(results).child(job)
    try:
        if run_name == LATEST:
            run_name = read_latest(job_location) or ""
            if not run_name:
                raise BadInput(f"no finished {job} run under {job_location.display} (no {LATEST} object)")
        run = job_location.child(run_name)
        if run.info(MANIFEST).type != pafs.FileType.File:
            raise BadInput(f"no {job} run at {run.display}")
        if run.info(SUCCESS).type != pafs.FileType.File:
            raise BadInput(f"{run.display} is not finished (no {SUCCESS}); rerun its command to complete it")
    except OSError as error:  # unreachable endpoint, no such bucket, no permission
        raise BadInput(f"cannot read {job_location.display}: {_first_line(error)}") from None
    return run


def split_run_uri(uri: str) -> tuple[str, str, str]:
    """``scheme://bucket/prefix/<job>/<run>?query`` as (``scheme://bucket/prefix?query``, job, run)."""
    base, mark, query = uri.partition("?")
    pieces = base.rstrip("/").rsplit("/", 2)
    if len(pieces) < 3 or "://" not in pieces[0] or not pieces[0].split("://", 1)[1]:
        raise BadInput(f"{_without_query(uri)} names no run (scheme://bucket/prefix/<job>/<run_id or latest>)")
    return pieces[0] + mark + query, pieces[1], pieces[2]


def copy_run_down(run: Location, job_dir: Path) -> Path:
    """Copy a run's objects into ``job_dir/<run_id>`` (written atomically, never through a link)
    and return that folder. Every part is checked against its commit record first; BadInput names
    the first that does not match. The run's lock object is not copied."""
    from jobs.files import atomic_write_bytes, real_dir

    try:
        names = [name for name in run.files() if name != LOCK]
        contents = {name: run.read(name) for name in names}
    except OSError as error:
        raise BadInput(f"cannot read {run.display}: {_first_line(error)}") from None
    parts = {name for name in names if re.fullmatch(r"[^/_][^/]*/part-[^/]+\.parquet", name)}
    for name in names:
        if not re.fullmatch(f"{COMMITS}/[^/]+/[^/]+\\.json", name):
            continue
        phase, shard_id = name.split("/")[1], name.split("/")[2][: -len(".json")]
        part = f"{phase}/part-{shard_id}.parquet"
        try:
            record = json.loads(contents[name])
        except ValueError:
            record = None
        data = contents.get(part)
        if data is None or not isinstance(record, dict) or record.get("sha256") != hashlib.sha256(data).hexdigest():
            raise BadInput(f"{run.url(part)} does not match its commit record; rerun the run's command to heal it")
        parts.discard(part)
    if parts:
        raise BadInput(f"{run.url(sorted(parts)[0])} has no commit record; rerun the run's command to heal it")
    local = real_dir(job_dir, run.url().name)
    for name in names:
        *folders, file_name = name.split("/")
        atomic_write_bytes(real_dir(local, *folders) / file_name, contents[name], sync=False)
    return local


def upload_folder(folder: Path, run: Location, what: str) -> ObjectURL:
    """Upload ``folder`` (a run's local report) into the run as ``<run>/<folder name>/...``,
    under the run's lock; return its URL."""
    lock = ObjectLock(run)
    lock.acquire(what)
    try:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            lock.confirm()
            run.write(file.read_bytes(), folder.name, *file.relative_to(folder).parts)
    finally:
        lock.release()
    return run.url(folder.name)
