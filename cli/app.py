"""The ``dreamctl`` command: a thin Typer layer over jobs/ and cluster/.

Exit codes: 0 done; 1 job failed; 2 bad input (one line, no traceback); 3 interrupted with
partial results saved (rerun the same command to resume). SIGINT, SIGTERM and SIGHUP are
honoured from the first moment of :func:`main` (cluster/interrupts.py): exit 3 once the
job's work has begun, exit 2 before (nothing was started or written). Importing this module loads
neither TensorFlow nor Ray, nor the commands: :func:`main` does, after its signal handlers
are in place, so ``--help`` and argument errors are instant and Ctrl-C during the imports
is one line too.
"""

import functools
import signal
import sys

from cluster import interrupts

TYPER_INTERRUPTED = 130  # typer returns 130 after Ctrl-C (standalone_mode=False)
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 3  # success is 0
INTERRUPTED_MESSAGE = "[yellow]interrupted: finished shards are saved; rerun the same command to resume"
NOT_STARTED_MESSAGE = "[yellow]interrupted before anything started: nothing was written"


@functools.cache
def build_app():
    """The Typer app with every command (imports the command modules)."""
    from typing import Annotated

    import typer

    from cli.dream import dream
    from cli.experiment import app as experiment_app
    from cli.kmeans import app as kmeans_app
    from cli.mlp import app as mlp_app
    from cli.oip import oip
    from cli.precursor import precursor
    from cli.report import report
    from cli.runs import app as runs_app
    from cli.train import train

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
    return app


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and turn errors into exit codes and one-line messages."""
    restore_signals = interrupts.install()
    try:
        return _run(argv)
    except KeyboardInterrupt:  # before the app could catch it (its imports) or after it returned
        return interrupted()
    finally:
        restore_signals()


def _run(argv: list[str] | None) -> int:
    from typer import Abort
    from typer._click.exceptions import UsageError  # typer vendors click

    from core.errors import BadInput, JobFailed

    try:
        exit_code = build_app()(args=argv, standalone_mode=False)
    except Abort as error:
        if isinstance(error.__context__, EOFError):  # click reads any EOFError as Ctrl-D: a real one is a failure
            return fail(EXIT_FAILED, f"job failed: unexpected end of a file ({error.__context__})")
        return interrupted()
    except KeyboardInterrupt:
        return interrupted()
    except UsageError as error:
        return fail(EXIT_BAD_INPUT, f"error: {error.format_message()}")
    except BadInput as error:
        return fail(EXIT_BAD_INPUT, f"error: {error}")
    except JobFailed as error:
        return fail(EXIT_FAILED, f"job failed: {error}")
    except BrokenPipeError:  # cli/common.py's consoles, when stdout's reader has gone
        return fail(EXIT_FAILED, "error: the output was cut short: its reader closed the pipe")
    if exit_code == TYPER_INTERRUPTED:
        return interrupted()
    return exit_code if isinstance(exit_code, int) else 0


def interrupted() -> int:
    """Exit 3 once the job's work had begun, 2 before: one line either way."""
    if interrupts.started():
        return say(EXIT_INTERRUPTED, INTERRUPTED_MESSAGE)
    return say(EXIT_BAD_INPUT, NOT_STARTED_MESSAGE)


def fail(code: int, message: str) -> int:
    return say(code, message, markup=False)


def say(code: int, message: str, markup: bool = True) -> int:
    """Print ``message`` as one line on stderr and return ``code``. A second signal while
    it is written does not turn into a traceback."""
    try:
        with interrupts.held():
            from cli.common import err  # (still to import when the imports were interrupted)

            err.print(message, markup=markup, highlight=False, soft_wrap=True)
    except (KeyboardInterrupt, OSError):
        pass
    return code


def run() -> None:  # console script
    code = main()
    # main() honoured the signals while it ran and put the defaults back: once the exit code
    # is decided, a late signal must not turn it into a death by signal.
    for signum in interrupts.SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(code)
