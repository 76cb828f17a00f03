"""Ctrl-C during long work: stop at a safe point instead of wherever the signal lands.

Python raises ``KeyboardInterrupt`` at whatever bytecode runs when SIGINT arrives, including
inside a finaliser or a C callback, where it cannot be caught and the process dies mid-cleanup.
Inside ``deferred()``, the first Ctrl-C only sets a flag; loops call ``check()`` between batches
and raise ``KeyboardInterrupt`` there, so cleanup (removing a half-written build) always runs. A
second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_requested = False


def check() -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed inside ``deferred()``."""
    if _requested:
        raise KeyboardInterrupt


def _handler(signum: int, frame: FrameType | None) -> None:
    global _requested
    if _requested:
        raise KeyboardInterrupt
    _requested = True


@contextmanager
def deferred() -> Iterator[None]:
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; elsewhere Ctrl-C is not ours to catch
        return
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
        check()
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested = False
