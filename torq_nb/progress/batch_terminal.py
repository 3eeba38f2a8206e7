"""BatchTerminalProgress: a batch's view for terminals and logs, used as a BatchTracker callback.

On a terminal it keeps one live line (the batch's counts, rate and ETA, rewritten in place, as tqdm does)
and prints each failed topic on a line of its own above it, so failures stay on screen. When the output is
a file or a pipe it writes the failures, a progress line at most every ``log_interval`` seconds and the
final line, so logs stay short at 5,000 topics.

    tracker.add_callback(BatchTerminalProgress())
"""

from __future__ import annotations

import shutil
import sys
import threading
from time import monotonic
from typing import Any, TextIO

from torq_nb.progress.batch import batch_line
from torq_nb.progress.models import TERMINAL_STATES
from torq_nb.progress.snapshot import _clean

__all__ = ["BatchTerminalProgress"]


class BatchTerminalProgress:
    """Writes a batch's published statuses (``BatchTracker.status()`` dicts) to ``stream`` (standard error)."""

    def __init__(self, stream: TextIO | None = None, *, log_interval: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_interval = log_interval
        self._lock = threading.Lock()
        self._failed_shown: set[str] = set()
        self._next_log = 0.0

    def __call__(self, status: dict[str, Any]) -> None:
        finished = status["state"] in TERMINAL_STATES
        line = batch_line(status)
        with self._lock:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            clear = "\r" + " " * width + "\r" if self.live else ""
            for item in reversed(status.get("failures") or []):
                if item["key"] not in self._failed_shown:
                    self._failed_shown.add(item["key"])
                    self.stream.write(f"{clear}✗ {_clean(item['key'])}: {_clean(item.get('reason') or 'failed')}\n")
            if self.live:
                self.stream.write("\r" + line[:width].ljust(width) + ("\n" if finished else ""))
            elif finished or monotonic() >= self._next_log:
                self._next_log = monotonic() + self.log_interval
                self.stream.write(line + "\n")
            self.stream.flush()
