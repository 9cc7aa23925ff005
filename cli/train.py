"""``dreamctl train``: train the CNN and save it with its standardization and data id."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cli.common import data_option, err, out
from core.model import TrainConfig

DEFAULTS = TrainConfig()


def train_and_save(data_spec: str, model_path: Path, config: TrainConfig | None = None) -> dict:
    """Load the data, train with a progress bar (default settings unless ``config``), save
    the model; return its metrics."""
    config = config or DEFAULTS
    from cluster.model_file import save_model
    from core.data import load_dataset
    from core.model import train_cnn

    data = load_dataset(data_spec)
    err.print(f"data {data.name}: {len(data.x_train):,} train / {len(data.x_test):,} test images")
    progress = Progress(
        TextColumn("[bold]train CNN"), BarColumn(), MofNCompleteColumn(), TextColumn("epochs"),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=err,
    )
    with progress:
        task = progress.add_task("train", total=config.epochs, status="")

        def on_epoch_end(epoch: int, logs: dict) -> None:
            status = f"loss {logs['loss']:.4f} acc {logs['accuracy']:.4f}"
            progress.update(task, advance=1, status=status)

        model, standardization, metrics = train_cnn(data, config, on_epoch_end)
    save_model(model, model_path, standardization, data.identity(), {**metrics, "config": config.__dict__})
    return metrics


def train(
    ctx: typer.Context,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = DEFAULTS.epochs,
    batch_size: Annotated[int, typer.Option(min=1, help="Mini-batch size.")] = DEFAULTS.batch_size,
    learning_rate: Annotated[float, typer.Option(min=0.0, help="SGD learning rate of the first epoch.")] = DEFAULTS.learning_rate,
    lr_decay: Annotated[float, typer.Option(min=0.0, max=1.0, help="Learning rate factor per epoch.")] = DEFAULTS.lr_decay,
    momentum: Annotated[float, typer.Option(min=0.0, max=1.0, help="SGD momentum.")] = DEFAULTS.momentum,
    dense_units: Annotated[int, typer.Option(min=1, help="Width of the dense layer.")] = DEFAULTS.dense_units,
    seed: Annotated[int, typer.Option(help="Random seed (weights, shuffling).")] = DEFAULTS.seed,
    model: Annotated[Path, typer.Option("--model", help="Where to save the .keras file.")] = Path("models/cnn.keras"),
) -> None:
    """Train the MNIST CNN (conv 32-64-128, dense 70) and save it as a .keras file."""
    config = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, lr_decay=lr_decay,
                         momentum=momentum, dense_units=dense_units, seed=seed)
    metrics = train_and_save(data_option(ctx), model, config)
    out.print(f"train accuracy {metrics['train_accuracy']:.4f}  test accuracy {metrics['test_accuracy']:.4f}")
    out.print(f"saved {model}")
