"""Ctrl-C while a caller blocks the main thread on a run (``research()``, ``research_many()``, the torq-nb command).

Python's own SIGINT handler raises KeyboardInterrupt wherever the main thread happens to be, and during a run's
start that is deep inside the imports of Polars, aiohttp, trafilatura. There it is not reliable: a weakref
callback of the import system reports it as "Exception ignored" and drops it, so the run goes on; and one raised
inside a dataclass's generated code (a string exec()) makes ``python -m`` end by SIGINT at exit even after the
interrupt was handled (CPython keeps an "unhandled KeyboardInterrupt" flag for any string exec that ends with one).
So while ``ctrl_c_noted()`` holds, a Ctrl-C is only noted; the code that waits looks with ``interrupted()`` at
the points where stopping is clean (before a run starts, every 0.1 s while it runs) and stops the run there.
A second Ctrl-C before the first was taken raises KeyboardInterrupt at once, the usual way out of a hang.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["ctrl_c_noted", "interrupted", "raise_if_interrupted"]

_noted = threading.Event()


def _note(signum: int, frame: FrameType | None) -> None:
    if _noted.is_set():
        raise KeyboardInterrupt
    _noted.set()


@contextmanager
def ctrl_c_noted() -> Iterator[None]:
    """Note a Ctrl-C instead of raising it while the block runs; one noted and not taken when the block ends
    without an error is a KeyboardInterrupt then.

    Only in the main thread and over Python's default handler: a block inside another (the command's, around
    research()) shares it, and a handler of the caller's own (or a SIGINT ignored) is left as it is.
    """
    if threading.current_thread() is not threading.main_thread() or (
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    _noted.clear()
    previous = signal.signal(signal.SIGINT, _note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        noted = interrupted()  # taken either way: a block that raised has stopped already
    if noted:
        raise KeyboardInterrupt


def interrupted() -> bool:
    """Whether a Ctrl-C was noted since the last look; True takes it (the next look is False). Always False outside
    the main thread: the Ctrl-C is the main thread's caller's."""
    if threading.current_thread() is not threading.main_thread() or not _noted.is_set():
        return False
    _noted.clear()
    return True


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt for a Ctrl-C noted since the last look (taking it): at a point where stopping is clean."""
    if interrupted():
        raise KeyboardInterrupt
