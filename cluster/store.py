"""The result store: ``<out>/<job>/<run_id>/<phase>/part-<shard>.parquet`` and friends.

- Every file is written to a hidden temp file in the same folder, then ``os.replace``d:
  a part is either complete or absent.
- A part counts as done when its footer reads and its row count is what the shard writes;
  a rerun with the same parameters (same run id) skips done parts.
- ``_manifest.json`` holds the parameters, versions and shard lists; ``_SUCCESS`` is written
  last; ``<out>/<job>/latest`` points at the newest finished run.
- Readers (pandas / pyarrow) ignore names starting with ``.`` or ``_``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.base import Shard

SUCCESS = "_SUCCESS"
MANIFEST = "_manifest.json"
METADATA_KEY = b"dreamctl"


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class RunStore:
    """Files of one run: ``root/job/run_id``. ``metadata`` goes into every Parquet schema."""

    def __init__(self, root: Path, job: str, run_id: str, metadata: dict):
        self.job_dir = Path(root) / job
        self.run_dir = self.job_dir / run_id
        self.run_id = run_id
        self.metadata = metadata

    # ----- lifecycle --------------------------------------------------------------------
    def open(self, fresh: bool) -> int:
        """Create the run dir (emptied first when ``fresh``); return how many parts exist."""
        if fresh and self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / SUCCESS).unlink(missing_ok=True)
        return sum(1 for _ in self.run_dir.glob("*/part-*.parquet"))

    def write_manifest(self, shards: dict[str, list[Shard]], status: str) -> None:
        manifest = {
            "job": self.job_dir.name,
            "run_id": self.run_id,
            "status": status,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **self.metadata,
            "versions": versions(),
            "phases": {phase: [s.shard_id for s in phase_shards] for phase, phase_shards in shards.items()},
        }
        atomic_write_bytes(self.run_dir / MANIFEST, json.dumps(manifest, indent=2, default=str).encode())

    def mark_success(self) -> None:
        atomic_write_bytes(self.run_dir / SUCCESS, b"")
        latest = self.job_dir / "latest"
        temporary = self.job_dir / ".latest.tmp"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(self.run_id)
        os.replace(temporary, latest)

    @property
    def succeeded(self) -> bool:
        return (self.run_dir / SUCCESS).exists()

    # ----- parts ------------------------------------------------------------------------
    def phase_dir(self, phase: str) -> Path:
        return self.run_dir / phase

    def part_path(self, phase: str, shard: Shard) -> Path:
        return self.phase_dir(phase) / f"part-{shard.shard_id}.parquet"

    def is_done(self, phase: str, shard: Shard) -> bool:
        """True when the shard's part has a valid footer and the expected row count."""
        path = self.part_path(phase, shard)
        try:
            return pq.read_metadata(path).num_rows == shard.n_rows
        except (OSError, pa.ArrowInvalid):
            return False

    def write_part(self, phase: str, shard: Shard, table: pa.Table) -> None:
        """Write the shard's rows atomically, with the run's metadata in the schema."""
        if table.num_rows != shard.n_rows:
            raise RuntimeError(f"shard {shard.shard_id} returned {table.num_rows} rows, expected {shard.n_rows}")
        path = self.part_path(phase, shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        schema_metadata = dict(table.schema.metadata or {})
        schema_metadata[METADATA_KEY] = json.dumps(
            {"run_id": self.run_id, "phase": phase, **self.metadata}, default=str
        ).encode()
        temporary = path.with_name(f".{path.name}.tmp")
        pq.write_table(table.replace_schema_metadata(schema_metadata), temporary)
        os.replace(temporary, path)

    def read_phase(self, phase: str, shards: list[Shard], schema: pa.Schema) -> pa.Table:
        """All parts of a phase, in shard order, as one table of ``schema``."""
        tables = [pq.read_table(self.part_path(phase, shard)).cast(schema) for shard in shards]
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def path(self, name: str) -> Path:
        """A file next to the phase folders (figures, summaries)."""
        return self.run_dir / name


def read_run_metadata(parquet_path: Path) -> dict:
    """The dreamctl metadata of a result file (job parameters, model hash, data id)."""
    return json.loads(pq.read_schema(parquet_path).metadata[METADATA_KEY])
