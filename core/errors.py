"""Errors that end a job: bad input (exit code 2 at the CLI) and a failed job (exit code 1)."""


class BadInput(ValueError):
    """Bad user input: a missing file, an out-of-range map, a malformed option.

    The message is one line that tells the user what is wrong and, where possible,
    what would be right.
    """


class BadParameter(BadInput):
    """A parameter value is invalid. ``parameter`` is its name where it was declared (e.g.
    ``grid``, ``cpus_per_actor``); the CLI shows it under its option name (``--grid``)."""

    def __init__(self, parameter: str, message: str):
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


class JobFailed(RuntimeError):
    """A shard raised an error in the job's code, returned non-finite numbers, kept losing
    its worker, or a stored result changed under the run. The message is one line."""
