"""Results under a pyarrow filesystem URI (``s3://bucket/prefix``, ``gs://bucket/prefix``).

The run store (cluster/store.py) writes and reads here with the same code as in a local
folder; what differs sits in :class:`ObjectBackend`:

- An object PUT is atomic (a reader sees the whole object or none), so a file is written
  straight to its key; there are no links to follow and no temporary files.
- ``<job>/latest`` is a small object holding the run id.
- The lock (cluster/lock.py ``ObjectLock``): a token, a settle delay and a heartbeat, as
  pyarrow exposes no conditional write.
- Every call has a bounded total time, retries included: ``timeout`` seconds (default 15)
  for an answer, more for large objects (:data:`BYTES_PER_SECOND`); set it with
  ``?timeout=SECONDS`` in the URI. The SDK's own connect timeout and retries are set from it.

Query options: ``s3://[KEY:SECRET@]bucket/prefix?endpoint_override=host:port&scheme=http&region=R``,
``gs://bucket/prefix?endpoint_override=host:port&scheme=http``, and ``timeout`` for both;
other schemes go to ``pyarrow.fs.FileSystem.from_uri`` as they are.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from cluster.store import LATEST, Backend
from core.errors import BadInput, BadParameter, JobFailed

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
    try:
        if scheme == "s3":
            known = {"region", "scheme", "endpoint_override"}
            if set(options) - known:
                raise ValueError(f"unknown option {sorted(set(options) - known)[0]!r} (known: {', '.join(sorted(known))}, timeout)")
            keys = {}
            if "@" in parts.netloc:
                access, _, secret = parts.netloc.rsplit("@", 1)[0].partition(":")
                keys = {"access_key": unquote(access), "secret_key": unquote(secret)}
            fs = pafs.S3FileSystem(**keys, **options, connect_timeout=min(5.0, timeout / 3),
                                   request_timeout=timeout, retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=2))
        elif scheme in ("gs", "gcs"):
            known = {"scheme", "endpoint_override"}
            if set(options) - known:
                raise ValueError(f"unknown option {sorted(set(options) - known)[0]!r} (known: {', '.join(sorted(known))}, timeout)")
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

    def lock(self, key: str, warn):
        from cluster.lock import ObjectLock

        return ObjectLock(self, key, warn)

    def writer_alive(self, key: str) -> bool:
        from cluster.lock import ObjectLock

        return ObjectLock(self, key).holder_alive()

    def point_latest(self, job: str, run: str) -> None:
        self.write(f"{job}/{LATEST}", run.encode())

    def latest(self, job: str) -> str | None:
        data = self.read(f"{job}/{LATEST}")
        run = data.decode(errors="replace").strip() if data else ""
        return run if run and "/" not in run and run not in (".", "..") else None
