"""Errors that mean "the user asked for something impossible" (exit code 2 at the CLI)."""


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
