"""The runs under a results folder, read from what is on disk (``dreamctl runs``).

A run is ``<results>/<job>/<run_id>/`` with a ``_manifest.json``. Its status:

- ``done``: ``_SUCCESS`` exists;
- ``running``: not done, and its ``_lock`` names a writer that is alive (or one on another
  host, whose processes cannot be seen; see cluster/lock.py);
- ``partial``: neither (stopped or killed; rerunning its command resumes it).

Rows and shards come from the Parquet footers of the parts the manifest lists.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from cluster.lock import stale_reason
from cluster.options import is_uri
from cluster.store import LOCK, MANIFEST, SUCCESS
from core.errors import BadInput
from jobs.files import follow_latest

KEY_PARAMS = {  # job -> the parameters that tell its runs apart at a glance
    "precursor": ("layer", "maps", "grid", "levels", "test_epochs", "top", "full_epochs"),
    "oip": ("layer", "maps", "epochs", "restarts", "seed"),
    "dream": ("image_name", "layer", "maps", "objective", "iterations", "epochs", "octaves", "tile_grid"),
    "kmeans": ("ks", "n_init", "scale", "samples"),
    "mlp": ("clusters", "scale", "mlp.epochs", "mlp.hidden"),
    "clusters": ("ks", "scale", "mlp.epochs"),
    "atlas": ("precursor_run", "layer", "maps", "oip_run", "oip_restarts", "oip_epochs"),
}


@dataclass(frozen=True)
class PhaseInfo:
    shards: int  # listed in the manifest
    done: int  # parts with a readable footer
    rows: int  # rows in those parts


@dataclass(frozen=True)
class RunInfo:
    """One run as found on disk. ``date``: the manifest's last update (ISO 8601)."""

    job: str
    run_id: str
    path: Path | str  # a URI (cluster.object_store.ObjectURL) for runs on an object store
    status: str
    date: str
    rows: int
    shards: int
    shards_done: int
    key_params: str
    latest: bool
    params: dict = field(repr=False)
    model_hash: str | None = None
    data: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict, repr=False)
    phases: dict[str, PhaseInfo] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready: paths as strings."""
        values = asdict(self)
        values["path"] = str(self.path)
        return values


def compact_ints(values) -> str:
    """[0, 1, 2, 3, 9] -> '0-3,9'."""
    values = sorted(int(v) for v in values)
    parts, start = [], None
    for index, value in enumerate(values):
        if start is None:
            start = value
        if index + 1 == len(values) or values[index + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ",".join(parts)


def _lookup(params: dict, dotted: str):
    value = params
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def describe_params(job: str, params: dict) -> str:
    """The key parameters of a run as 'name=value' pairs (every scalar for an unknown job)."""
    keys = KEY_PARAMS.get(job) or tuple(k for k, v in params.items() if isinstance(v, (int, float, str, bool)))
    pairs = []
    for key in keys:
        value = _lookup(params, key)
        if value is None:
            continue
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            value = compact_ints(value)
        elif isinstance(value, (list, tuple)):
            value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        elif isinstance(value, float):
            value = f"{value:g}"
        pairs.append(f"{key}={value}")
    return " ".join(pairs)


def _phase_info(run_dir: Path, phase: str, shard_ids: list[str]) -> PhaseInfo:
    done = rows = 0
    for shard_id in shard_ids:
        try:
            rows += pq.read_metadata(run_dir / phase / f"part-{shard_id}.parquet").num_rows
            done += 1
        except (OSError, pa.ArrowInvalid):
            continue
    return PhaseInfo(len(shard_ids), done, rows)


def writer_alive(run_dir: Path) -> bool:
    """True when the run's lock names a process that may still be writing."""
    try:
        owner = json.loads((run_dir / LOCK).read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True  # being written right now (cluster/lock.py writes whole records)
    return stale_reason(owner) is None


def read_run(run_dir: Path) -> RunInfo:
    """A run folder's summary; BadInput when it has no readable manifest."""
    run_dir = Path(run_dir)
    try:
        manifest = json.loads((run_dir / MANIFEST).read_text())
    except FileNotFoundError:
        raise BadInput(f"{run_dir} is not a dreamctl run folder (no {MANIFEST})") from None
    except (OSError, ValueError) as error:
        raise BadInput(f"{run_dir / MANIFEST}: cannot read it ({type(error).__name__})") from None
    if (run_dir / SUCCESS).exists():
        status = "done"
    elif writer_alive(run_dir):
        status = "running"
    else:
        status = "partial"
    phases = {phase: _phase_info(run_dir, phase, ids) for phase, ids in manifest.get("phases", {}).items()}
    job = manifest.get("job", run_dir.parent.name)
    latest = run_dir.parent / "latest"
    params = manifest.get("params", {})
    return RunInfo(
        job=job, run_id=manifest.get("run_id", run_dir.name), path=run_dir, status=status,
        date=manifest.get("updated", ""), rows=sum(p.rows for p in phases.values()),
        shards=sum(p.shards for p in phases.values()), shards_done=sum(p.done for p in phases.values()),
        key_params=describe_params(job, params),
        latest=(latest.is_symlink() or latest.is_file()) and follow_latest(latest).resolve() == run_dir.resolve(),
        params=params, model_hash=manifest.get("model_hash"), data=manifest.get("data", {}),
        versions=manifest.get("versions", {}), phases=phases,
    )


def run_dirs(results_dir: Path) -> list[Path]:
    """Every ``<results>/<job>/<run_id>`` folder with a manifest (links like ``latest`` skipped)."""
    results_dir = Path(results_dir)
    return sorted(
        run_dir for job_dir in results_dir.iterdir() if job_dir.is_dir() and not job_dir.name.startswith((".", "_"))
        for run_dir in job_dir.iterdir()
        if run_dir.is_dir() and not run_dir.is_symlink() and (run_dir / MANIFEST).exists()
    ) if results_dir.is_dir() else []


def list_runs(results_dir: Path | str) -> list[RunInfo]:
    """All runs under ``results_dir`` (a folder or a filesystem URI), newest first."""
    if is_uri(results_dir):
        runs = [_read_object_run(run) for run in _object_run_dirs(results_dir)]
        return sorted(runs, key=lambda run: (run.date, run.job, run.run_id), reverse=True)
    if not Path(results_dir).is_dir():
        raise BadInput(f"no results folder at {results_dir}")
    runs = [read_run(run_dir) for run_dir in run_dirs(results_dir)]
    return sorted(runs, key=lambda run: (run.date, run.job, run.run_id), reverse=True)


def find_run(results_dir: Path | str, name: str) -> RunInfo:
    """One run by folder path, ``job/run_id`` (``precursor/latest`` too) or a unique run-id prefix."""
    if is_uri(results_dir):
        return _find_object_run(results_dir, name)
    results_dir = Path(results_dir)
    for candidate in (Path(name), results_dir / name):
        candidate = follow_latest(candidate)  # `latest`: a link, or a run-id file copied from an object store
        if (candidate / MANIFEST).exists():
            return read_run(candidate)
    matches = [run_dir for run_dir in run_dirs(results_dir) if run_dir.name.startswith(name)]
    if not matches:
        raise BadInput(f"no run {name!r} under {results_dir} (see dreamctl runs --out {results_dir})")
    if len(matches) > 1:
        raise BadInput(f"run id {name!r} is ambiguous under {results_dir}: " + ", ".join(f"{p.parent.name}/{p.name}" for p in matches))
    return read_run(matches[0])


# ----- runs under a filesystem URI (cluster/object_store.py) ---------------------------------
def _object_run_dirs(results: str) -> list:
    """Every ``<uri>/<job>/<run_id>`` with a manifest, as Locations; BadInput when the URI
    holds nothing (or cannot be opened)."""
    from cluster.object_store import open_location

    root = open_location(results)
    try:
        jobs = [info.base_name for info in root.entries() if info.type == pafs.FileType.Directory]
    except OSError as error:
        raise BadInput(f"cannot list {root.display}: {str(error).splitlines()[0]}") from None
    if not jobs:
        raise BadInput(f"no results under {root.display}")
    runs = []
    for job in sorted(name for name in jobs if not name.startswith((".", "_"))):
        for info in root.entries(job):
            run = root.child(job, info.base_name)
            if info.type == pafs.FileType.Directory and run.info(MANIFEST).type == pafs.FileType.File:
                runs.append(run)
    return runs


def _read_object_run(run) -> RunInfo:
    """A run's summary from its objects (as :func:`read_run` from its folder)."""
    from cluster.object_store import ObjectLock, read_latest

    data = run.read(MANIFEST)
    if data is None:
        raise BadInput(f"{run.display} is not a dreamctl run folder (no {MANIFEST})")
    try:
        manifest = json.loads(data)
    except ValueError as error:
        raise BadInput(f"{run.display}/{MANIFEST}: cannot read it ({type(error).__name__})") from None
    if run.info(SUCCESS).type == pafs.FileType.File:
        status = "done"
    elif ObjectLock(run).holder_alive():
        status = "running"
    else:
        status = "partial"
    phases = {}
    for phase, shard_ids in manifest.get("phases", {}).items():
        done = rows = 0
        for shard_id in shard_ids:
            try:
                with run.filesystem.open_input_file(run.key(phase, f"part-{shard_id}.parquet")) as file:
                    rows += pq.read_metadata(file).num_rows
                done += 1
            except (OSError, pa.ArrowInvalid):
                continue
        phases[phase] = PhaseInfo(len(shard_ids), done, rows)
    job_name, run_name = run.display.rsplit("/", 2)[-2:]
    job = manifest.get("job", job_name)
    run_id = manifest.get("run_id", run_name)
    params = manifest.get("params", {})
    latest = read_latest(run.parent())
    return RunInfo(
        job=job, run_id=run_id, path=run.url(), status=status, date=manifest.get("updated", ""),
        rows=sum(p.rows for p in phases.values()), shards=sum(p.shards for p in phases.values()),
        shards_done=sum(p.done for p in phases.values()), key_params=describe_params(job, params),
        latest=latest == run_name, params=params, model_hash=manifest.get("model_hash"),
        data=manifest.get("data", {}), versions=manifest.get("versions", {}), phases=phases,
    )


def _find_object_run(results: str, name: str) -> RunInfo:
    """One run under a URI by ``job/run_id``, ``job/latest`` or a unique run-id prefix."""
    from cluster.object_store import open_location, read_latest

    root = open_location(results)
    if name.count("/") == 1:
        job, run_name = name.split("/")
        if run_name == "latest":
            run_name = read_latest(root.child(job)) or run_name
        run = root.child(job, run_name)
        if run.info(MANIFEST).type == pafs.FileType.File:
            return _read_object_run(run)
    matches = [run for run in _object_run_dirs(results) if run.display.rsplit("/", 1)[-1].startswith(name)]
    if not matches:
        raise BadInput(f"no run {name!r} under {root.display} (see dreamctl runs --out {root.display})")
    if len(matches) > 1:
        raise BadInput(f"run id {name!r} is ambiguous under {root.display}: "
                       + ", ".join("/".join(run.display.rsplit("/", 2)[-2:]) for run in matches))
    return _read_object_run(matches[0])
