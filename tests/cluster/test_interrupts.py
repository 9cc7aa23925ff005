"""cluster/interrupts.py in this process: a signal swallowed on the way still stops the work."""

from __future__ import annotations

import os
import signal

import pytest

from cluster import interrupts


def test_a_signal_swallowed_before_the_work_starts_stops_it_at_the_start():
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
