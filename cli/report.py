"""``dreamctl report``: the map atlas of a precursor run as an HTML page (issue 10)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import Actors, Address, ChunkSize, CpusPerActor, Fresh, GpusPerActor, data_option, out, run_cnn_job
from jobs.atlas import AtlasJob

DEFAULTS = AtlasJob()  # the options' defaults live on the job spec


def report(
    ctx: typer.Context,
    run_dir: Annotated[Path | None, typer.Argument(help="Precursor run folder. Default: OUT/precursor/latest.", show_default=False)] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Results folder whose precursor/latest is the default RUN_DIR (the metrics go to the run's own results folder, under atlas/).")] = Path("results"),
    oip_restarts: Annotated[int, typer.Option(min=1, help="Random 4-scale starts per map when no oip run has the map.")] = DEFAULTS.oip_restarts,
    oip_epochs: Annotated[int, typer.Option(min=0, help="Ascent steps of those starts.")] = DEFAULTS.oip_epochs,
    oip_seed: Annotated[int, typer.Option(help="Seed of those starts.")] = DEFAULTS.oip_seed,
    reuse_oip: Annotated[bool, typer.Option(help="Reuse the newest finished oip run of the same model and layer for the maps it has.")] = True,
    top_images: Annotated[int, typer.Option(min=1, help="Strongest test images kept per map.")] = DEFAULTS.top_images,
    model: Annotated[Path | None, typer.Option("--model", help="The CNN the precursor run used. Default: models/cnn.keras.", show_default=False)] = None,
    fresh: Fresh = False,
    address: Address = None,
    actors: Actors = None,
    cpus_per_actor: CpusPerActor = 1.0,
    gpus_per_actor: GpusPerActor = 0.0,
    chunk_size: ChunkSize = 256,
) -> None:
    """Per-map metrics of a precursor run on the actors, then RUN_DIR/report/index.html."""
    from cluster.lock import RunLock
    from cluster.model_file import DEFAULT_MODEL, file_hash, read_metadata
    from cluster.store import LOCK
    from core.data import load_dataset
    from core.errors import BadInput
    from jobs.atlas import find_oip_run, map_inputs, read_precursor_run
    from jobs.report import write_report

    run = read_precursor_run(run_dir if run_dir is not None else out_dir / "precursor" / "latest")
    model_path = model or DEFAULT_MODEL
    metadata = read_metadata(model_path)
    if file_hash(model_path) != run.model_hash:
        raise BadInput(f"{run.run_dir} was made with model {run.model_hash}, but {model_path} is {file_hash(model_path)}; pass --model")
    dataset = load_dataset(data_option(ctx))
    if dataset.checksum != metadata["data"]["checksum"]:
        raise BadInput(f"the model was trained on {metadata['data']['name']} (checksum {metadata['data']['checksum']}), "
                       f"--data gives {dataset.name}; pass the model's data set with --data")
    layer = run.params["layer"]
    found = find_oip_run(run.results_dir, run.model_hash, layer) if reuse_oip else None
    reused = {m: oip for m, oip in found[1].items() if m in set(run.best["map"])} if found else {}
    job = AtlasJob(precursor_run=run.run_id, layer=layer, grid=int(run.params["grid"]), levels=tuple(run.params["levels"]),
                   oip_restarts=oip_restarts, oip_epochs=oip_epochs, oip_seed=oip_seed,
                   oip_run=found[0] if reused else None, top_images=top_images, inputs=map_inputs(run, reused),
                   test_images=dataset.x_test, test_labels=dataset.y_test)
    outcome = run_cnn_job(job, model=model_path, data_spec=data_option(ctx), out=run.results_dir, fresh=fresh,
                          address=address, actors=actors, cpus_per_actor=cpus_per_actor,
                          gpus_per_actor=gpus_per_actor, chunk_size=chunk_size)
    metrics = outcome.tables["metrics"]
    lock = RunLock(run.run_dir / LOCK)  # the report is written into the precursor run's folder
    lock.acquire(f"run folder {run.run_dir}")
    try:
        path = write_report(run, metrics, dataset.x_test, dataset.y_test, outcome.run_id)
    finally:
        lock.release()
    dead = [m for m, alive in zip(metrics.column("map").to_pylist(), metrics.column("oip_alive").to_pylist()) if not alive]
    reuse_note = f" (random-start OIPs of {len(reused)} maps from oip run {found[0]})" if reused else ""
    out.print(f"{metrics.num_rows} maps; dead from random starts: {', '.join(map(str, dead)) or 'none'}{reuse_note}",
              soft_wrap=True)
    out.print(f"metrics: {outcome.run_dir}", soft_wrap=True)
    out.print(f"report: {path}", soft_wrap=True)
    out.print(f"open: {path.resolve().as_uri()}", soft_wrap=True)
