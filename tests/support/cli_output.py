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
