"""Where results are kept: a results folder on a pyarrow filesystem, and the run layout's names.

``--out`` is a local folder (:class:`LocalBackend`: cluster/files.py's LocalFolder, which never
follows a link below it and writes files whole) or a pyarrow filesystem URI
(:class:`ObjectBackend`: ``s3://bucket/prefix``, ``gs://bucket/prefix``). The run store
(cluster/store.py) writes and reads both with the same code; what differs sits here:

| | local folder | object store |
|---|---|---|
| a file written whole | hidden exclusive temporary file, renamed | one PUT (atomic per object) |
| links | never followed below ``--out`` | none exist |
| the run's lock | a file naming a pid (cluster/lock.py RunLock) | an object with a token and heartbeat (ObjectLock) |
| ``<job>/latest`` | a symbolic link to the run | an object holding the run id |
| time a call may take | the file system's | ``?timeout=SECONDS`` in the URI (default 15), retries included |

URI options: ``s3://[KEY:SECRET@]bucket/prefix?endpoint_override=host:port&scheme=http&region=R``,
``gs://bucket/prefix?endpoint_override=host:port&scheme=http``, ``timeout`` for both; other
schemes go to ``pyarrow.fs.FileSystem.from_uri`` as they are.

The layout of a run, ``<out>/<job>/<run_id>/``:

    _manifest.json                   job, run id, parameters, model hash, data id, versions, the shard
                                     ids of every phase, the outputs' sha256, status running / done
    <phase>/part-<shard>.parquet     one part per shard, the run's metadata in its Parquet schema
    _commits/<phase>/<shard>.json    the part's commit record: shard, rows, bytes, sha256, the digest of
                                     the phases it was built from, the Ray node, CPU seconds, its work
    <name>                           the job's outputs: figures, summaries (``report/`` for the atlas)
    _lock                            the one process writing the run
    _SUCCESS                         written last
    <out>/<job>/latest               the newest finished run
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from cluster.files import LinkInTheWay, LocalFolder, Refused
from cluster.lock import ObjectLock, RunLock
from core.errors import BadInput, BadParameter, JobFailed

MANIFEST, SUCCESS, LOCK, COMMITS, LATEST = "_manifest.json", "_SUCCESS", "_lock", "_commits", "latest"


class Damaged(BadInput):
    """A run that cannot be shown: it is named, with the reason and how to heal it."""


def part_key(run: str, phase: str, shard_id: str) -> str:
    return f"{run}/{phase}/part-{shard_id}.parquet"


def record_key(run: str, phase: str, shard_id: str) -> str:
    return f"{run}/{COMMITS}/{phase}/{shard_id}.json"


class Backend:
    """A results folder on a pyarrow filesystem (keys are ``job/run/...`` below it).
    Subclasses say what differs (the module docstring's table): ``lock``, ``point_latest``,
    ``latest``, how a key is shown (:meth:`location`) and how long a call may take (:meth:`call`)."""

    def __init__(self, fs: pafs.FileSystem, shown: str):
        self.fs, self.shown = fs, shown

    def call(self, operation: Callable, *args, size: int = 0):
        return operation(*args)

    def show(self, key: str = "") -> str:
        return f"{self.shown.rstrip('/')}/{key}" if key else self.shown

    def location(self, key: str) -> str:
        """Where the file ``key`` is for a user (absolute path or URI)."""
        return self.show(key)

    def read(self, key: str, limit: int | None = None) -> bytes | None:
        """The file's bytes; None when there is none; Refused when a link, a special file or
        a folder is in its place, or when it holds more than ``limit`` bytes (a small record)."""
        def read() -> bytes:
            with self.fs.open_input_stream(key) as stream:
                data = stream.read(limit + 1) if limit is not None else stream.read()
            if limit is not None and len(data) > limit:
                raise Refused(f"{self.show(key)} holds more than {limit:,} bytes, more than it can be")
            return data
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

    def writer_alive(self, run: str) -> bool:
        """True when the run's lock names a writer that may still be writing."""
        return self.lock(run).holder_alive()

    def run_name(self, job: str, text: str | None) -> str | None:
        """A ``latest`` pointer's run id; Damaged when it leads anywhere but to a run beside it."""
        if text is not None and ("/" in text or text in ("", ".", "..")):
            raise Damaged(f"{self.show(f'{job}/{LATEST}')} points to {text!r}, not to a run beside it; "
                          f"dreamctl follows latest only within its job folder")
        return text

    # what differs: lock(run, warn), point_latest(job, run), latest(job)


class LocalBackend(Backend):
    """A local folder (see the module docstring)."""

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

    def lock(self, run: str, warn: Callable[[str], None] = lambda message: None) -> RunLock:
        return RunLock(self.root / run / LOCK, warn)

    def point_latest(self, job: str, run: str) -> None:
        self.folder.point_link(f"{job}/{LATEST}", run)

    def latest(self, job: str) -> str | None:
        target = self.folder.read_link(f"{job}/{LATEST}")
        if target is None and self.kind(f"{job}/{LATEST}") == pafs.FileType.File:  # a run-id file (a copy)
            target = (self.read(f"{job}/{LATEST}") or b"").decode(errors="replace").strip()
        return self.run_name(job, target)


DEFAULT_TIMEOUT_S = 15.0
BYTES_PER_SECOND = 1 << 20  # the slowest transfer a call is given time for, beyond its timeout


def shown(uri: str) -> str:
    """The URI as shown to users: no query (options) and no user info (keys)."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}".rstrip("/")


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def open_uri(uri: str) -> tuple[pafs.FileSystem, str, float]:
    """(filesystem, base path ``bucket/prefix``, timeout in seconds) of a URI; BadInput when
    it cannot be opened (unknown scheme or option, bad timeout)."""
    parts = urlsplit(uri)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    try:
        timeout = float(options.pop("timeout", DEFAULT_TIMEOUT_S))
        if not 0 < timeout < 86_400:
            raise ValueError
    except ValueError:
        raise BadInput(f"{shown(uri)}: timeout must be a number of seconds above 0") from None
    base = f"{parts.netloc.rsplit('@', 1)[-1]}{parts.path}".rstrip("/")
    scheme = parts.scheme.lower()
    if scheme in ("s3", "gs", "gcs") and not parts.netloc.rsplit("@", 1)[-1]:
        raise BadInput(f"{uri!r} names no bucket ({scheme}://bucket/prefix)")
    known = {"s3": {"region", "scheme", "endpoint_override"}, "gs": {"scheme", "endpoint_override"}}.get(
        "gs" if scheme == "gcs" else scheme, set(options))
    try:
        if set(options) - known:
            raise ValueError(f"unknown option {sorted(set(options) - known)[0]!r} (known: {', '.join(sorted(known))}, timeout)")
        if scheme == "s3":
            user, _, secret = parts.netloc.rpartition("@")[0].partition(":")
            keys = {"access_key": unquote(user), "secret_key": unquote(secret)} if user else {}
            fs = pafs.S3FileSystem(**keys, **options, connect_timeout=min(5.0, timeout / 3), request_timeout=timeout,
                                   retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=2))
        elif scheme in ("gs", "gcs"):
            fs = pafs.GcsFileSystem(**options, retry_time_limit=timedelta(seconds=timeout))
        else:
            fs, base = pafs.FileSystem.from_uri(parts._replace(query=urlencode(options)).geturl())
            base = base.rstrip("/")
    except (pa.ArrowInvalid, ValueError, TypeError, OSError) as error:
        raise BadInput(f"{shown(uri)}: {first_line(error)}") from None
    return fs, base, timeout


class ObjectBackend(Backend):
    """A results folder on an object store (see the module docstring)."""

    def __init__(self, uri: str):
        filesystem, self.base, self.timeout = open_uri(uri)
        self.bucket = self.base.split("/", 1)[0]
        self.root_fs = filesystem
        super().__init__(pafs.SubTreeFileSystem(self.base, filesystem), shown(uri))

    def call(self, operation, *args, size: int = 0):
        """``operation(*args)`` within the timeout (more for ``size`` bytes); JobFailed naming
        the store when it takes longer or the store answers with an error."""
        seconds = self.timeout + size / BYTES_PER_SECOND
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["value"] = operation(*args)
            except BaseException as error:  # handed to the caller below
                outcome["error"] = error

        thread = threading.Thread(target=run, name="dreamctl-object-store", daemon=True)
        thread.start()
        thread.join(seconds)
        if thread.is_alive():
            raise JobFailed(f"{self.shown}: no answer within {seconds:.0f} s (a slower store: ?timeout=SECONDS in the URI)")
        error = outcome.get("error")
        if isinstance(error, OSError) and not isinstance(error, FileNotFoundError):
            raise JobFailed(f"{self.shown}: {first_line(error)}") from None
        if error is not None:
            raise error
        return outcome["value"]

    def check(self, parameter: str) -> None:
        """Fail fast (BadParameter, one line) when the bucket does not exist or the store does
        not answer: checked before any model is trained or Ray is started."""
        try:
            found = self.call(self.root_fs.get_file_info, self.bucket)
        except JobFailed as error:
            raise BadParameter(parameter, f"cannot reach {self.shown}: {str(error).split(': ', 1)[-1]}") from None
        if found.type != pafs.FileType.Directory:
            raise BadParameter(parameter, f"bucket {self.bucket!r} of {self.shown} does not exist")

    def lock(self, run: str, warn: Callable[[str], None] = lambda message: None) -> ObjectLock:
        return ObjectLock(self, f"{run}/{LOCK}", warn)

    def point_latest(self, job: str, run: str) -> None:
        self.write(f"{job}/{LATEST}", run.encode())

    def latest(self, job: str) -> str | None:
        data = self.read(f"{job}/{LATEST}")
        return self.run_name(job, data.decode(errors="replace").strip() if data is not None else None)


def backend_for(out: Path | str | Backend) -> Backend:
    """The storage ``--out`` names: a folder, or a filesystem URI."""
    if isinstance(out, Backend):
        return out
    from cluster.options import is_uri

    return ObjectBackend(str(out)) if is_uri(out) else LocalBackend(Path(out))
