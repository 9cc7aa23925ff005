"""Progress in a log (not a terminal): plain status lines with shards, rate and ETA."""

import io

from rich.console import Console

from cluster.progress import JobProgress


def test_plain_status_lines_when_not_a_terminal():
    buffer = io.StringIO()
    with JobProgress(Console(file=buffer, width=200), log_every=0) as progress:
        progress.start_phase("precursor: scores", "patterns", total_items=300, total_shards=3, done_items=100, done_shards=1)
        progress.advance(100)
        progress.advance(100)
    lines = buffer.getvalue().splitlines()
    assert lines[0].startswith("precursor: scores: 67% 2/3 shards, ")
    assert lines[-1].startswith("precursor: scores: 100% 3/3 shards, ") and "patterns/s" in lines[-1]
    assert all("ETA" in line for line in lines)


def test_slow_rates_keep_their_digits():
    from cluster.progress import format_rate

    assert format_rate(2315.4, "patterns") == "2,315 patterns/s"
    assert format_rate(0.21, "maps") == "0.21 maps/s"  # not "0 maps/s"
    assert format_rate(0.004, "models") == "0.24 models/min"
