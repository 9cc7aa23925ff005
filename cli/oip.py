"""``dreamctl oip``: OIPs for maps of a layer from random multi-scale starts."""

from __future__ import annotations

import typer
from rich.table import Table

from cli.common import out, print_dead, print_outcome, run_job
from cli.spec import options_from
from cluster.options import RayOptions, RunOptions
from jobs.oip import OipJob


@options_from(job=OipJob, run=RunOptions, ray=RayOptions)
def oip(ctx: typer.Context, job: OipJob, run: RunOptions, ray: RayOptions) -> None:
    """Find an OIP (input pattern maximizing a map's mean activation) for each map."""
    from jobs.oip import best_per_map

    job, outcome = run_job(ctx, job, run, ray)
    best = best_per_map(outcome.tables["oips"], outcome.tables.get("rescued"))
    table = Table(title=f"OIPs of {job.layer}: best of {job.restarts} restarts after {job.epochs} epochs")
    for column in ("map", "best loss", "alive", "alive restarts"):
        table.add_column(column, justify="right")
    alive_counts = outcome.tables["oips"].to_pandas().groupby("map")["alive"].sum()
    for row in best.itertuples():
        alive = "[red]dead" if not row.alive else "rescued" if row.rescued else "yes"
        table.add_row(str(row.map), f"{row.loss:.4g}", alive, str(int(alive_counts[row.map])))
    out.print(table)
    rescued = best.loc[best["rescued"], "map"].tolist()
    if rescued:
        out.print(f"dead from every random start, run again with a {job.rescue_warmup}-step {job.rescue} warm-up: "
                  f"{', '.join(map(str, rescued))} ({int(best.loc[best['rescued'], 'alive'].sum())} woken)", soft_wrap=True)
    print_dead(best)
    print_outcome(outcome)
