"""``dreamctl train``: train the CNN and save it with its standardization and data id."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import data_option, err, out
from cli.spec import options_from
from cluster.options import DEFAULT_MODEL, parse_model
from core.errors import BadParameter
from core.model import TrainConfig


@options_from(config=TrainConfig)
def train(
    ctx: typer.Context,
    config: TrainConfig,
    model: Annotated[str, typer.Option("--model", help="Where to save the .keras file.")] = str(DEFAULT_MODEL),
) -> None:
    """Train the MNIST CNN (conv 32-64-128, dense 70) and save it as a .keras file."""
    from cluster.runner import check_out_folder
    from cluster.training import train_and_save

    try:
        model = parse_model(model)
    except ValueError as error:
        raise BadParameter("model", str(error)) from None
    check_out_folder(model.parent, "model")
    metrics = train_and_save(data_option(ctx), model, config, err)
    out.print(f"train accuracy {metrics['train_accuracy']:.4f}  test accuracy {metrics['test_accuracy']:.4f}")
    out.print(f"saved {model}")
