"""``dreamctl runs``: the runs under a results folder (status, rows, key parameters), and one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import out

app = typer.Typer(name="runs", help="List the runs under a results folder: job, id, parameters, status, rows, date.",
                  invoke_without_command=True, no_args_is_help=False)

ResultsDir = Annotated[str, typer.Option("--out", help="Results folder (or pyarrow filesystem URI, s3://bucket/prefix) to look in.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON to stdout instead of a table.")]
STATUS_STYLE = {"done": "green", "running": "cyan", "partial": "yellow", "damaged": "red"}


def results_location(text: str) -> Path | str:
    """``--out`` as a folder or a filesystem URI (as the job commands read it)."""
    from cluster.options import parse_out
    from core.errors import BadInput

    try:
        return parse_out(text)
    except ValueError as error:
        raise BadInput(f"--out: {error}") from None


@app.callback()
def runs(ctx: typer.Context, out_dir: ResultsDir = "results", as_json: Json = False) -> None:
    """List every run under the results folder, newest first (status done / running / partial /
    damaged, with the reason below the table)."""
    if ctx.invoked_subcommand is not None:
        return
    from cluster.runs import list_runs

    found = list_runs(results_location(out_dir))
    if as_json:
        out.print_json(json.dumps([run.to_dict() for run in found], default=str))
        return
    table = Table(title=f"runs under {out_dir}")
    for column in ("job", "run id", "status", "rows", "shards", "date", "parameters"):
        table.add_column(column, justify="right" if column in ("rows", "shards") else "left")
    for run in found:
        style = STATUS_STYLE.get(run.status, "")
        table.add_row(run.job, run.run_id + (" (latest)" if run.latest else ""), f"[{style}]{run.status}",
                      f"{run.rows:,}", f"{run.shards_done}/{run.shards}", run.date, run.key_params)
    out.print(table)
    for run in found:
        if run.problem:
            out.print(f"damaged: {run.problem}", markup=False, highlight=False, soft_wrap=True)
    if not found:
        out.print(f"no runs under {out_dir}")


@app.command()
def show(
    run: Annotated[str, typer.Argument(help="A run: its folder, job/run_id (e.g. precursor/latest) or a unique run-id prefix.")],
    out_dir: ResultsDir = "results",
    as_json: Json = False,
) -> None:
    """One run: parameters, model, data, versions and every phase's shards and rows."""
    from cluster.runs import find_run

    info = find_run(results_location(out_dir), run)
    if as_json:
        out.print_json(json.dumps(info.to_dict(), default=str))
        return
    table = Table(title=f"{info.job} run {info.run_id}: {info.status}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for name, value in (("folder", info.path), ("status", info.status), ("problem", info.problem or "–"), ("updated", info.date),
                        ("model", str(info.model_hash)), ("data", json.dumps(info.data)),
                        ("rows", f"{info.rows:,}"), ("shards", f"{info.shards_done}/{info.shards}")):
        table.add_row(name, value)
    for phase, phase_info in info.phases.items():
        table.add_row(f"phase {phase}", f"{phase_info.done}/{phase_info.shards} shards, {phase_info.rows:,} rows")
    for key, value in info.params.items():
        table.add_row(f"param {key}", json.dumps(value) if not isinstance(value, str) else value)
    out.print(table)
