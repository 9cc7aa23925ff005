"""What tests read from the CLI's output."""

from __future__ import annotations


def one_error_line(capsys) -> str:
    """The single 'error: …' line on stderr (no traceback, nothing else)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    return lines[0]


def error_line(capsys) -> str:
    """The one 'error: …' line, last on stderr; status lines before it (e.g. 'Ray at local:
    2 CPUs') are allowed, a traceback is not."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    return errors[0]
