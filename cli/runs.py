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


KEY_PARAMS = {  # job -> the parameters that tell its runs apart at a glance
    "precursor": ("layer", "maps", "grid", "levels", "test_epochs", "top", "full_epochs"),
    "oip": ("layer", "maps", "epochs", "restarts", "seed"),
    "dream": ("image_name", "layer", "maps", "objective", "iterations", "epochs", "octaves", "tile_grid"),
    "kmeans": ("ks", "n_init", "scale", "samples"),
    "mlp": ("clusters", "scale", "mlp.epochs", "mlp.hidden"),
    "clusters": ("ks", "scale", "mlp.epochs"),
    "atlas": ("precursor_run", "layer", "maps", "oip_run", "oip_restarts", "oip_epochs"),
}


def compact_ints(values) -> str:
    """[0, 1, 2, 3, 9] -> '0-3,9'."""
    values = sorted(int(v) for v in values)
    parts, start = [], None
    for index, value in enumerate(values):
        if start is None:
            start = value
        if index + 1 == len(values) or values[index + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ",".join(parts)


def _lookup(params: dict, dotted: str):
    value = params
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def describe_params(job: str, params: dict) -> str:
    """The key parameters of a run as 'name=value' pairs (every scalar for an unknown job)."""
    keys = KEY_PARAMS.get(job) or tuple(k for k, v in params.items() if isinstance(v, (int, float, str, bool)))
    pairs = []
    for key in keys:
        value = _lookup(params, key)
        if value is None:
            continue
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            value = compact_ints(value)
        elif isinstance(value, (list, tuple)):
            value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        elif isinstance(value, float):
            value = f"{value:g}"
        pairs.append(f"{key}={value}")
    return " ".join(pairs)


def results_location(text: str) -> Path | str:
    """``--out`` as a folder or a filesystem URI (as the job commands read it)."""
    from cluster.options import parse_out
    from core.errors import BadInput

    try:
        return parse_out(text)
    except ValueError as error:
        raise BadInput(f"--out: {error}") from None


def shown(run) -> dict:
    """A run as ``--json`` prints it: its fields and its key parameters as one text."""
    return {**run.to_dict(), "key_params": describe_params(run.job, run.params)}


@app.callback()
def runs(ctx: typer.Context, out_dir: ResultsDir = "results", as_json: Json = False) -> None:
    """List every run under the results folder, newest first (status done / running / partial /
    damaged, with the reason below the table)."""
    if ctx.invoked_subcommand is not None:
        return
    from cluster.runs import list_runs

    found = list_runs(results_location(out_dir))
    if as_json:
        out.print_json(json.dumps([shown(run) for run in found], default=str))
        return
    table = Table(title=f"runs under {out_dir}")
    for column in ("job", "run id", "status", "rows", "shards", "date", "parameters"):
        table.add_column(column, justify="right" if column in ("rows", "shards") else "left")
    for run in found:
        style = STATUS_STYLE.get(run.status, "")
        table.add_row(run.job, run.run_id + (" (latest)" if run.latest else ""), f"[{style}]{run.status}",
                      f"{run.rows:,}", f"{run.shards_done}/{run.shards}", run.date, describe_params(run.job, run.params))
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
        out.print_json(json.dumps(shown(info), default=str))
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
