"""Ctrl-C and SIGTERM while modules load: deferred until the import is whole, then a clean exit 130.

Python raises KeyboardInterrupt at any bytecode, also halfway through importing
torch or numpy; a half-imported extension module then fails to load again and
prints a traceback on the way out. Inside :func:`deferred_signals` the two
signals are only recorded, and acted on once the block is done.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Record SIGINT/SIGTERM during the block; raise KeyboardInterrupt after it if one came."""
    if threading.current_thread() is not threading.main_thread():
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


def terminate_as_interrupt(signum, frame) -> None:
    """SIGTERM unwinds like Ctrl-C: staged outputs are removed on the way out, nothing is published."""
    raise KeyboardInterrupt
