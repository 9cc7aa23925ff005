"""``dreamctl report``: the map atlas of a precursor run as an HTML page (issue 10)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from cli.common import data_option, out, run_job
from cli.spec import options_from
from cluster.options import RayOptions, RunOptions
from jobs.atlas import AtlasJob


@options_from(settings=(AtlasJob, ("oip_restarts", "oip_epochs", "oip_seed", "top_images")), run=RunOptions,
              ray=RayOptions)
def report(
    ctx: typer.Context,
    settings: AtlasJob,
    run: RunOptions,
    ray: RayOptions,
    run_dir: Annotated[str | None, typer.Argument(help="Precursor run folder or URI. Default: OUT/precursor/latest.", show_default=False)] = None,
    reuse_oip: Annotated[bool, typer.Option(help="Reuse the newest finished oip run of the same model and layer for the maps it has.")] = True,
    copy_to: Annotated[Path, typer.Option(help="Where a run read from a URI is copied (checked part by part) and its metrics written.")] = Path("results/copies"),
) -> None:
    """Per-map metrics of a precursor run on the actors, then RUN_DIR/report/index.html
    (for a run on an object store: made on a local copy, then uploaded next to the run)."""
    from cluster.lock import RunLock
    from cluster.model_file import file_hash, read_metadata
    from cluster.object_store import copy_run_down, finished_run, split_run_uri, upload_folder
    from cluster.options import DEFAULT_MODEL, is_uri
    from cluster.runner import check_out_folder
    from cluster.store import LOCK
    from core.data import load_dataset
    from core.errors import BadInput
    from jobs.atlas import find_oip_run, map_inputs, read_precursor_run
    from jobs.report import write_report

    remote = None  # the run's Location when it is on an object store
    if run_dir is not None and is_uri(run_dir):
        remote = finished_run(*split_run_uri(run_dir))
    elif run_dir is None and is_uri(run.out):
        remote = finished_run(run.out, "precursor")
    if remote is not None:
        check_out_folder(copy_to, "copy_to")
        local_run = copy_run_down(remote, copy_to / "precursor")
        out.print(f"copied {remote.display} to {local_run}", soft_wrap=True)
    else:
        local_run = Path(run_dir) if run_dir is not None else run.out / "precursor" / "latest"
    precursor = read_precursor_run(local_run)
    model_path = run.model or DEFAULT_MODEL
    metadata = read_metadata(model_path)
    if file_hash(model_path) != precursor.model_hash:
        raise BadInput(f"{precursor.run_dir} was made with model {precursor.model_hash}, but {model_path} is "
                       f"{file_hash(model_path)}; pass --model")
    dataset = load_dataset(data_option(ctx))
    if dataset.checksum != metadata["data"]["checksum"]:
        raise BadInput(f"the model was trained on {metadata['data']['name']} (checksum {metadata['data']['checksum']}), "
                       f"--data gives {dataset.name}; pass the model's data set with --data")
    layer = precursor.params["layer"]
    found = find_oip_run(precursor.results_dir, precursor.model_hash, layer) if reuse_oip else None
    reused = {m: oip for m, oip in found[1].items() if m in set(precursor.best["map"])} if found else {}
    job = replace(settings, precursor_run=precursor.run_id, layer=layer, grid=int(precursor.params["grid"]),
                  levels=tuple(precursor.params["levels"]), oip_run=found[0] if reused else None,
                  inputs=map_inputs(precursor, reused), test_images=dataset.x_test, test_labels=dataset.y_test)
    _, outcome = run_job(ctx, job, replace(run, out=precursor.results_dir, model=model_path), ray)
    metrics = outcome.tables["metrics"]
    lock = RunLock(precursor.run_dir / LOCK)  # the report is written into the precursor run's folder
    lock.acquire(f"run folder {precursor.run_dir}")
    try:
        path = write_report(precursor, metrics, dataset.x_test, dataset.y_test, outcome.run_id)
    finally:
        lock.release()
    dead = [m for m, alive in zip(metrics.column("map").to_pylist(), metrics.column("oip_alive").to_pylist()) if not alive]
    reuse_note = f" (random-start OIPs of {len(reused)} maps from oip run {found[0]})" if reused else ""
    out.print(f"{metrics.num_rows} maps; dead from random starts: {', '.join(map(str, dead)) or 'none'}{reuse_note}",
              soft_wrap=True)
    out.print(f"metrics: {outcome.run_dir}", soft_wrap=True)
    out.print(f"report: {path}", soft_wrap=True)
    out.print(f"open: {path.resolve().as_uri()}", soft_wrap=True)
    if remote is not None:
        uploaded = upload_folder(path.parent, remote, f"run {remote.display}")
        out.print(f"uploaded: {uploaded}", soft_wrap=True)
