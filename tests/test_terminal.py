"""TerminalProgress, the terminal view of a tracker: what a user reads on the live line."""

from __future__ import annotations

import io

from torq_nb.progress.terminal import TerminalProgress
from torq_nb.progress.tracker import ProgressTracker


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def extracting(done: int, seconds: float, total: int = 10) -> dict:
    """A running status with ``done`` of ``total`` items counted over ``seconds``, as the tracker publishes it."""
    tracker = ProgressTracker("research: solar")
    tracker.progress("extracting")
    status = tracker.get_status()
    rate = done / seconds if done else None
    eta = (total - done) / rate if rate else None
    return {**status, "done": done, "total": total, "rate": rate, "eta": eta, "duration": seconds}


def live_line(status: dict) -> str:
    screen = Terminal()
    TerminalProgress(screen)(status)
    return screen.getvalue()


def test_no_eta_until_the_rate_means_something():
    # The first page after 9 s of workers starting: 1/10 at 0.11 it/s "ETA 01:21" for a run that ends in 4 s.
    assert "ETA" not in live_line(extracting(1, 9.0))
    assert "ETA" not in live_line(extracting(2, 3.0))  # two arrivals are not a rate yet
    assert "ETA" not in live_line(extracting(5, 0.4))  # a burst in under a second is not either
    assert "ETA 00:02" in live_line(extracting(5, 2.5))  # a few items over a second or more: shown
