"""The ``dreamctl`` command: a thin Typer layer over jobs/ and cluster/.

Exit codes: 0 done; 1 job failed; 2 bad input (one line, no traceback); 3 interrupted with
partial results saved (rerun the same command to resume).
"""

from __future__ import annotations

import sys
from typing import Annotated

from cli.quiet import import_tensorflow_quietly

import_tensorflow_quietly()

import typer  # noqa: E402
from typer._click.exceptions import UsageError  # noqa: E402  (typer vendors click)

from cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, GlobalOptions, err  # noqa: E402
from cli.dream import dream  # noqa: E402
from cli.experiment import app as experiment_app  # noqa: E402
from cli.kmeans import app as kmeans_app  # noqa: E402
from cli.mlp import app as mlp_app  # noqa: E402
from cli.oip import oip  # noqa: E402
from cli.precursor import precursor  # noqa: E402
from cli.train import train  # noqa: E402
from core.errors import BadInput  # noqa: E402

TYPER_INTERRUPTED = 130  # typer returns 130 after Ctrl-C (standalone_mode=False)
INTERRUPTED_MESSAGE = "[yellow]interrupted: finished shards are saved; rerun the same command to resume"

app = typer.Typer(
    name="dreamctl",
    help="Distributed batch experiments on an MNIST CNN: OIPs, precursor runs, deep dreams, KMeans sweeps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main_options(
    ctx: typer.Context,
    data: Annotated[str, typer.Option("--data", help="Data set: mnist-5k (bundled 5,000 digits), mnist (Keras cache), an mnist.npz, or a folder of IDX files.")] = "mnist-5k",
) -> None:
    ctx.obj = GlobalOptions(data=data)


app.command()(train)
app.command()(oip)
app.command()(precursor)
app.add_typer(kmeans_app)
app.add_typer(mlp_app)
app.add_typer(experiment_app)
app.command()(dream)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and turn errors into exit codes and one-line messages."""
    from cluster.scheduler import JobFailed

    try:
        exit_code = app(args=argv, standalone_mode=False)
    except typer.Abort:
        err.print(INTERRUPTED_MESSAGE)
        return EXIT_INTERRUPTED
    except UsageError as error:
        err.print(f"error: {error.format_message()}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except BadInput as error:
        err.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        err.print(INTERRUPTED_MESSAGE)
        return EXIT_INTERRUPTED
    except JobFailed as error:
        err.print(f"job failed: {error}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_FAILED
    if exit_code == TYPER_INTERRUPTED:
        err.print(INTERRUPTED_MESSAGE)
        return EXIT_INTERRUPTED
    return exit_code if isinstance(exit_code, int) else 0


def run() -> None:  # console script
    sys.exit(main())
