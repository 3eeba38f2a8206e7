"""BatchWidget: the one live notebook view of a batch (a BatchTracker), an anywidget with no build step.

The whole view is one synced trait, ``view`` (the tracker's snapshot: counts per stage and state, the
running items, the last finished and failed ones), so every publish of the tracker is exactly ONE comm
message, and the tracker publishes at most once per ``refresh_interval`` (0.2 s by default), plus the
batch's start and end: a 5,000-topic batch stays within 5 messages a second. The snapshot's size does not
grow with the batch.

Displayed, it sends a bundle holding the widget view, a text/html snapshot and a text/plain line under a
display id, and rewrites that bundle when the batch ends, so saved and exported notebooks keep the final
state; that, and the Cancel button, it shares with ProgressWidget (``LiveView``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import traitlets

from torq_nb.progress.batch import BatchTracker, batch_html, batch_line
from torq_nb.progress.models import TERMINAL_STATES
from torq_nb.progress.widget import STOP_HINT, LiveView, widget_asset

__all__ = ["BatchWidget"]


class BatchWidget(LiveView):
    """Live view of a BatchTracker: the overall bar (topics done/total, pages read, rate, ETA), the
    count of topics in each stage, the running topics and the last finished and failed ones.

    ``on_cancel``, if given, shows a Cancel button that calls it while the batch runs; as in ProgressWidget,
    a batch that holds the cell (``research_many``) takes the click through a kernel subshell, or shows how
    to stop it instead.
    """

    _esm = widget_asset("batch.js")
    _css = widget_asset("batch.css")

    view = traitlets.Dict().tag(sync=True)

    def __init__(self, tracker: BatchTracker, *, on_cancel: Callable[[], object] | None = None,
                 hint: str = STOP_HINT) -> None:
        if not isinstance(tracker, BatchTracker):
            raise TypeError(f"BatchWidget shows a BatchTracker, got {type(tracker).__name__}")
        self._tracker = tracker
        with tracker._lock:  # no publish can fall between the first snapshot and the subscription
            latest = tracker.status()
            super().__init__(latest, on_cancel=on_cancel, hint=hint, view=latest)
            tracker.add_callback(self._on_status)
        self._unsubscribe = lambda: tracker.remove_callback(self._on_status)

    @property
    def tracker(self) -> BatchTracker:
        """The batch tracker this widget shows."""
        return self._tracker

    def _on_status(self, status: dict[str, Any]) -> None:
        self._show(status, status["state"] in TERMINAL_STATES)

    def _sync(self, snapshot: dict[str, Any]) -> None:
        self.view = snapshot

    def _static(self, snapshot: dict[str, Any]) -> tuple[str, str]:
        return batch_html(snapshot), batch_line(snapshot)

    def _finished(self) -> bool:
        return self._tracker.finished
