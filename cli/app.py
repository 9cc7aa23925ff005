"""The ``dreamctl`` command: a thin Typer layer over jobs/ and cluster/.

Exit codes: 0 done; 1 job failed; 2 bad input (one line, no traceback); 3 interrupted with
partial results saved (rerun the same command to resume). Importing this module loads
neither TensorFlow nor Ray: ``--help`` and argument errors are instant.
"""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer
from typer._click.exceptions import UsageError  # typer vendors click

from cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, err
from cli.dream import dream
from cli.experiment import app as experiment_app
from cli.kmeans import app as kmeans_app
from cli.mlp import app as mlp_app
from cli.oip import oip
from cli.precursor import precursor
from cli.report import report
from cli.runs import app as runs_app
from cli.train import train
from core.errors import BadInput, JobFailed

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
    data: Annotated[str, typer.Option("--data", help="Data set: mnist-5k (bundled 5,000 digits), mnist (Keras cache), an mnist.npz, or a folder of IDX files.")] = "mnist-5k",
) -> None:
    """Global options (read by the commands through the root context)."""


app.command()(train)
app.command()(oip)
app.command()(precursor)
app.add_typer(kmeans_app)
app.add_typer(mlp_app)
app.add_typer(experiment_app)
app.command()(dream)
app.command()(report)
app.add_typer(runs_app)


def interrupt_on_sigterm(signum, frame) -> None:
    """SIGTERM ends dreamctl like Ctrl-C: finished shards stay saved (exit 3)."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and turn errors into exit codes and one-line messages."""
    previous = signal.signal(signal.SIGTERM, interrupt_on_sigterm)
    try:
        exit_code = app(args=argv, standalone_mode=False)
    except typer.Abort as error:
        if isinstance(error.__context__, EOFError):  # click reads any EOFError as Ctrl-D: a real one is a failure
            return fail(EXIT_FAILED, f"job failed: unexpected end of a file ({error.__context__})")
        err.print(INTERRUPTED_MESSAGE)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        err.print(INTERRUPTED_MESSAGE)
        return EXIT_INTERRUPTED
    except UsageError as error:
        return fail(EXIT_BAD_INPUT, f"error: {error.format_message()}")
    except BadInput as error:
        return fail(EXIT_BAD_INPUT, f"error: {error}")
    except JobFailed as error:
        return fail(EXIT_FAILED, f"job failed: {error}")
    finally:
        signal.signal(signal.SIGTERM, previous)
    if exit_code == TYPER_INTERRUPTED:
        err.print(INTERRUPTED_MESSAGE)
        return EXIT_INTERRUPTED
    return exit_code if isinstance(exit_code, int) else 0


def fail(code: int, message: str) -> int:
    err.print(message, markup=False, highlight=False, soft_wrap=True)
    return code


def run() -> None:  # console script
    sys.exit(main())
