"""Training the CNN with a progress bar, and finding (or first training) the model a job uses."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cluster import interrupts
from cluster.options import DEFAULT_MODEL
from core.data import Dataset, load_dataset
from core.errors import BadParameter
from core.model import TrainConfig


def train_and_save(data: Dataset | str, model_path: Path, config: TrainConfig, console: Console) -> dict:
    """Train on ``data`` (a data set, or its ``--data`` spec to load) with a progress bar on
    ``console``, save the model with its standardization and data id; return its metrics."""
    from cluster.model_file import save_model
    from core.model import train_cnn

    model_path = Path(model_path)
    if model_path.is_dir():
        raise BadParameter("model", f"{model_path} is a folder; name the .keras file to write")
    if isinstance(data, str):
        data = load_dataset(data)
    console.print(f"data {data.name}: {len(data.x_train):,} train / {len(data.x_test):,} test images")
    interrupts.mark_started()
    progress = Progress(
        TextColumn("[bold]train CNN"), BarColumn(), MofNCompleteColumn(), TextColumn("epochs"),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
    )
    with progress:
        task = progress.add_task("train", total=config.epochs, status="")

        def on_epoch_end(epoch: int, logs: dict) -> None:
            progress.update(task, advance=1, status=f"loss {logs['loss']:.4f} acc {logs['accuracy']:.4f}")

        model, standardization, metrics = train_cnn(data, config, on_epoch_end)
    save_model(model, model_path, standardization, data.identity(), {**metrics, "config": config.__dict__})
    return metrics


def ensure_model(model: Path | None, data_spec: str, console: Console,
                 config: TrainConfig | None = None, dataset: Dataset | None = None) -> tuple[Path, dict]:
    """The model a job uses: a given path must hold a model; the default one is trained
    first (with ``config``, default settings if None) when it is missing, on ``dataset``
    (loaded from ``data_spec`` when None, before anything is said or trained).

    Returns (path, metadata). A missing, corrupt or wrong-shape file raises BadInput."""
    from cluster.model_file import load_model

    if model is None and not DEFAULT_MODEL.exists():
        data = dataset if dataset is not None else load_dataset(data_spec)
        console.print(f"[yellow]No model at {DEFAULT_MODEL}: training one first on {data.name} (dreamctl train).")
        train_and_save(data, DEFAULT_MODEL, config or TrainConfig(), console)
    path = Path(model or DEFAULT_MODEL)
    if not path.is_file():
        raise BadParameter("model", f"no model file at {path} (train one with: dreamctl train --model {path})")
    _, metadata = load_model(path)
    return path, metadata
