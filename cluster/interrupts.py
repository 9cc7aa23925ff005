"""SIGINT, SIGTERM and SIGHUP: how dreamctl stops, at whatever stage a signal finds it.

Ctrl-C, ``kill`` (``docker stop``, systemd) and a closed terminal all end dreamctl as Ctrl-C
does: a ``KeyboardInterrupt`` in the main thread, which
``cli/app.py`` turns into exit 3 once the job's work has begun (:func:`mark_started`: a model
is trained, Ray is started or joined, a job runs in this process), exit 2 before (the options
were being read and checked: nothing was started, nothing written).

Two places must not be cut in the middle: starting and stopping a local Ray. Interrupted
half-way, ``ray.init`` leaves Ray's processes running with nobody to stop them (its agents
for a minute) and the half-built driver can crash the interpreter on its way out. Inside
:func:`held` a signal therefore waits for the end of the block; a second one does not.

A signal also unblocks the way out: stdout or stderr that is a pipe nobody reads (full) is
pointed at /dev/null first, so that no line written while stopping blocks the process.

Importing this module loads neither Ray nor TensorFlow (``cli/app.py`` imports it first).
"""

from __future__ import annotations

import os
import select
import signal
import stat
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_started = False
_received = False  # a signal was raised as KeyboardInterrupt since install()
_held: list[int] | None = None  # signals received inside held(); None: not holding


def mark_started() -> None:
    """The job's work begins: from now on an interrupt means exit 3 (rerun to resume).

    A signal that came before and was swallowed on the way (a library's bare ``except:``
    around an import catches the KeyboardInterrupt too) is raised again here, so no work
    starts after a Ctrl-C, whatever caught it."""
    global _started
    if _received:
        raise KeyboardInterrupt
    _started = True


def started() -> bool:
    """Whether :func:`mark_started` was called since :func:`install`."""
    return _started


def _interrupt(signum: int, frame) -> None:
    if _held is not None and not _held:  # the first signal inside held(): later
        _held.append(signum)
        return
    global _received
    _received = True
    _unblock_standard_streams()
    raise KeyboardInterrupt


def _taken(signum: int) -> bool:
    """Whether dreamctl handles ``signum``: not when it was ignored when we got it (``nohup``
    ignores SIGHUP, a shell ignores SIGINT for a ``&`` job of a script): as the parent asked."""
    return signal.getsignal(signum) != signal.SIG_IGN


def install() -> Callable[[], None]:
    """Make each of :data:`SIGNALS` not ignored raise KeyboardInterrupt (main thread only);
    nothing has started yet. Returns the function that puts the previous handlers back."""
    global _started, _received
    _started = _received = False
    previous = {signum: signal.signal(signum, _interrupt) for signum in SIGNALS if _taken(signum)}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore


@contextmanager
def held() -> Iterator[None]:
    """Run the block with :data:`SIGNALS` held (those not ignored): the first one arriving
    inside it is raised (as the handler in place before the block would) when the block
    ends; a second one is not held. Only the main thread can hold signals; elsewhere the
    block just runs."""
    global _held
    if threading.current_thread() is not threading.main_thread() or _held is not None:
        yield
        return
    previous = {signum: signal.signal(signum, _interrupt) for signum in SIGNALS if _taken(signum)}
    _held = []
    try:
        yield
    finally:
        pending, _held = _held, None
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            signal.raise_signal(pending[0])  # as if it came now: the caller's own handler acts


def _unblock_standard_streams() -> None:
    """Point stdout / stderr at /dev/null when they are a pipe or socket that cannot take
    a byte now (full, nobody reads): the lines on the way out are lost, the process is not
    stuck. A terminal paused with Ctrl-S is left alone."""
    for fd in (1, 2):
        try:
            if not stat.S_ISFIFO(mode := os.fstat(fd).st_mode) and not stat.S_ISSOCK(mode):
                continue
            _, writable, _ = select.select([], [fd], [], 0)
        except (OSError, ValueError):
            continue  # closed: writes fail at once, nothing blocks
        if not writable:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
