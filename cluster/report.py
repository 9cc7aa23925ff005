"""``dreamctl report`` as one operation: find the precursor run, copy it down when it is on an
object store, check the model and the data, compute the atlas metrics on Ray, gather what
other runs of the same model and data add, render the page (jobs/report.py) and write it into
the precursor run's ``report/`` folder under the run's lock (uploaded next to the run when it
came from an object store). Every run is read through the store's verified reader.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
from rich.console import Console

from cluster.model_file import file_hash, read_metadata
from cluster.options import DEFAULT_MODEL, RayOptions, RunOptions, is_uri
from cluster.runner import check_out_folder, execute
from cluster.storage import LATEST, MANIFEST, LocalBackend
from cluster.store import Run, RunStore, copy_run, finished_run, job_runs, newest_finished
from core.errors import BadInput
from jobs.atlas import AtlasJob, PrecursorRun, map_inputs, reused_oips
from jobs.oip import OIP_SCHEMA
from jobs.precursor import OIPS_SCHEMA, best_candidates
from jobs.report import EXTRA_JOBS, REPORT_DIR, ExtraRun, render_report


@dataclass(frozen=True)
class ReportOutcome:
    """What the report did: the atlas metrics (one row per map), which oip run it reused,
    where the atlas run and the page are, and where the page was uploaded."""

    metrics: pa.Table
    reused_from: str | None
    reused_maps: int
    atlas_run: str
    page: str
    page_file: Path | None  # the page as a local file (to open in a browser)
    copied_to: str | None = None
    uploaded: str | None = None


def locate_run(run_dir: str | None, out: Path | str) -> tuple[Path | str, str]:
    """(results folder or URI, run name) of the precursor run ``RUN_DIR`` names: a run folder
    (``results/precursor/<id>`` or ``.../latest``), a run URI, or None for ``OUT/precursor/latest``."""
    if run_dir is None:
        return out, LATEST
    if is_uri(run_dir):
        base, mark, query = run_dir.partition("?")
        pieces = base.rstrip("/").rsplit("/", 2)
        if len(pieces) < 3 or not pieces[0].split("://", 1)[1]:
            raise BadInput(f"{base} names no run (scheme://bucket/prefix/precursor/<run_id or latest>)")
        root, job, name = pieces[0] + mark + query, pieces[1], pieces[2]
    else:
        folder = Path(run_dir)
        root, job, name = folder.parent.parent, folder.parent.name, folder.name
    if job != "precursor":
        try:
            claimed = finished_run(root, job, name).job
        except BadInput:
            claimed = None
        if claimed is None:
            raise BadInput(f"{run_dir} is not a dreamctl run folder of a precursor run (no precursor/<run_id>/{MANIFEST})")
        raise BadInput(f"{run_dir} is a {claimed!r} run; the report needs a precursor run")
    return root, name


def dreams_of(results, model_hash: str | None, layer: str, warn) -> dict[int, bytes]:
    """map -> dream PNG from the newest finished ``dream --maps`` runs of this model and layer."""
    runs = [run for _, run in job_runs(results, "dream") if isinstance(run, Run) and run.status == "done"
            and run.model_hash == model_hash and run.params.get("layer") == layer and not run.params.get("objective")]
    found: dict[int, bytes] = {}
    for run in sorted(runs, key=lambda r: str(r.manifest.get("updated", "")), reverse=True):
        try:
            for map_id in run.verify().params.get("maps", []):
                name = f"dream-map{int(map_id):04d}.png"
                if int(map_id) not in found and run.has_output(name):
                    found[int(map_id)] = run.output(name)
        except BadInput as problem:
            warn(f"skipped: {problem}")
    return found


def extras_of(results, data_checksum: str | None, warn) -> list[ExtraRun]:
    """The latest KMeans, MLP and clusters runs on the same data set."""
    extras = []
    for job, (phase, figures) in EXTRA_JOBS.items():
        try:
            run = finished_run(results, job, LATEST)
        except BadInput as problem:
            if "no finished" not in str(problem):
                warn(f"skipped: {problem}")
            continue
        if run.data.get("checksum") == data_checksum:
            extras.append(ExtraRun(job, run.run_id, {name: run.output(name) for name in figures if run.has_output(name)},
                                   run.table(phase)))
    return extras


def make_report(settings: AtlasJob, run_options: RunOptions, ray: RayOptions, run_dir: str | None, reuse_oip: bool,
                copy_to: Path, data_spec: str, console: Console) -> ReportOutcome:
    """The whole ``dreamctl report`` (see the module docstring)."""
    from core.data import load_dataset

    warn = lambda message: console.print(f"[yellow]{message}", soft_wrap=True)  # noqa: E731
    root, name = locate_run(run_dir, run_options.out)
    source = finished_run(root, "precursor", name)
    run, copied_to = source, None
    if not isinstance(source.backend, LocalBackend):
        check_out_folder(copy_to, "copy_to")
        run = copy_run(source, LocalBackend(copy_to), warn)
        copied_to = run.show()
    model_path = run_options.model or DEFAULT_MODEL
    metadata = read_metadata(model_path)
    if file_hash(model_path) != run.model_hash:
        raise BadInput(f"{run.show()} was made with model {run.model_hash}, but {model_path} is "
                       f"{file_hash(model_path)}; pass --model")
    dataset = load_dataset(data_spec)
    if dataset.checksum != metadata["data"]["checksum"]:
        raise BadInput(f"the model was trained on {metadata['data']['name']} (checksum {metadata['data']['checksum']}), "
                       f"--data gives {dataset.name}; pass the model's data set with --data")
    precursor = PrecursorRun(run.run_id, run.params, run.model_hash, run.data, best_candidates(run.table("oips", OIPS_SCHEMA)))
    layer = run.params["layer"]
    results = run.backend
    reused, reused_from = {}, None
    if reuse_oip:
        oip_run = newest_finished(results, "oip", lambda r: r.model_hash == run.model_hash and
                                  r.params.get("layer") == layer and not r.params.get("warmup"), warn)
        if oip_run is not None:  # random starts only: a warm-up run is another method
            maps = set(precursor.best["map"])
            reused = {m: oip for m, oip in reused_oips(oip_run.table("oips", OIP_SCHEMA), oip_run.run_id,
                                                       oip_run.params).items() if m in maps}
            reused_from = oip_run.run_id if reused else None
    job = replace(settings, precursor_run=run.run_id, layer=layer, grid=int(run.params["grid"]),
                  levels=tuple(run.params["levels"]), oip_run=reused_from, inputs=map_inputs(precursor, reused),
                  test_images=dataset.x_test, test_labels=dataset.y_test)
    _, atlas = execute(job, replace(run_options, out=results.root, model=model_path), ray, data_spec, console)
    metrics = atlas.tables["metrics"]
    files = render_report(precursor, metrics, dataset.x_test, dataset.y_test, atlas.run_id,
                          dreams_of(results, run.model_hash, layer, warn), extras_of(results, dataset.checksum, warn))
    files = {f"{REPORT_DIR}/{name}": data for name, data in files.items()}
    with RunStore(results, "precursor", run.run_id, {}, warn) as store:  # into the run's folder, under its lock
        store.attach()
        store.add_files(files)
        page = store.location(f"{REPORT_DIR}/index.html")
    uploaded = None
    if copied_to is not None:
        with RunStore(source.backend, "precursor", source.run_id, {}, warn) as remote:
            remote.attach()
            remote.add_files(files)
            uploaded = remote.location(REPORT_DIR)
    return ReportOutcome(metrics, reused_from, len(reused), atlas.run_dir, page, Path(page), copied_to, uploaded)

