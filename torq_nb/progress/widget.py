"""ProgressWidget: the live notebook view of a ProgressTracker (an anywidget, no build step).

The widget observes its tracker and forwards changes to its synced traits in batches: each flush is ONE
comm message carrying every changed field (``hold_sync``), flushes are at least ``interval`` seconds
apart, except that stage changes and terminal states go out at once, and a trailing timer thread sends
whatever is still pending, so the final state is never lost even while the kernel is busy.

Displayed, it sends a bundle holding the widget view, a text/html snapshot and a text/plain line under a
display id, and rewrites that bundle when the run ends: saved and exported notebooks show the final state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from time import monotonic
from typing import Any

import anywidget
import traitlets

from torq_nb.progress.models import TERMINAL_STATES
from torq_nb.progress.snapshot import status_html, status_line
from torq_nb.progress.tracker import ProgressTracker

__all__ = ["ProgressWidget", "asset_dir"]

#: The status fields the front-end needs; metadata, timestamps and ids of stages stay in the kernel.
SYNCED_FIELDS: tuple[str, ...] = (
    "operation",
    "operation_id",
    "stage",
    "state",
    "percent",
    "message",
    "done",
    "total",
    "rate",
    "eta",
    "duration",
    "error",
    "stages",
)

WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"


def asset_dir() -> Path:
    """The directory holding progress.js and progress.css.

    A wheel carries them as ``torq_nb/static/`` (pyproject force-includes ``js/src`` there); an editable
    install imports ``torq_nb`` from the checkout, where they live in ``<repo>/js/src/``.
    """
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "static", package.parent / "js" / "src"):
        if (candidate / "progress.js").is_file():
            return candidate
    raise FileNotFoundError(
        f"torq_nb's widget assets are missing: neither {package / 'static'} nor {package.parent / 'js' / 'src'}"
        " holds progress.js. Reinstall torq_nb (pip install --force-reinstall torq_nb)."
    )


def _fields(status: dict[str, Any]) -> dict[str, Any]:
    return {name: status[name] for name in SYNCED_FIELDS}


class ProgressWidget(anywidget.AnyWidget):  # type: ignore[misc]
    """Live view of a ProgressTracker: stage timeline, bar, elapsed time, rate/ETA, message and error.

    >>> ProgressWidget(tracker)            # or simply display(tracker)
    >>> ProgressWidget(tracker, interval=0.5)

    ``interval`` is the least time in seconds between two ordinary flushes to the front-end.
    ``on_cancel``, if given, shows a Cancel button that calls it while the operation runs; the kernel
    handles the click only when no cell is busy, so it suits operations running in the background.
    """

    _esm = asset_dir() / "progress.js"
    _css = asset_dir() / "progress.css"

    operation = traitlets.Unicode("").tag(sync=True)
    operation_id = traitlets.Unicode("").tag(sync=True)
    stage = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    state = traitlets.Unicode("pending").tag(sync=True)
    percent = traitlets.Float(0.0).tag(sync=True)
    message = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    done = traitlets.Int(0).tag(sync=True)
    total = traitlets.Int(None, allow_none=True).tag(sync=True)
    rate = traitlets.Float(None, allow_none=True).tag(sync=True)
    eta = traitlets.Float(None, allow_none=True).tag(sync=True)
    duration = traitlets.Float(0.0).tag(sync=True)
    error = traitlets.Dict(None, allow_none=True).tag(sync=True)
    stages: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    cancellable = traitlets.Bool(False).tag(sync=True)

    def __init__(
        self,
        tracker: ProgressTracker,
        *,
        interval: float = 0.1,
        on_cancel: Callable[[], object] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(tracker, ProgressTracker):
            raise TypeError(f"ProgressWidget shows a ProgressTracker, got {type(tracker).__name__}")
        if not interval >= 0:
            raise ValueError(f"interval must be a number of seconds >= 0, got {interval!r}")
        self._tracker = tracker
        self._interval = float(interval)
        self._lock = threading.Lock()
        self._pending: dict[str, Any] = {}
        self._next_flush = 0.0
        self._timer: threading.Timer | None = None
        self._handles: list[Any] = []
        self._closed = False
        # Register and take the first snapshot under the tracker's lock (the one its publishing holds),
        # so no published change can fall between the snapshot and the subscription.
        with tracker._lock:
            super().__init__(**_fields(tracker.get_status()), cancellable=on_cancel is not None, **kwargs)
            tracker.add_callback(self._on_status)
        self._on_cancel = on_cancel
        self.on_msg(self._on_front_end_message)

    @property
    def tracker(self) -> ProgressTracker:
        """The tracker this widget shows."""
        return self._tracker

    # ----------------------------------------------------------------- batching

    def _on_status(self, status: dict[str, Any]) -> None:
        """Tracker callback (any thread, tracker lock held): queue the change, flush now or later."""
        fields = _fields(status)
        with self._lock:
            if self._closed:
                return
            urgent = fields["stage"] != self.stage or fields["state"] != self.state
            self._pending.update(fields)
            now = monotonic()
            if urgent or now >= self._next_flush:
                self._flush(now)
            elif self._timer is None:
                self._timer = threading.Timer(self._next_flush - now, self._flush_late)
                self._timer.daemon = True
                self._timer.start()
        if urgent and status["state"] in TERMINAL_STATES:
            self._refresh_displays(status)

    def _flush(self, now: float) -> None:
        """Send every pending field in one comm message. Called with ``self._lock`` held."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with self.hold_sync():
            for name, value in self._pending.items():
                setattr(self, name, value)
        self._pending.clear()
        self._next_flush = now + self._interval

    def _flush_late(self) -> None:
        """The trailing flush, from the timer thread: whatever is still pending goes out."""
        with self._lock:
            self._timer = None
            if self._pending and not self._closed:
                self._flush(monotonic())

    def _on_front_end_message(self, widget: Any, content: Any, buffers: Any) -> None:
        if content == {"type": "cancel"} and self._on_cancel is not None and not self._tracker.finished:
            self._on_cancel()

    # ----------------------------------------------------------------- display

    def _bundle(self, status: dict[str, Any]) -> dict[str, Any]:
        return {
            WIDGET_VIEW_MIME: {"version_major": 2, "version_minor": 1, "model_id": self.model_id},
            "text/html": status_html(status),
            "text/plain": status_line(status),
        }

    def _refresh_displays(self, status: dict[str, Any]) -> None:
        """Rewrite the static parts of every display of this widget (the live view stays)."""
        for handle in list(self._handles):
            handle.update(self._bundle(status), raw=True)

    def _ipython_display_(self) -> None:
        """Show the live view with a text/html snapshot and text line beside it, kept to the final state."""
        from IPython.display import display

        # Under the tracker's lock, so a run ending meanwhile cannot miss this display's handle.
        with self._tracker._lock:
            handle = display(self._bundle(self._tracker.get_status()), raw=True, display_id=True)
            if handle is not None:
                self._handles.append(handle)

    def __repr__(self) -> str:
        return status_line(self._tracker.get_status())

    def close(self) -> None:
        """Stop observing the tracker, drop any pending flush and close the comm."""
        if "_lock" in self.__dict__:  # absent when the constructor refused its arguments
            with self._lock:
                self._closed = True
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                self._pending.clear()
            try:
                self._tracker.remove_callback(self._on_status)
            except ValueError:  # closed twice
                pass
        super().close()
