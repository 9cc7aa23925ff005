"""Errors that mean "the user asked for something impossible" (exit code 2 at the CLI)."""


class BadInput(ValueError):
    """Bad user input: a missing file, an out-of-range map, a malformed option.

    The message is one line that tells the user what is wrong and, where possible,
    what would be right.
    """
