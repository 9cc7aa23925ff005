"""``dreamctl precursor``: systematic coarse-pattern search, then full OIP runs (§3)."""

from __future__ import annotations

import typer
from rich.table import Table

from cli.common import out, print_dead, print_outcome, run_job
from cli.spec import options_from
from cluster.options import RayOptions, RunOptions
from jobs.precursor import PrecursorJob


@options_from(job=PrecursorJob, run=RunOptions, ray=RayOptions)
def precursor(ctx: typer.Context, job: PrecursorJob, run: RunOptions, ray: RayOptions) -> None:
    """Precursor run: score every coarse pattern per map, then optimize the best ones."""
    from jobs.precursor import best_candidates

    job, outcome = run_job(ctx, job, run, ray)
    scores = outcome.tables["scores"].to_pandas()
    positive_share = (scores["loss"] > 0).groupby(scores["map"]).mean()
    best = best_candidates(outcome.tables["oips"])
    table = Table(title=f"precursor {job.layer}: {job.n_patterns:,} patterns × {job.test_epochs} epochs, "
                        f"top {job.top} × {job.full_epochs} epochs")
    for column in ("map", "best loss", "alive", "rank", "pattern", "coarse levels", "patterns > 0"):
        table.add_column(column, justify="right")
    for row in best.itertuples():
        table.add_row(str(row.map), f"{row.loss:.4g}", "yes" if row.alive else "[red]dead", str(row.rank),
                      str(row.pattern), job.describe_pattern(row.pattern), f"{positive_share[row.map]:.1%}")
    out.print(table)
    print_dead(best)
    print_outcome(outcome)
