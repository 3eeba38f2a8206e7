"""BatchWidget: the one live notebook view of a batch (a BatchTracker), an anywidget with no build step.

The whole view is one synced trait, ``view`` (the tracker's snapshot: counts per stage and state, the
running items, the last finished and failed ones), so every publish of the tracker is exactly ONE comm
message, and the tracker publishes at most once per ``refresh_interval`` (0.2 s by default), plus the
batch's start and end: a 5,000-topic batch stays within 5 messages a second. The snapshot's size does not
grow with the batch.

Displayed, it sends a bundle holding the widget view, a text/html snapshot and a text/plain line under a
display id, and rewrites that bundle when the batch ends, so saved and exported notebooks keep the final
state (as ProgressWidget does).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anywidget
import traitlets

from torq_nb.progress.batch import BatchTracker, batch_html, batch_line
from torq_nb.progress.models import TERMINAL_STATES
from torq_nb.progress.widget import WIDGET_VIEW_MIME, widget_asset

__all__ = ["BatchWidget"]


class BatchWidget(anywidget.AnyWidget):
    """Live view of a BatchTracker: the overall bar (topics done/total, pages read, rate, ETA), the
    count of topics in each stage, the running topics and the last finished and failed ones.

    ``on_cancel``, if given, shows a Cancel button that calls it while the batch runs (the kernel handles
    the click only when no cell is busy: a batch started with ``start_research_many``).
    """

    _esm = widget_asset("batch.js")
    _css = widget_asset("batch.css")

    view = traitlets.Dict().tag(sync=True)
    cancellable = traitlets.Bool(False).tag(sync=True)

    def __init__(self, tracker: BatchTracker, *, on_cancel: Callable[[], object] | None = None, **kwargs: Any) -> None:
        if not isinstance(tracker, BatchTracker):
            raise TypeError(f"BatchWidget shows a BatchTracker, got {type(tracker).__name__}")
        self._tracker = tracker
        self._handles: list[Any] = []
        self._closed = False
        self._send_lock = threading.Lock()
        with tracker._lock:  # no publish can fall between the first snapshot and the subscription
            super().__init__(view=tracker.status(), cancellable=on_cancel is not None, **kwargs)
            tracker.add_callback(self._on_status)
        self._on_cancel = on_cancel
        self.on_msg(self._on_front_end_message)

    @property
    def tracker(self) -> BatchTracker:
        return self._tracker

    def _on_status(self, status: dict[str, Any]) -> None:
        """Tracker callback (already throttled): one comm message; at the end, the static parts too."""
        with self._send_lock:
            if self._closed:
                return
            self.view = status
        if status["state"] in TERMINAL_STATES:
            for handle in list(self._handles):
                handle.update(self._bundle(status), raw=True)

    def _on_front_end_message(self, widget: Any, content: Any, buffers: Any) -> None:
        if content == {"type": "cancel"} and self._on_cancel is not None and not self._tracker.finished:
            self._on_cancel()

    def _bundle(self, status: dict[str, Any]) -> dict[str, Any]:
        return {
            WIDGET_VIEW_MIME: {"version_major": 2, "version_minor": 1, "model_id": self.model_id},
            "text/html": batch_html(status),
            "text/plain": batch_line(status),
        }

    def _ipython_display_(self) -> None:
        """Show the live view with a text/html snapshot and a text line beside it, kept to the final state."""
        from IPython.display import display

        with self._tracker._lock:
            handle = display(self._bundle(self._tracker.status()), raw=True, display_id=True)
            if handle is not None:
                self._handles.append(handle)

    def __repr__(self) -> str:
        return batch_line(self._tracker.status())

    def close(self) -> None:
        """Stop observing the tracker and close the comm."""
        if "_send_lock" in self.__dict__:
            with self._send_lock:
                self._closed = True
            try:
                self._tracker.remove_callback(self._on_status)
            except ValueError:
                pass
        super().close()
