"""The run store: every result folder is written and read here, the same way on every storage.

A run lives at ``<out>/<job>/<run_id>/`` on a pyarrow filesystem: a local folder
(cluster/files.py) or an object store (cluster/object_store.py). Its layout, spelled out
only in this module:

    _manifest.json                   job, run id, parameters, model hash, data id, versions, the shard
                                     ids of every phase, the outputs' sha256, status running / done
    <phase>/part-<shard>.parquet     one part per shard, the run's metadata in its Parquet schema
    _commits/<phase>/<shard>.json    the part's commit record: shard, rows, bytes, sha256, the digest of
                                     the phases it was built from, the Ray node and CPU seconds it took
    <name>                           the job's outputs: figures, summaries (``report/`` for the atlas)
    _lock                            the one process writing the run (cluster/lock.py)
    _SUCCESS                         written last
    <out>/<job>/latest               the newest finished run: a link here, an object holding its id there

**Writing** (:class:`RunStore`): one writer per run (its lock); a part, then its commit
record; a rerun with the same parameters (same run id) reuses a part only when
:func:`verify_part` passes, else removes it, warns once and recomputes it.

**Reading** (:func:`open_run`, :class:`Run`): the manifest's parameters must hash to the run
id, every part must match its commit record and carry the run's metadata, every later phase
must have been built from the parts the run holds, every output must match the sha256 the
manifest recorded; otherwise the run is named and refused (:class:`Damaged`), never shown.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from cluster.files import LinkInTheWay, LocalFolder, Refused, is_temporary
from core.errors import BadInput, JobFailed
from jobs.base import WORK_KEY

if TYPE_CHECKING:
    from jobs.base import Artifact, Shard

MANIFEST, SUCCESS, LOCK, COMMITS, LATEST = "_manifest.json", "_SUCCESS", "_lock", "_commits", "latest"
METADATA_KEY = b"dreamctl"  # the run's metadata in every Parquet schema
SHARD_KEY = WORK_KEY  # what a worker and the phase say of a shard (node, CPU seconds, work); moved to its commit record


class PartChanged(JobFailed):
    """A committed part no longer matches its commit record while the run reads it."""


class Damaged(BadInput):
    """A run that cannot be shown: it is named, with the reason and how to heal it."""


def run_id(job: str, params: dict, model_hash: str | None, data: dict) -> str:
    """Stable id of a run: a hash of the job, its parameters, the model and the data."""
    key = json.dumps({"job": job, "params": params, "model": model_hash, "data": data}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


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


def digest(parts: list[tuple[str, str]]) -> str:
    """One sha256 over (shard id, part sha256) pairs: what a later phase was built from."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def part_key(run: str, phase: str, shard_id: str) -> str:
    return f"{run}/{phase}/part-{shard_id}.parquet"


def record_key(run: str, phase: str, shard_id: str) -> str:
    return f"{run}/{COMMITS}/{phase}/{shard_id}.json"


# ----- storage: what is common, and the seam where kinds differ ------------------------------
class Backend:
    """A results folder on a pyarrow filesystem (keys are ``job/run/...`` below it).
    Subclasses say what differs: the lock, the ``latest`` pointer, how a key is shown, and
    how long a call may take (:meth:`call`)."""

    def __init__(self, fs: pafs.FileSystem, shown: str):
        self.fs, self.shown = fs, shown

    def call(self, operation: Callable, *args, size: int = 0):
        return operation(*args)

    def show(self, key: str = "") -> str:
        return f"{self.shown.rstrip('/')}/{key}" if key else self.shown

    def location(self, key: str) -> str:
        """Where the file ``key`` is for a user (absolute path or URI)."""
        return self.show(key)

    def read(self, key: str) -> bytes | None:
        """The file's bytes; None when there is none; Refused when a link, a special file or
        a folder is in its place."""
        def read() -> bytes:
            with self.fs.open_input_stream(key) as stream:
                return stream.read()
        try:
            return self.call(read)
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        """The whole file at once: complete or absent. JobFailed (disk full, no permission)
        names the file; what was there before stays whole."""
        def write() -> None:
            with self.fs.open_output_stream(key) as stream:
                stream.write(data)
        try:
            self.call(write, size=len(data))
        except Refused:
            raise
        except OSError as error:
            raise JobFailed(f"cannot write {self.show(key)}: {error.strerror or error}") from None

    def kind(self, key: str) -> pafs.FileType:
        return self.call(self.fs.get_file_info, key).type

    def listing(self, key: str, recursive: bool = False) -> list[pafs.FileInfo]:
        """What is below the folder ``key`` (nothing when it does not exist)."""
        return self.call(self.fs.get_file_info, pafs.FileSelector(key, allow_not_found=True, recursive=recursive))

    def delete(self, key: str) -> None:
        kind = self.kind(key)
        if kind == pafs.FileType.Directory:
            self.call(self.fs.delete_dir, key)
        elif kind != pafs.FileType.NotFound:
            self.call(self.fs.delete_file, key)

    def prepare(self, key: str) -> None:
        """Make the folder ``key`` exist for writing (BadInput when that cannot be done safely)."""

    def lock(self, key: str, warn: Callable[[str], None]):
        raise NotImplementedError

    def writer_alive(self, key: str) -> bool:
        raise NotImplementedError

    def point_latest(self, job: str, run: str) -> None:
        raise NotImplementedError

    def latest(self, job: str) -> str | None:
        raise NotImplementedError


class LocalBackend(Backend):
    """A local folder: exclusive temporary files renamed into place, no link ever followed
    (cluster/files.py), a pid lock, ``latest`` a symbolic link."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.folder = LocalFolder(self.root)
        super().__init__(pafs.PyFileSystem(self.folder), str(self.root))

    def location(self, key: str) -> str:
        return str(self.root.absolute() / key)

    def prepare(self, key: str) -> None:
        try:
            self.fs.create_dir(key)
        except LinkInTheWay as error:
            raise BadInput(str(error)) from None

    def lock(self, key: str, warn: Callable[[str], None]):
        from cluster.lock import RunLock

        return RunLock(self.root / key / LOCK, warn)

    def writer_alive(self, key: str) -> bool:
        from cluster.lock import RunLock

        return RunLock(self.root / key / LOCK).holder_alive()

    def point_latest(self, job: str, run: str) -> None:
        self.folder.point_link(f"{job}/{LATEST}", run)

    def latest(self, job: str) -> str | None:
        target = self.folder.read_link(f"{job}/{LATEST}")
        if target is None and self.kind(f"{job}/{LATEST}") == pafs.FileType.File:  # a run-id file (a copy)
            target = (self.read(f"{job}/{LATEST}") or b"").decode(errors="replace").strip()
        if target is not None and ("/" in target or target in ("", ".", "..")):
            raise Damaged(f"{self.show(f'{job}/{LATEST}')} points to {target!r}, not to a run beside it; "
                          f"dreamctl follows latest only within its job folder")
        return target


def backend_for(out: Path | str | Backend) -> Backend:
    """The storage ``--out`` names: a folder, or a filesystem URI (cluster/object_store.py)."""
    if isinstance(out, Backend):
        return out
    from cluster.options import is_uri

    if is_uri(out):
        from cluster.object_store import ObjectBackend

        return ObjectBackend(str(out))
    return LocalBackend(Path(out))


# ----- verified parts: the one check that resume and every reader share ----------------------
def verify_part(backend: Backend, run: str, phase: str, shard_id: str, expected: dict,
                n_rows: int | None = None, inputs: str | None = None) -> tuple[bytes, dict]:
    """The bytes and commit record of a committed part; PartChanged says why it is not one.

    ``expected``: the run's metadata (run id, params, model hash, data), which the record and
    the part's schema must carry; ``n_rows``: the rows the shard writes (None: as recorded);
    ``inputs``: the digest of the earlier phases it must have been built from (None: none)."""
    try:
        record_bytes = backend.read(record_key(run, phase, shard_id))
        data = backend.read(part_key(run, phase, shard_id))
    except Refused as error:
        raise PartChanged(f"{error.args[0].rsplit('/', 1)[-1]}; a part and its record must be regular files") from None
    if data is None:
        raise PartChanged("is missing (its commit record exists)")
    if record_bytes is None:
        raise PartChanged("has no commit record (written before its commit finished, or by an older dreamctl)")
    try:
        record = json.loads(record_bytes)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise PartChanged("its commit record is unreadable")
    if record.get("shard_id") != shard_id:
        raise PartChanged(f"its commit record names shard {record.get('shard_id')!r}, not {shard_id!r}")
    if record.get("run_id", expected["run_id"]) != expected["run_id"]:
        raise PartChanged(f"its commit record belongs to run {record.get('run_id')!r}")
    sha = hashlib.sha256(data).hexdigest()
    if sha != record.get("sha256") or len(data) != record.get("bytes"):
        raise PartChanged(f"its content changed since its commit (sha256 {sha[:12]}, committed {str(record.get('sha256'))[:12]})")
    try:
        footer = pq.read_metadata(pa.BufferReader(data))
        metadata = json.loads((footer.metadata or {})[METADATA_KEY])
    except (OSError, KeyError, ValueError, pa.ArrowInvalid):
        raise PartChanged("is not readable Parquet with dreamctl's metadata") from None
    wanted = n_rows if n_rows is not None else record.get("rows")
    if footer.num_rows != wanted or record.get("rows") != wanted:
        raise PartChanged(f"has {footer.num_rows} rows, the shard writes {wanted}")
    stamped = {key: metadata.get(key) for key in expected}
    if stamped != expected or metadata.get("phase") != phase:
        differs = next((key for key in expected if stamped[key] != expected[key]), "phase")
        raise PartChanged(f"its schema metadata names another {differs} than the run's")
    if inputs is not None and record.get("inputs") != inputs:
        raise PartChanged("was built from other parts of the earlier phases than the run holds now"
                          if record.get("inputs") else "has no record of the parts it was built from (an older dreamctl)")
    return data, record


def measured(compute: Callable[[], pa.Table], node: str | None = None) -> pa.Table:
    """The table ``compute()`` returns, with what the store puts in the shard's commit record
    in its schema metadata (SHARD_KEY): the Ray node, CPU and wall seconds of the process, and
    what the phase said of its work (jobs.base.with_work)."""
    cpu, wall = time.process_time(), time.perf_counter()
    table = compute()
    metadata = dict(table.schema.metadata or {})
    stats = {**json.loads(metadata.get(SHARD_KEY, b"{}")), **({"node": node} if node else {}),
             "cpu_seconds": round(time.process_time() - cpu, 3), "seconds": round(time.perf_counter() - wall, 3)}
    return table.replace_schema_metadata({**metadata, SHARD_KEY: json.dumps(stats).encode()})


def parquet_bytes(table: pa.Table, metadata: dict) -> bytes:
    """The table as Parquet bytes with ``metadata`` in its schema."""
    schema_metadata = {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(metadata, default=str).encode()}
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(schema_metadata), sink)
    return sink.getvalue().to_pybytes()


def read_run_metadata(parquet_path: Path | str) -> dict:
    """The dreamctl metadata of a result file (run id, parameters, model hash, data id)."""
    return json.loads(pq.read_schema(parquet_path).metadata[METADATA_KEY])


def _no_warning(message: str) -> None:
    pass


# ----- writing ---------------------------------------------------------------------------------
class RunStore:
    """The files of one run, written by the one process that holds its lock.

    Use as ``with RunStore(out, job, run_id, metadata, warn) as store: store.open(fresh) ...``:
    the lock taken by :meth:`open` is held until :meth:`close`. ``metadata``: params, model
    hash and data id, stamped into every Parquet schema; ``warn`` gets one line per part that
    resume refuses (and other repairs)."""

    def __init__(self, out: Path | str | Backend, job: str, run_id: str, metadata: dict,
                 warn: Callable[[str], None] = _no_warning):
        self.backend = backend_for(out)
        self.job, self.run_id, self.metadata, self.warn = job, run_id, metadata, warn
        self.run = f"{job}/{run_id}"
        self.run_dir = self.backend.show(self.run)
        # as JSON gives it back (tuples as lists): what the parts and the manifest will hold
        self.expected = json.loads(json.dumps(
            {"run_id": run_id, **{key: metadata.get(key) for key in ("params", "model_hash", "data")}}, default=str))
        self.nodes: dict[str, dict[str, str]] = {}  # phase -> shard id -> Ray node that computed it
        self.records: dict[str, dict[str, dict]] = {}  # phase -> shard id -> commit record of the parts read back
        self.outputs: dict[str, dict] = {}  # output name -> sha256, bytes
        store = weakref.ref(self)  # the lock must not keep its store alive (see finalize below)
        self._lock = self.backend.lock(self.run, lambda message: store() and store().warn(message))
        weakref.finalize(self, self._lock.release)  # an unclosed store still frees its run

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Release the run's lock (idempotent)."""
        self._lock.release()

    @property
    def locked(self) -> bool:
        return self._lock.held

    def _require_lock(self) -> None:
        if not self._lock.held:
            raise RuntimeError(f"RunStore for {self.run_dir}: call open() first (writing needs the run's lock)")

    def open(self, fresh: bool) -> int:
        """Take the run's lock, empty the run first when ``fresh``, drop leftovers of
        interrupted writes; return how many parts are there. BadInput when another process
        holds the run, or when its folder cannot be written safely."""
        if not self._lock.held:
            self.backend.prepare(self.job)
            self.backend.prepare(self.run)
            self._lock.acquire(f"run folder {self.run_dir}")
        try:
            for info in self.backend.listing(self.run, recursive=not fresh):
                name = info.base_name
                if fresh and name != LOCK or is_temporary(name):
                    self.backend.delete(info.path)
            self.backend.delete(f"{self.run}/{SUCCESS}")
            return sum(1 for info in self.backend.listing(self.run, recursive=True)
                       if info.base_name.startswith("part-") and info.path.count("/") == 3)
        except BaseException:
            self.close()
            raise

    def write_manifest(self, shards: dict[str, list[Shard]], status: str) -> None:
        self._require_lock()
        manifest = {
            "job": self.job, "run_id": self.run_id, "status": status, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **self.metadata, "versions": versions(),
            "phases": {phase: [s.shard_id for s in phase_shards] for phase, phase_shards in shards.items()},
            **({"nodes": self.nodes} if self.nodes else {}), **({"outputs": self.outputs} if self.outputs else {}),
        }
        self.backend.write(f"{self.run}/{MANIFEST}", json.dumps(manifest, indent=2, default=str).encode())

    def inputs(self) -> str | None:
        """The digest of every phase read back so far (None before the first)."""
        pairs = [(shard_id, record["sha256"]) for records in self.records.values() for shard_id, record in records.items()]
        return digest(pairs) if self.records else None

    def is_done(self, phase: str, shard: Shard) -> bool:
        """True when the shard's part is committed and verified (:func:`verify_part`, built
        from the phases read so far). A part that fails is removed, with one warning saying
        why, to be recomputed; a shard never written is simply not done."""
        self._require_lock()
        keys = (part_key(self.run, phase, shard.shard_id), record_key(self.run, phase, shard.shard_id))
        if all(self.backend.kind(key) == pafs.FileType.NotFound for key in keys):
            return False
        try:
            _, record = verify_part(self.backend, self.run, phase, shard.shard_id, self.expected, shard.n_rows, self.inputs())
        except PartChanged as problem:
            self.warn(f"{phase}/part-{shard.shard_id}.parquet: {problem}; recomputing it")
            for key in keys:
                self.backend.delete(key)
            return False
        if record.get("node"):  # a reused part keeps the node that computed it
            self.nodes.setdefault(phase, {})[shard.shard_id] = record["node"]
        return True

    def write_part(self, phase: str, shard: Shard, table: pa.Table) -> None:
        """The shard's part, then its commit record (a part without one is never reused).
        What the worker said of the shard (SHARD_KEY: node, CPU seconds) goes to the record."""
        if table.num_rows != shard.n_rows:
            raise RuntimeError(f"shard {shard.shard_id} returned {table.num_rows} rows, expected {shard.n_rows}")
        self._require_lock()
        schema_metadata = dict(table.schema.metadata or {})
        stats = json.loads(schema_metadata.pop(SHARD_KEY, b"{}"))
        data = parquet_bytes(table.replace_schema_metadata(schema_metadata), {**self.expected, "phase": phase})
        self._folders(phase, COMMITS, f"{COMMITS}/{phase}")
        self.backend.write(part_key(self.run, phase, shard.shard_id), data)
        record = {"shard_id": shard.shard_id, "phase": phase, "part": f"part-{shard.shard_id}.parquet",
                  "rows": table.num_rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                  "run_id": self.run_id, "inputs": self.inputs(), **stats,
                  "committed": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self._lock.confirm()  # a writer that lost its lock never commits
        self.backend.write(record_key(self.run, phase, shard.shard_id), json.dumps(record, indent=1).encode())
        if stats.get("node"):
            self.nodes.setdefault(phase, {})[shard.shard_id] = stats["node"]

    def _folders(self, *names: str) -> None:
        """Folders of the run that must be real: a link or a file in the place of one is
        removed (the link itself, never its target), with a warning; the write makes the folder."""
        for name in names:
            if self.backend.kind(f"{self.run}/{name}") in (pafs.FileType.File, pafs.FileType.Unknown):
                self.warn(f"{self.backend.show(f'{self.run}/{name}')} was a link or a file; replaced by a folder")
                self.backend.call(self.backend.fs.delete_file, f"{self.run}/{name}")

    def read_phase(self, phase: str, shards: list[Shard], schema: pa.Schema) -> pa.Table:
        """All parts of a phase in shard order as one table of ``schema``, each verified
        again (PartChanged, exit 1, if one changed since); later phases are built from these."""
        tables, records, inputs = [], {}, self.inputs()
        for shard in shards:
            try:
                data, records[shard.shard_id] = verify_part(self.backend, self.run, phase, shard.shard_id,
                                                            self.expected, shard.n_rows, inputs)
            except PartChanged as problem:
                raise PartChanged(f"{self.backend.show(part_key(self.run, phase, shard.shard_id))}: {problem}; "
                                  f"rerun to recompute it") from None
            tables.append(pq.read_table(pa.BufferReader(data)))
        self.records[phase] = records
        return conform(tables, schema)

    def attach(self) -> None:
        """Take the run's lock to add files to it (:meth:`add_files`), and change nothing else."""
        self.backend.prepare(self.job)
        self.backend.prepare(self.run)
        self._lock.acquire(f"run folder {self.run_dir}")

    def add_files(self, files: dict[str, bytes]) -> None:
        """Write files (name -> bytes, names below the run folder) into the run."""
        self._require_lock()
        for name, data in files.items():
            self._lock.confirm()
            self.backend.write(f"{self.run}/{name}", data)

    def write_outputs(self, artifacts: list[Artifact]) -> list[str]:
        """Write the job's outputs next to its phases (tables as Parquet with the run's
        metadata); their sha256 go to the manifest. Returns where each one is."""
        self._require_lock()
        for artifact in artifacts:
            data = artifact.data if isinstance(artifact.data, bytes) else parquet_bytes(artifact.data, self.expected)
            self.backend.write(f"{self.run}/{artifact.name}", data)
            self.outputs[artifact.name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        return [self.location(artifact.name) for artifact in artifacts]

    def location(self, name: str) -> str:
        """Where the output ``name`` of this run is (absolute path or URI)."""
        return self.backend.location(f"{self.run}/{name}")

    def mark_success(self) -> None:
        """Write ``_SUCCESS``, then point ``<job>/latest`` at this run."""
        self._require_lock()
        self._lock.confirm()
        self.backend.write(f"{self.run}/{SUCCESS}", b"")
        try:
            self.backend.point_latest(self.job, self.run_id)
        except OSError as error:  # e.g. a folder named "latest": ours to report, not to delete
            self.warn(f"{self.backend.show(f'{self.job}/{LATEST}')} not updated: {error.strerror or error}")

    @property
    def succeeded(self) -> bool:
        return self.backend.kind(f"{self.run}/{SUCCESS}") == pafs.FileType.File


def conform(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """Tables as one of ``schema``; a column added to a schema after a part was written reads
    as nulls in that part."""
    fixed = []
    for table in tables:
        for column in schema:
            if column.name not in table.column_names:
                table = table.append_column(column, pa.nulls(table.num_rows, column.type))
        fixed.append(table.select(schema.names).cast(schema))
    return pa.concat_tables(fixed) if fixed else schema.empty_table()


# ----- reading ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Part:
    """A shard of a run as found: its verified bytes and commit record, or why it is not one."""

    shard_id: str
    data: bytes | None
    record: dict | None
    problem: str | None


@dataclass(frozen=True)
class Run:
    """A run found in a results folder, its manifest checked (:func:`open_run`). ``status``:
    done (``_SUCCESS``), running (its lock names a live writer) or partial."""

    backend: Backend
    job: str
    run_id: str
    manifest: dict
    status: str
    _parts: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.job}/{self.run_id}"

    def show(self, name: str = "") -> str:
        return self.backend.show(f"{self.key}/{name}" if name else self.key)

    @property
    def params(self) -> dict:
        return self.manifest["params"]

    @property
    def model_hash(self) -> str | None:
        return self.manifest.get("model_hash")

    @property
    def data(self) -> dict:
        return self.manifest.get("data") or {}

    def damaged(self, reason: str) -> Damaged:
        return Damaged(f"{self.show()} is damaged: {reason}; rerun its command to recompute it")

    def parts(self, phase: str) -> list[Part]:
        """Every shard of the phase, each verified (:func:`verify_part`); a later phase must
        have been built from the parts the earlier ones hold now."""
        if phase not in self._parts:
            phases = list(self.manifest["phases"])
            earlier = [(part.shard_id, part.record["sha256"]) for name in phases[: phases.index(phase)]
                       for part in self.parts(name) if part.record is not None]
            inputs = digest(earlier) if phases.index(phase) else None
            expected = {"run_id": self.run_id, "params": self.params, "model_hash": self.model_hash,
                        "data": self.manifest.get("data")}
            found = []
            for shard_id in self.manifest["phases"][phase]:
                try:
                    found.append(Part(shard_id, *verify_part(self.backend, self.key, phase, shard_id, expected,
                                                             inputs=inputs), None))
                except PartChanged as problem:
                    found.append(Part(shard_id, None, None, str(problem)))
            self._parts[phase] = found
        return self._parts[phase]

    def table(self, phase: str, schema: pa.Schema | None = None) -> pa.Table:
        """The phase's rows from its verified parts, in shard order; Damaged when one is not."""
        if phase not in self.manifest["phases"]:
            raise self.damaged(f"it has no phase {phase!r}")
        tables = []
        for part in self.parts(phase):
            if part.data is None:
                raise self.damaged(f"{phase}/part-{part.shard_id}.parquet {part.problem}")
            tables.append(pq.read_table(pa.BufferReader(part.data)))
        if schema is not None:
            return conform(tables, schema)
        return pa.concat_tables(tables) if tables else pa.table({})

    def output(self, name: str) -> bytes:
        """An output of the job (a figure, a summary), checked against the manifest's sha256."""
        recorded = (self.manifest.get("outputs") or {}).get(name)
        try:
            data = self.backend.read(f"{self.key}/{name}")
        except Refused as error:
            raise self.damaged(str(error)) from None
        if data is None:
            raise self.damaged(f"its output {name} is missing")
        if recorded is not None and hashlib.sha256(data).hexdigest() != recorded.get("sha256"):
            raise self.damaged(f"its output {name} changed since it was written")
        return data

    def has_output(self, name: str) -> bool:
        return name in (self.manifest.get("outputs") or {}) or self.backend.kind(f"{self.key}/{name}") == pafs.FileType.File

    def verify(self) -> Run:
        """Every part and recorded output checked, and no part in a phase folder that the
        manifest does not list (pandas would read it); Damaged names the first that fails."""
        for phase, shard_ids in self.manifest["phases"].items():
            self.table(phase)
            listed = {f"part-{shard_id}.parquet" for shard_id in shard_ids}
            stray = [info.base_name for info in self.backend.listing(f"{self.key}/{phase}")
                     if not info.base_name.startswith((".", "_")) and info.base_name not in listed]
            if stray:
                raise self.damaged(f"{phase}/{stray[0]} is a part the manifest does not list")
        for name in self.manifest.get("outputs") or {}:
            self.output(name)
        return self


def _checked_manifest(data: bytes, where: str) -> dict:
    """The manifest's JSON with the types every reader relies on; Damaged otherwise."""
    try:
        manifest = json.loads(data)
    except ValueError as error:
        raise Damaged(f"{where} is damaged: its {MANIFEST} is not JSON ({error})") from None
    shapes = {"job": str, "run_id": str, "params": dict, "phases": dict}
    bad = [key for key, kind in shapes.items() if not isinstance(manifest, dict) or not isinstance(manifest.get(key), kind)]
    if not bad and not all(isinstance(ids, list) and all(isinstance(i, str) and i and "/" not in i for i in ids)
                           for ids in manifest["phases"].values()):
        bad = ["phases"]
    if not bad and not all(isinstance(manifest.get(key), kind) for key, kind in
                           (("model_hash", (str, type(None))), ("data", (dict, type(None))), ("outputs", (dict, type(None))))):
        bad = ["model_hash, data or outputs"]
    if bad:
        raise Damaged(f"{where} is damaged: its {MANIFEST} has no valid {bad[0]}")
    return manifest


def open_run(out: Path | str | Backend, job: str, name: str = LATEST) -> Run:
    """The run ``<out>/<job>/<name>`` (``latest``: the newest finished one), its manifest
    checked: BadInput when there is none, Damaged when it is not what it claims."""
    backend = backend_for(out)
    try:
        if name == LATEST:
            found = backend.latest(job)
            if found is None:
                raise BadInput(f"no finished {job} run under {backend.show()} (no {backend.show(f'{job}/{LATEST}')})")
            name = found
        where = backend.show(f"{job}/{name}")
        data = backend.read(f"{job}/{name}/{MANIFEST}")
    except Refused as error:
        raise Damaged(f"{backend.show(f'{job}/{name}')} is damaged: {error}") from None
    except (JobFailed, OSError) as error:  # a store that does not answer, a folder we may not read
        raise BadInput(f"cannot read {backend.show(f'{job}/{name}')}: {error}") from None
    if data is None:
        raise BadInput(f"{where} is not a dreamctl run folder (no {MANIFEST})")
    manifest = _checked_manifest(data, where)
    if manifest["job"] != job or manifest["run_id"] != name:
        raise Damaged(f"{where} is damaged: its {MANIFEST} claims run {manifest['job']}/{manifest['run_id']}")
    if run_id(job, manifest["params"], manifest.get("model_hash"), manifest.get("data")) != name:
        raise Damaged(f"{where} is damaged: the parameters in its {MANIFEST} are not those of run {name}")
    if backend.kind(f"{job}/{name}/{SUCCESS}") == pafs.FileType.File:
        status = "done"
    else:
        status = "running" if backend.writer_alive(f"{job}/{name}") else "partial"
    return Run(backend, job, name, manifest, status)


def finished_run(out: Path | str | Backend, job: str, name: str = LATEST) -> Run:
    """A finished run, wholly verified: what the report, the atlas, the experiments and the
    benchmarks read. BadInput / Damaged (exit 2) otherwise, naming the run."""
    run = open_run(out, job, name)
    if run.status != "done":
        raise BadInput(f"{run.show()} is not finished (no {SUCCESS}); rerun its command to complete it")
    return run.verify()


def job_runs(out: Path | str | Backend, job: str) -> list[tuple[str, Run | BadInput]]:
    """(run id, the run or why it cannot be read) of every run folder of ``job``."""
    backend = backend_for(out)
    found = []
    for info in backend.listing(job):
        if info.base_name == LATEST or info.base_name.startswith((".", "_")):
            continue
        if info.type != pafs.FileType.Directory:
            found.append((info.base_name, Damaged(f"{backend.show(info.path)} is not a run folder (a file, a link "
                                                  f"or a special file where a run folder belongs)")))
            continue
        try:
            found.append((info.base_name, open_run(backend, job, info.base_name)))
        except BadInput as problem:
            if not str(problem).endswith(f"(no {MANIFEST})"):  # a folder without one is no run (yet)
                found.append((info.base_name, problem))
    return found


def newest_finished(out: Path | str | Backend, job: str, accept: Callable[[Run], bool],
                    warn: Callable[[str], None] = _no_warning) -> Run | None:
    """The newest finished, verified run of ``job`` that ``accept`` takes; runs that cannot be
    read are passed over with one warning each."""
    candidates = []
    for _, run in job_runs(out, job):
        if isinstance(run, BadInput):
            warn(f"skipped: {run}")
        elif run.status == "done" and accept(run):
            candidates.append(run)
    for run in sorted(candidates, key=lambda r: (str(r.manifest.get("updated", "")), r.run_id), reverse=True):
        try:
            return run.verify()
        except Damaged as problem:
            warn(f"skipped: {problem}")
    return None



def copy_run(run: Run, to: Path | str | Backend, warn: Callable[[str], None] = _no_warning) -> Run:
    """A copy of a finished run under ``to``, file by file, each verified on the way; the
    copy is written under its own lock and read back verified."""
    run.verify()
    with RunStore(to, run.job, run.run_id, {}, warn) as copy:
        copy.attach()
        files = {MANIFEST: json.dumps(run.manifest, indent=2).encode()}
        for phase in run.manifest["phases"]:
            for part in run.parts(phase):
                files[part_key("", phase, part.shard_id)[1:]] = part.data
                files[record_key("", phase, part.shard_id)[1:]] = json.dumps(part.record, indent=1).encode()
        for name in run.manifest.get("outputs") or {}:
            files[name] = run.output(name)
        copy.add_files(files)
        copy.mark_success()
    return finished_run(to, run.job, run.run_id)
