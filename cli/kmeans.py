"""``dreamctl kmeans sweep``: MiniBatchKMeans for every K of a range, one Ray task per K."""

from __future__ import annotations

import typer
from rich.table import Table

from cli.common import out, print_outcome, run_job
from cli.spec import options_from
from cluster.options import RayOptions, RunOptions
from jobs.kmeans import KMeansSweep

app = typer.Typer(name="kmeans", help="KMeans in pixel space (algorithms.md §6).", no_args_is_help=True)


@options_from(job=KMeansSweep, run=(RunOptions, ("out", "fresh")), ray=(RayOptions, ("address",)))
def sweep(ctx: typer.Context, job: KMeansSweep, run: RunOptions, ray: RayOptions) -> None:
    """Fit MiniBatchKMeans for every K (one Ray task each) on train + test pixels; record
    inertia, fit seconds, passes and silhouette; plot the elbow and the silhouette."""
    job, outcome = run_job(ctx, job, run, ray)
    frame = outcome.tables["sweep"].to_pandas().sort_values("k")
    table = Table(title=job.describe(frame))
    for column in ("K", "inertia", "fit s", "CPU s", "passes", "silhouette", "± std"):
        table.add_column(column, justify="right")
    for row in frame.itertuples():
        measured = row.silhouette_repeats > 0
        table.add_row(str(row.k), f"{row.inertia:,.6g}", f"{row.fit_seconds:.2f}", f"{row.fit_cpu_seconds:.2f}",
                      str(row.n_iter), f"{row.silhouette_mean:.4f}" if measured else "off",
                      ("exact" if row.silhouette_exact else f"{row.silhouette_std:.4f}") if measured else "")
    out.print(table)
    first = frame.iloc[0]
    if first["silhouette_repeats"] > 0:
        how = ("exact (every point)" if first["silhouette_exact"] else
               f"{int(first['silhouette_repeats'])} samples of {int(first['silhouette_sample']):,} points per K")
        best = frame.loc[frame["silhouette_mean"].idxmax()]
        out.print(f"silhouette: {how}; highest at K = {int(best['k'])} ({best['silhouette_mean']:.4f})")
    print_outcome(outcome, unit="K")


app.command("sweep")(sweep)
