"""``dreamctl report``: the map atlas of a precursor run as an HTML page (cluster/report.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import data_option, err, out
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
    from cli.quiet import import_tensorflow_quietly
    from cluster.report import make_report

    import_tensorflow_quietly()
    outcome = make_report(settings, run, ray, run_dir, reuse_oip, copy_to, data_option(ctx), err)
    if outcome.copied_to:
        out.print(f"copied to {outcome.copied_to}", soft_wrap=True)
    metrics = outcome.metrics
    dead = [m for m, alive in zip(metrics.column("map").to_pylist(), metrics.column("oip_alive").to_pylist()) if not alive]
    reuse_note = (f" (random-start OIPs of {outcome.reused_maps} maps from oip run {outcome.reused_from})"
                  if outcome.reused_from else "")
    out.print(f"{metrics.num_rows} maps; dead from random starts: {', '.join(map(str, dead)) or 'none'}{reuse_note}",
              soft_wrap=True)
    out.print(f"metrics: {outcome.atlas_run}", soft_wrap=True)
    out.print(f"report: {outcome.page}", soft_wrap=True)
    out.print(f"open: {outcome.page_file.as_uri()}", soft_wrap=True)
    if outcome.uploaded:
        out.print(f"uploaded: {outcome.uploaded}", soft_wrap=True)
