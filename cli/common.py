"""What every job command shares: the consoles, the one call that runs a job, and the
lines that say where its results are."""

from __future__ import annotations

import os
from typing import Any

import typer
from rich.console import Console

from cli.quiet import import_tensorflow_quietly
from cluster import interrupts
from cluster.options import RayOptions, RunOptions
from core.errors import BadInput
from core.params import parse_path

class _Console(Console):
    """rich's Console, but a pipe whose reader has gone (``dreamctl runs | head -1``) raises
    BrokenPipeError (one line at exit, cli/app.py) instead of rich's silent exit 1; the
    stream is pointed at /dev/null so that nothing written later fails again."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.file.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
        raise BrokenPipeError


# Lines on stderr are never cut to the terminal's (or $COLUMNS') width: a log keeps one line per message.
err = _Console(stderr=True, soft_wrap=True)  # progress and logs
out = _Console()  # data: tables, paths


def data_option(ctx: typer.Context) -> str:
    """The global ``--data`` option (cli/app.py): a data set's name, or a path no file could
    be refused here (core.params.parse_path) before anything is loaded."""
    data = ctx.find_root().params["data"]
    if data not in ("mnist-5k", "mnist"):  # the names core.data.load_dataset knows
        try:
            parse_path(data)
        except ValueError as error:
            raise BadInput(f"--data: {error}") from None
    return data


def run_job(ctx: typer.Context, job: Any, run: RunOptions, ray: RayOptions | None):
    """Run ``job`` (on Ray, or here when ``ray`` is None) with progress on stderr; returns
    (the job as run, its outcome)."""
    data = data_option(ctx)
    if job.needs_model:
        if ray is not None:  # seconds at most: before TensorFlow's import (the runner checks it again)
            from cluster.runtime import check_ray_address

            check_ray_address(ray.address)
        import_tensorflow_quietly()
    from cluster.runner import execute

    if ray is None:
        interrupts.mark_started()  # a job run in this process starts now (on Ray: when Ray starts)
    return execute(job, run, ray, data, err)


def run_experiment(ctx: typer.Context, experiment: Any, run: RunOptions, ray: RayOptions) -> list:
    """Run every run of an experiment on Ray, with progress on stderr; returns (job, outcome)
    of each, the experiment's own summary run last."""
    from cluster.runtime import check_ray_address

    data = data_option(ctx)
    check_ray_address(ray.address)  # seconds at most: before TensorFlow's import (the runner checks it again)
    import_tensorflow_quietly()
    from cluster.runner import run_experiment as run_all

    return run_all(experiment, run, ray, data, err)


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
