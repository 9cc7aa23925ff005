"""What every job command shares: the consoles, exit codes, the one call that runs a job,
and the lines that say where its results are."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from cli.quiet import import_tensorflow_quietly
from cluster.options import RayOptions, RunOptions

err = Console(stderr=True)  # progress and logs
out = Console()  # data: tables, paths

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 3


def data_option(ctx: typer.Context) -> str:
    """The global ``--data`` option (cli/app.py)."""
    return ctx.find_root().params["data"]


def run_job(ctx: typer.Context, job: Any, run: RunOptions, ray: RayOptions | None):
    """Run ``job`` (on Ray, or here when ``ray`` is None) with progress on stderr; returns
    (the job as run, its outcome)."""
    if job.needs_model:
        import_tensorflow_quietly()
    from cluster.runner import execute

    return execute(job, run, ray, data_option(ctx), err)


def run_experiment(ctx: typer.Context, experiment: Any, run: RunOptions, ray: RayOptions) -> list:
    """Run every run of an experiment on Ray, with progress on stderr; returns (job, outcome)
    of each, the experiment's own summary run last."""
    import_tensorflow_quietly()
    from cluster.runner import run_experiment as run_all

    return run_all(experiment, run, ray, data_option(ctx), err)


def print_outcome(outcome, unit: str = "shards") -> None:
    """Where the results are, how many shards were reused, and the figures."""
    reused = f" ({outcome.shards_reused} of {outcome.shards_total} {unit} reused)" if outcome.shards_reused else ""
    out.print(f"results: {outcome.run_dir}{reused}")
    for location in outcome.outputs:
        out.print(f"{'summary' if location.endswith('.parquet') else 'figure'}: {location}")


def print_dead(best) -> None:
    """One line naming the maps that stayed at loss 0 (``best``: one row per map)."""
    dead = best.loc[~best["alive"], "map"].tolist()
    out.print(f"{len(best) - len(dead)} of {len(best)} maps alive" + (f"; dead maps: {', '.join(map(str, dead))}" if dead else ""))
