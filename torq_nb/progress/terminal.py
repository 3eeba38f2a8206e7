"""TerminalProgress: a tracker's view for terminals and logs.

On a terminal it keeps one live line (rewritten in place, as tqdm does); when the output is a file or a
pipe it writes one plain line per stage change and one at the end, so logs stay readable.
"""

from __future__ import annotations

import shutil
import sys
import threading
from typing import Any, TextIO

from torq_nb.progress.snapshot import status_line
from torq_nb.progress.tracker import ProgressTracker


_WATCHED = ["stage", "state", "percent", "message", "done"]


class TerminalProgress:
    """Observes ``tracker`` and writes its status line to ``stream`` (standard error by default)."""

    def __init__(self, tracker: ProgressTracker, stream: TextIO | None = None) -> None:
        self.tracker = tracker
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._last_stage: str | None = None
        self._ended = False
        tracker.observe(self._on_change, names=_WATCHED)

    def close(self) -> None:
        """Stop observing (the final line has already been written if the run ended)."""
        self.tracker.unobserve(self._on_change, names=_WATCHED)

    def _on_change(self, change: Any) -> None:
        status = self.tracker.get_status()
        finished = status["state"] in ("complete", "failed", "cancelled")
        with self._lock:
            if self._ended:
                return
            self._ended = finished
            line = status_line(status)
            if self.live:
                width = shutil.get_terminal_size((100, 20)).columns - 1
                self.stream.write("\r" + line[:width].ljust(width) + ("\n" if finished else ""))
            elif finished or status["stage"] != self._last_stage:
                self.stream.write(line + "\n")
            self._last_stage = status["stage"]
            self.stream.flush()
