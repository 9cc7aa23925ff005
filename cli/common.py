"""What every job command shares: options, the model, running on Ray, exit codes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from core.errors import BadInput


err = Console(stderr=True)  # progress and logs
out = Console()  # data: tables, paths

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 3

# ----- shared options ------------------------------------------------------------------
Address = Annotated[str | None, typer.Option("--address", help="Ray cluster address (ray://host:10001 or host:6379). Default: $RAY_ADDRESS, else a local Ray.", rich_help_panel="Ray")]
Actors = Annotated[int | None, typer.Option("--actors", min=1, help="Number of CNNWorker actors. Default: cluster CPUs ÷ --cpus-per-actor.", rich_help_panel="Ray")]
CpusPerActor = Annotated[float, typer.Option("--cpus-per-actor", min=0.5, help="CPUs per actor (also its TensorFlow threads).", rich_help_panel="Ray")]
GpusPerActor = Annotated[float, typer.Option("--gpus-per-actor", min=0.0, help="GPUs per actor (0 = CPU only; GPUs are hidden from CPU actors).", rich_help_panel="Ray")]
ChunkSize = Annotated[int, typer.Option("--chunk-size", min=1, help="Images per compiled ascent step (batch rows).", rich_help_panel="Ray")]
Out = Annotated[Path, typer.Option("--out", help="Results folder; the run goes to OUT/<job>/<run_id>/.")]
Fresh = Annotated[bool, typer.Option("--fresh", help="Discard this run's saved shards and start over (default: resume).")]
ModelPath = Annotated[Path | None, typer.Option("--model", help="CNN .keras file. Default: models/cnn.keras (trained first if missing).", show_default=False)]
Layer = Annotated[str, typer.Option("--layer", help="Conv layer: conv1 (32 maps), conv2 (64), conv3 (128).")]


@dataclass
class GlobalOptions:
    data: str = "mnist-5k"


def data_option(ctx: typer.Context) -> str:
    return ctx.find_root().ensure_object(GlobalOptions).data


def ensure_model(model: Path | None, data_spec: str) -> tuple[Path, dict]:
    """The model to use: a given path must exist; the default is trained first if missing.

    Returns (path, metadata). A missing, corrupt or wrong-shape file raises BadInput.
    """
    from cluster.model_file import DEFAULT_MODEL, load_model

    if model is None and not DEFAULT_MODEL.exists():
        err.print(f"[yellow]No model at {DEFAULT_MODEL}: training one first on {data_spec} (dreamctl train).")
        from cli.train import train_and_save

        train_and_save(data_spec, DEFAULT_MODEL)
    path = model or DEFAULT_MODEL
    if not path.is_file():
        raise BadInput(f"no model file at {path} (train one with: dreamctl train --model {path})")
    _, metadata = load_model(path)
    return path, metadata


def run_cnn_job(job, *, model: Path | None, data_spec: str, out: Path, fresh: bool, address: str | None,
                actors: int | None, cpus_per_actor: float, gpus_per_actor: float, chunk_size: int):
    """Run a job whose phases need the CNN: model, Ray, progress, the result store."""
    from cluster.progress import JobProgress
    from cluster.runner import WorkerOptions, run_job
    from cluster.runtime import ray_session

    model_path, metadata = ensure_model(model, data_spec)
    workers = WorkerOptions(actors, cpus_per_actor, gpus_per_actor, chunk_size)
    with ray_session(address) as ray_info:
        describe_ray(ray_info)
        with JobProgress(err) as progress:
            return run_job(job, out, ray_info, workers, progress, model_path, metadata["data"], fresh)


def describe_ray(ray_info) -> None:
    where = "local Ray" if ray_info.started_here else f"Ray at {ray_info.address}"
    err.print(f"{where}: {ray_info.cpus:g} CPUs, {ray_info.gpus:g} GPUs"
              + (f"; dashboard {ray_info.dashboard_url}" if ray_info.dashboard_url else ""))
