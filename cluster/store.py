"""The result store: ``<out>/<job>/<run_id>/<phase>/part-<shard>.parquet`` and friends.

- One writer per run folder: :meth:`RunStore.open` takes the run's lock (``_lock``, naming
  its owner) and :meth:`RunStore.close` releases it; a held run is never written or deleted.
- Every file is written to a uniquely named hidden temp file in the same folder, created
  exclusively, then ``os.replace``d (:mod:`jobs.files`): a part is either complete or absent,
  and no link planted in the run folder is ever followed (nothing is written outside ``out``).
- A part is committed by a record written after it, ``_commits/<phase>/<shard_id>.json``:
  its shard id, row count and the sha256 of its bytes. A rerun with the same parameters
  (same run id) reuses a part only when its record names the shard and its bytes and row
  count still match; anything else is removed, recomputed and reported through ``warn``.
- ``_manifest.json`` holds the parameters, versions and shard lists; ``_SUCCESS`` is written
  last; ``<out>/<job>/latest`` then points at the run.
- Readers (pandas / pyarrow) ignore names starting with ``.`` or ``_``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from cluster.lock import RunLock
from core.errors import BadInput, JobFailed
from jobs.files import LinkInTheWay, atomic_symlink, atomic_write_bytes, is_temporary, real_dir

SUCCESS = "_SUCCESS"
MANIFEST = "_manifest.json"
LOCK = "_lock"
COMMITS = "_commits"
LATEST = "latest"
METADATA_KEY = b"dreamctl"
# Schema metadata a worker puts on a shard's table: the Ray node id that computed it. The
# store moves it to the commit record and the manifest's "nodes" (never into the part).
NODE_KEY = b"dreamctl.node"

if TYPE_CHECKING:  # jobs.base imports Keras: too slow for a store that only reads shard ids
    from jobs.base import Shard


class PartChanged(JobFailed):
    """A committed part no longer matches its commit record while the run reads it."""


def versions() -> dict:
    """Versions of the software that produced a result."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("dreamctl", "tensorflow", "keras", "ray", "numpy", "pyarrow", "scikit-learn"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def _read_no_follow(path: Path) -> bytes:
    """The bytes of the file ``path``; OSError if it is missing or a symbolic link."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor, "rb") as file:
        return file.read()


def _no_warning(message: str) -> None:
    pass


class RunStore:
    """Files of one run: ``root/job/run_id``. ``metadata`` goes into every Parquet schema;
    ``warn`` receives one line per part that resume refuses (and other repairs).

    Use as ``with RunStore(...) as store: store.open(fresh) ...`` (or call :meth:`close`):
    the lock taken by :meth:`open` is held until then."""

    def __init__(self, root: Path, job: str, run_id: str, metadata: dict,
                 warn: Callable[[str], None] = _no_warning):
        self.root = Path(root)
        self.job_dir = self.root / job
        self.run_dir = self.job_dir / run_id
        self.run_id = run_id
        self.metadata = metadata
        self.warn = warn
        self.nodes: dict[str, dict[str, str]] = {}  # phase -> shard id -> Ray node id that computed it
        store = weakref.ref(self)  # the lock must not keep its store alive (see finalize below)
        self._lock = RunLock(self.run_dir / LOCK, lambda message: store() and store().warn(message))
        # an unclosed store still frees its run when it is collected or the interpreter exits
        weakref.finalize(self, self._lock.release)

    # ----- lifecycle --------------------------------------------------------------------
    def open(self, fresh: bool) -> int:
        """Take the run's lock, create the run dir (emptied first when ``fresh``), drop
        leftovers of interrupted writes; return how many part files exist.

        Raises BadInput when another process holds the run, or when the job or run folder
        under ``root`` is a symbolic link."""
        if not self._lock.held:
            try:
                real_dir(self.root, self.job_dir.name, self.run_id)
            except LinkInTheWay as error:
                raise BadInput(str(error)) from None
            self._lock.acquire(f"run folder {self.run_dir}")
        try:
            if fresh:
                self._empty_run_dir()
            self._remove_temporaries()
            (self.run_dir / SUCCESS).unlink(missing_ok=True)
            return sum(1 for _ in self.run_dir.glob("*/part-*.parquet"))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the run's lock (idempotent)."""
        self._lock.release()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def locked(self) -> bool:
        """True while this store holds its run's lock (between open and close)."""
        return self._lock.held

    def _require_lock(self) -> None:
        if not self._lock.held:
            raise RuntimeError(f"RunStore for {self.run_dir}: call open() first (writing needs the run's lock)")

    def _empty_run_dir(self) -> None:
        """Delete everything in the run dir but our lock (links themselves, never their targets)."""
        with os.scandir(self.run_dir) as entries:
            for entry in entries:
                if entry.name == LOCK:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)

    def _remove_temporaries(self) -> None:
        """Temp files of interrupted writes (we hold the lock: no writer owns them)."""
        for folder, subfolders, names in os.walk(self.run_dir):  # does not follow links
            for name in names:
                if is_temporary(name):
                    os.unlink(os.path.join(folder, name))

    def _folder(self, *names: str) -> Path:
        """A real folder under the run dir; a link in its place is replaced (with a warning)."""
        return real_dir(self.run_dir, *names, replace_links=True,
                        on_replace=lambda path: self.warn(f"{path} was a link or a file; replaced by an empty folder"))

    def write_manifest(self, shards: dict[str, list[Shard]], status: str) -> None:
        self._require_lock()
        manifest = {
            "job": self.job_dir.name,
            "run_id": self.run_id,
            "status": status,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **self.metadata,
            "versions": versions(),
            "phases": {phase: [s.shard_id for s in phase_shards] for phase, phase_shards in shards.items()},
            **({"nodes": self.nodes} if self.nodes else {}),
        }
        atomic_write_bytes(self.run_dir / MANIFEST, json.dumps(manifest, indent=2, default=str).encode())

    def publish(self, outputs: list[Path]) -> list[Path]:
        """Where the outputs written under :meth:`path` are for the user: here, where they
        were written (cluster/object_store.py uploads them)."""
        return outputs

    def mark_success(self) -> None:
        """Write ``_SUCCESS``, then point ``<job>/latest`` at this run."""
        self._require_lock()
        atomic_write_bytes(self.run_dir / SUCCESS, b"")
        try:
            atomic_symlink(self.job_dir / LATEST, self.run_id)
        except OSError as error:  # e.g. a folder named "latest": ours to report, not to delete
            self.warn(f"{self.job_dir / LATEST} not updated: {error.strerror or error}")

    @property
    def succeeded(self) -> bool:
        return (self.run_dir / SUCCESS).exists()

    # ----- parts ------------------------------------------------------------------------
    def phase_dir(self, phase: str) -> Path:
        return self.run_dir / phase

    def part_path(self, phase: str, shard: Shard) -> Path:
        return self.phase_dir(phase) / f"part-{shard.shard_id}.parquet"

    def commit_path(self, phase: str, shard: Shard) -> Path:
        """The shard's commit record: shard id, rows, bytes and sha256 of its part."""
        return self.run_dir / COMMITS / phase / f"{shard.shard_id}.json"

    def is_done(self, phase: str, shard: Shard) -> bool:
        """True when the shard's part is committed: its record names this shard and the part's
        sha256 and row count match. A part that fails is removed (with one warning saying
        why) so that it is recomputed; a shard never written is simply not done."""
        self._require_lock()
        part, record = self.part_path(phase, shard), self.commit_path(phase, shard)
        if not os.path.lexists(part) and not os.path.lexists(record):
            return False
        try:
            self._verified_bytes(phase, shard)
            return True
        except PartChanged as problem:
            self.warn(f"{phase}/{part.name}: {problem}; recomputing it")
            part.unlink(missing_ok=True)
            record.unlink(missing_ok=True)
            return False

    def _verified_bytes(self, phase: str, shard: Shard) -> bytes:
        """The part's bytes, checked against its commit record; PartChanged says why not."""
        part, record_path = self.part_path(phase, shard), self.commit_path(phase, shard)
        if part.is_symlink():
            raise PartChanged("is a symbolic link")
        if not part.exists():
            raise PartChanged("is missing (its commit record exists)")
        try:
            record = json.loads(_read_no_follow(record_path))
        except FileNotFoundError:
            raise PartChanged("has no commit record (written before its commit finished, or by an older dreamctl)") from None
        except (OSError, ValueError):
            raise PartChanged("its commit record is unreadable") from None
        if not isinstance(record, dict) or record.get("shard_id") != shard.shard_id:
            named = record.get("shard_id") if isinstance(record, dict) else None
            raise PartChanged(f"its commit record names shard {named!r}, not {shard.shard_id!r}")
        data = _read_no_follow(part)
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
        if record.get("node"):  # a reused part keeps the node that computed it
            self.nodes.setdefault(phase, {})[shard.shard_id] = record["node"]
        return data

    def _parquet_bytes(self, table: pa.Table, phase: str | None) -> bytes:
        """The table as Parquet bytes, with the run's metadata (and phase) in its schema."""
        schema_metadata = dict(table.schema.metadata or {})
        schema_metadata[METADATA_KEY] = json.dumps(
            {"run_id": self.run_id, **({"phase": phase} if phase else {}), **self.metadata}, default=str
        ).encode()
        sink = pa.BufferOutputStream()
        pq.write_table(table.replace_schema_metadata(schema_metadata), sink)
        return sink.getvalue().to_pybytes()

    def write_table(self, name: str, table: pa.Table) -> Path:
        """A Parquet file next to the phase folders (e.g. a summary), written atomically with
        the run's metadata in its schema; returns its path."""
        self._require_lock()
        path = self.path(name)
        atomic_write_bytes(path, self._parquet_bytes(table, None))
        return path

    def write_part(self, phase: str, shard: Shard, table: pa.Table) -> None:
        """Write the shard's rows atomically, with the run's metadata in the schema, then
        its commit record (so a part without a record is never reused). The Ray node id a
        worker put under NODE_KEY goes to the record and the manifest, not the part."""
        if table.num_rows != shard.n_rows:
            raise RuntimeError(f"shard {shard.shard_id} returned {table.num_rows} rows, expected {shard.n_rows}")
        self._require_lock()
        schema_metadata = dict(table.schema.metadata or {})
        node = schema_metadata.pop(NODE_KEY, b"").decode() or None
        data = self._parquet_bytes(table.replace_schema_metadata(schema_metadata), phase)
        self._folder(phase)
        atomic_write_bytes(self.part_path(phase, shard), data)
        record = {
            "shard_id": shard.shard_id,
            "phase": phase,
            "part": self.part_path(phase, shard).name,
            "rows": table.num_rows,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "run_id": self.run_id,
            **({"node": node} if node else {}),
            "committed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self._folder(COMMITS, phase)
        atomic_write_bytes(self.commit_path(phase, shard), json.dumps(record, indent=1).encode())
        if node:
            self.nodes.setdefault(phase, {})[shard.shard_id] = node

    def read_phase(self, phase: str, shards: list[Shard], schema: pa.Schema) -> pa.Table:
        """All parts of a phase, in shard order, as one table of ``schema``; each part is
        checked against its commit record (PartChanged if it no longer matches)."""
        tables = []
        for shard in shards:
            try:
                data = self._verified_bytes(phase, shard)
            except PartChanged as problem:
                raise PartChanged(f"{self.part_path(phase, shard)}: {problem}; rerun to recompute it") from None
            tables.append(pq.read_table(pa.BufferReader(data)).cast(schema))
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def path(self, name: str) -> Path:
        """A file next to the phase folders (figures, summaries)."""
        return self.run_dir / name


def read_run_metadata(parquet_path: Path) -> dict:
    """The dreamctl metadata of a result file (job parameters, model hash, data id)."""
    return json.loads(pq.read_schema(parquet_path).metadata[METADATA_KEY])
