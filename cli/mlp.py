"""``dreamctl mlp train``: one run of the numpy MLP (algorithms.md §5), on pixels or on
cluster-distance features (§6), computed in this process with a per-epoch progress bar.

The run is one shard of ``jobs.mlp.MLPTrainJob``, stored by the run store like every job's
result (``<out>/mlp/<run_id>/``: the ``epochs`` table and ``curves.png``; layout in
cluster/storage.py). A rerun with the same options finds the finished part and only redraws
the figure.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.common import out, print_outcome, run_job
from cli.spec import options_from
from cluster.options import RunOptions
from jobs.mlp import MLPTrainJob

app = typer.Typer(name="mlp", help="The numpy MLP of algorithms.md §5 (784-70-30-10, sigmoid, log-loss, L2).", no_args_is_help=True)


def accuracy(value: float) -> str:
    return "—" if value != value else f"{value:.4f}"  # nan: not evaluated


@options_from(job=MLPTrainJob, run=(RunOptions, ("out", "fresh")))
def train(
    ctx: typer.Context,
    job: MLPTrainJob,
    run: RunOptions,
    threads: Annotated[int, typer.Option(min=1, help="BLAS/OpenMP threads of this process. 1 is fastest for these small matrices (and is what a Ray task per CPU gets).")] = 1,
) -> None:
    """Train the MLP with mini-batch gradient descent; write per-epoch metrics (Parquet) and
    cost/accuracy curves (PNG)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        job, outcome = run_job(ctx, job, run, None)
    frame = outcome.tables["epochs"].to_pandas()
    evaluated = frame.dropna(subset=["test_acc"])
    best = evaluated.loc[evaluated["test_acc"].idxmax()]
    final = evaluated.iloc[-1]
    table = Table(title=job.title(frame))
    for column in ("epochs", "final train acc", "final test acc", "best test acc", "at epoch", "train CPU s", "wall s"):
        table.add_column(column, justify="right")
    table.add_row(str(len(frame)), accuracy(final["train_acc"]), accuracy(final["test_acc"]), accuracy(best["test_acc"]),
                  str(int(best["epoch"])), f"{frame['cpu_seconds'].sum():.1f}", f"{frame['seconds'].sum():.1f}")
    out.print(table)
    if job.clusters is not None:
        out.print(f"features: KMeans fit + distances took {frame['prep_seconds'].iloc[0]:.1f} s "
                  f"({frame['prep_cpu_seconds'].iloc[0]:.1f} CPU s)")
    layers = sorted(int(c.rsplit("_", 1)[1]) for c in frame.columns if c.startswith("backward_cpu_s_"))
    per_layer = ", ".join(f"L{l}: fw {frame[f'forward_cpu_s_{l}'].mean():.4f} bw {frame[f'backward_cpu_s_{l}'].mean():.4f}"
                          for l in layers)
    out.print(f"CPU s per epoch by weight layer ({per_layer})")
    print_outcome(outcome)


app.command("train")(train)
