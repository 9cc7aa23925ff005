"""The runs under a results folder (``dreamctl runs``), each read through the store's verified
reader (cluster/store.py). Status:

- ``done``: ``_SUCCESS`` exists and every part and output checks out;
- ``running``: not done, and its lock names a writer that is alive (or on another host);
- ``partial``: neither (stopped or killed; rerunning its command resumes it);
- ``damaged``: the run cannot be shown, with the reason (a bad manifest, a part that no longer
  matches its commit record, ...). One damaged run never hides the others.

Rows and shards count the parts that verify.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.fs as pafs

from cluster.store import LATEST, Backend, Damaged, Run, backend_for, job_runs, open_run
from core.errors import BadInput, JobFailed

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
    done: int  # parts that verify
    rows: int  # rows in those parts


@dataclass(frozen=True)
class RunInfo:
    """One run as found. ``date``: the manifest's last update (ISO 8601); ``problem``: why a
    damaged run cannot be shown."""

    job: str
    run_id: str
    path: str  # a folder, or a URI for runs on an object store
    status: str
    date: str = ""
    rows: int = 0
    shards: int = 0
    shards_done: int = 0
    key_params: str = ""
    latest: bool = False
    params: dict = field(default_factory=dict, repr=False)
    model_hash: str | None = None
    data: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict, repr=False)
    phases: dict[str, PhaseInfo] = field(default_factory=dict)
    problem: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


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


def summarize(run: Run) -> RunInfo:
    """What ``dreamctl runs`` shows of a run; a finished run is verified whole."""
    status, problem = run.status, None
    if status == "done":
        try:
            run.verify()
        except Damaged as error:
            status, problem = "damaged", str(error)
    phases = {}
    for phase in run.manifest["phases"]:
        good = [part for part in run.parts(phase) if part.record is not None]
        phases[phase] = PhaseInfo(len(run.manifest["phases"][phase]), len(good), sum(p.record["rows"] for p in good))
    return RunInfo(
        job=run.job, run_id=run.run_id, path=run.show(), status=status, date=str(run.manifest.get("updated", "")),
        rows=sum(p.rows for p in phases.values()), shards=sum(p.shards for p in phases.values()),
        shards_done=sum(p.done for p in phases.values()), key_params=describe_params(run.job, run.params),
        latest=run.backend.latest(run.job) == run.run_id, params=run.params, model_hash=run.model_hash,
        data=run.data, versions=run.manifest.get("versions") or {}, phases=phases, problem=problem)


def _runs_of(backend: Backend, job: str) -> list[RunInfo]:
    return [summarize(run) if isinstance(run, Run) else
            RunInfo(job=job, run_id=name, path=backend.show(f"{job}/{name}"), status="damaged", problem=str(run))
            for name, run in job_runs(backend, job)]


def _listing(backend: Backend) -> list[pafs.FileInfo]:
    try:
        if backend.kind("") != pafs.FileType.Directory:
            raise BadInput(f"no results under {backend.show()}")
        return backend.listing("")
    except JobFailed as error:  # an object store that does not answer
        raise BadInput(str(error)) from None


def list_runs(out: Path | str) -> list[RunInfo]:
    """Every run under ``out`` (a folder or a filesystem URI), newest first."""
    backend = backend_for(out)
    runs = [info for job in _listing(backend) if job.type == pafs.FileType.Directory
            and not job.base_name.startswith((".", "_")) for info in _runs_of(backend, job.base_name)]
    return sorted(runs, key=lambda run: (run.date, run.job, run.run_id), reverse=True)


def find_run(out: Path | str, name: str) -> RunInfo:
    """One run by its folder (``results/precursor/<id>``), ``job/run_id`` (``precursor/latest``
    too) or a unique run-id prefix under ``out``."""
    backend = backend_for(out)
    candidates = []
    if name.count("/") == 1:
        candidates.append((backend, *name.split("/")))
    if not isinstance(out, str) and "/" in name:  # a run folder given as a path
        folder = Path(name)
        candidates.append((backend_for(folder.parent.parent), folder.parent.name, folder.name))
    for where, job, run_name in candidates:
        try:
            return summarize(open_run(where, job, run_name))
        except Damaged as problem:
            return RunInfo(job=job, run_id=run_name, path=where.show(f"{job}/{run_name}"), status="damaged",
                           problem=str(problem))
        except BadInput:
            if run_name == LATEST:
                raise
    matches = [run for run in list_runs(out) if run.run_id.startswith(name)]
    if not matches:
        raise BadInput(f"no run {name!r} under {backend.show()} (see dreamctl runs --out {backend.show()})")
    if len(matches) > 1:
        raise BadInput(f"run id {name!r} is ambiguous under {backend.show()}: "
                       + ", ".join(f"{run.job}/{run.run_id}" for run in matches))
    return matches[0]
