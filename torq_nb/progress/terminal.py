"""TerminalProgress: a tracker's view for terminals and logs, used as a status callback.

On a terminal it keeps one live line (rewritten in place, as tqdm does); when the output is a file or a
pipe it writes one plain line per stage change and one at the end, so logs stay readable. The ETA shows
once the rate means something: a few items done over a second or more, not the first page after the
workers' start-up (a 4 s run once opened with "ETA 01:27").

    tracker.add_callback(TerminalProgress())
"""

from __future__ import annotations

import shutil
import sys
import threading
from typing import Any, TextIO

from torq_nb.progress.models import TERMINAL_STATES
from torq_nb.progress.snapshot import status_line

#: An ETA needs at least this many items done, counted over at least this many seconds.
ETA_AFTER_ITEMS = 3
ETA_AFTER_SECONDS = 1.0


def _rate_settled(status: dict[str, Any]) -> bool:
    done, rate = status.get("done") or 0, status.get("rate")
    if not rate:
        return False
    # rate = done / seconds counted, so done / rate is how long the count has run.
    return bool(done >= ETA_AFTER_ITEMS and done / rate >= ETA_AFTER_SECONDS)


class TerminalProgress:
    """Writes each published status (a ``get_status()`` dict) to ``stream``, standard error by default."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._last_stage: str | None = None

    def __call__(self, status: dict[str, Any]) -> None:
        finished = status["state"] in TERMINAL_STATES
        if status.get("eta") is not None and not _rate_settled(status):
            status = {**status, "eta": None}
        line = status_line(status)
        with self._lock:
            if self.live:
                width = shutil.get_terminal_size((100, 20)).columns - 1
                self.stream.write("\r" + line[:width].ljust(width) + ("\n" if finished else ""))
            elif finished or status["stage"] != self._last_stage:
                self.stream.write(line + "\n")
            self._last_stage = status["stage"]
            self.stream.flush()
