"""``dreamctl train``: train the CNN and save it with its standardization and data id."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import data_option, err, out
from cli.spec import options_from
from cluster.options import DEFAULT_MODEL, parse_model
from core.errors import BadParameter
from core.model import TrainConfig
from core.params import parse_path


@options_from(config=TrainConfig)
def train(
    ctx: typer.Context,
    config: TrainConfig,
    model: Annotated[str, typer.Option("--model", help="Where to save the .keras file.")] = str(DEFAULT_MODEL),
) -> None:
    """Train the MNIST CNN (conv 32-64-128, dense 70) and save it as a .keras file."""
    from cluster.runner import check_out_folder
    from cluster.training import train_and_save

    model = model_to_write(model)
    check_out_folder(model.parent, "model")
    metrics = train_and_save(data_option(ctx), model, config, err)
    out.print(f"train accuracy {metrics['train_accuracy']:.4f}  test accuracy {metrics['test_accuracy']:.4f}")
    out.print(f"saved {model}")


def model_to_write(text: str) -> Path:
    """``--model`` of ``train``: a name a file can have, not a folder, ending in .keras:
    checked before any training (Keras would refuse to save after the last epoch)."""
    try:
        if parse_path(text).is_dir():
            raise ValueError(f"{text} is a folder; name the .keras file to write")
        return parse_model(text)
    except ValueError as error:
        raise BadParameter("model", str(error)) from None
