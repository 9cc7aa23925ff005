"""cluster/interrupts.py in this process: a signal swallowed on the way still stops the work."""

from __future__ import annotations

import os
import signal

import pytest

from cluster import interrupts


@pytest.fixture
def sigint_not_ignored():
    """SIGINT as an interactive shell starts a command: a test process started in the
    background of a script (nohup … &) has it ignored, and dreamctl keeps an ignored signal
    ignored by design."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_signal_swallowed_before_the_work_starts_stops_it_at_the_start(sigint_not_ignored):
    restore = interrupts.install()
    try:
        try:  # as a library's bare except around an import would
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            pass
        with pytest.raises(KeyboardInterrupt):
            interrupts.mark_started()
        assert not interrupts.started()  # exit 2: nothing had started
    finally:
        restore()
    restore = interrupts.install()  # a new run forgets it
    try:
        interrupts.mark_started()
        assert interrupts.started()
    finally:
        restore()
