"""Ctrl-C and SIGTERM while the command line starts: acted on only once a command runs.

Python raises KeyboardInterrupt at any bytecode: halfway through importing
torch (a half-imported extension module then fails to load again and prints a
traceback on the way out), or inside the argument parser, which turns it into a
silent exit. So from the start of ``probe`` until a command's body begins, the
two signals are only recorded (:func:`defer_signals`); :func:`command_started`
puts the real handlers back (SIGTERM unwinds like Ctrl-C) and raises the
KeyboardInterrupt there, where the command reports it and removes what it staged.
:func:`deferred_signals` does the same around the heavy imports inside a command.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_PENDING: list[int] = []  # signals recorded while deferred (process-wide, like the handlers themselves)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _record(signum, frame) -> None:
    _PENDING.append(signum)


def terminate_as_interrupt(signum, frame) -> None:
    """SIGTERM unwinds like Ctrl-C: staged outputs are removed on the way out, nothing is published."""
    raise KeyboardInterrupt


def defer_signals() -> None:
    """Record SIGINT and SIGTERM instead of acting on them, until :func:`command_started`."""
    if _main_thread():
        for s in SIGNALS:
            signal.signal(s, _record)


def command_started() -> None:
    """Real handlers back (SIGTERM as Ctrl-C); a signal that came during start-up is raised now."""
    if _main_thread() and signal.getsignal(signal.SIGINT) is _record:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, terminate_as_interrupt)
    if _PENDING:
        _PENDING.clear()
        raise KeyboardInterrupt


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Record SIGINT/SIGTERM during the block; raise KeyboardInterrupt after it if one came."""
    if not _main_thread():
        yield  # only the main thread may set handlers (and only it receives signals)
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if pending:
        raise KeyboardInterrupt
