"""BatchTracker: the progress of many items at once (a batch of research topics), and its static views.

One tracker stands for the whole batch. Each item (a topic) reports where it is (``item_progress``: its stage
and count) and how it ended (``item_finished``). The tracker keeps aggregates that cost the same at 5,000
items as at 5: how many items are in each stage and state, the units (pages) counted, rate and ETA, and
short lists (the running items, the last few finished and failed ones). Observers get one snapshot dict
per publish, at most once per ``refresh_interval``; the batch's start and end are published at once and a
trailing timer publishes whatever a pause held back. It knows nothing of widgets or terminals.

``batch_line`` and ``batch_html`` are pure functions of a snapshot: a text line for terminals and logs, and
a self-contained HTML picture (inline styles, no scripts, every outside string escaped) for saved notebooks.
"""

from __future__ import annotations

import html
import logging
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from time import monotonic
from typing import Any, Literal

from torq_nb.progress.models import TERMINAL_STATES
from torq_nb.progress.snapshot import STAGE_MARKS, _clean, format_duration

__all__ = ["BatchTracker", "batch_html", "batch_line"]

log = logging.getLogger(__name__)

ItemEnd = Literal["complete", "failed", "cancelled"]
BatchCallback = Callable[[dict[str, Any]], object]

#: How many running, recently finished and failed items a snapshot lists (the counts cover all of them).
SHOWN = 8


class _Item:
    __slots__ = ("done", "failed", "reason", "stage", "state", "total")

    def __init__(self) -> None:
        self.state = "pending"
        self.stage: str | None = None
        self.done = 0
        self.total: int | None = None
        self.failed = 0
        self.reason: str | None = None


class BatchTracker:
    """Tracks a batch of named items (for example topics) through their stages to their ends.

    >>> batch = BatchTracker("research_many", ["solar", "wind"], unit="pages")
    >>> batch.item_progress("solar", "searching")
    >>> batch.item_finished("solar", "complete", done=9, failed=1)
    >>> batch.finish()

    Safe to update from several threads at once; callbacks run in the thread that published, one at a time.
    """

    def __init__(
        self,
        operation: str,
        items: Iterable[str],
        *,
        unit: str = "items",
        refresh_interval: float = 0.2,
        shown: int = SHOWN,
    ) -> None:
        if not refresh_interval >= 0:
            raise ValueError(f"refresh_interval must be a number of seconds >= 0, got {refresh_interval!r}")
        self.operation = operation
        self.operation_id = uuid.uuid4().hex
        self.unit = unit
        self.refresh_interval = float(refresh_interval)
        self._items: dict[str, _Item] = {key: _Item() for key in items}
        self._lock = threading.RLock()
        self._callbacks: list[BatchCallback] = []
        self._state = "pending"
        self._message: str | None = None
        self._started: float | None = None
        self._started_at: str | None = None
        self._ended: float | None = None
        self._states: Counter[str] = Counter({"pending": len(self._items)})
        self._stages: Counter[str] = Counter()
        self._running: dict[str, None] = {}  # insertion-ordered set: the oldest running item first
        self._units = 0
        self._units_failed = 0
        self._recent: deque[str] = deque(maxlen=shown)
        self._failures: deque[str] = deque(maxlen=shown)
        self._shown = shown
        self._next_publish = 0.0
        self._trailing: threading.Timer | None = None

    @property
    def total(self) -> int:
        return len(self._items)

    @property
    def finished(self) -> bool:
        """True once the batch is complete, failed or cancelled."""
        return self._state in TERMINAL_STATES

    # ----------------------------------------------------------------- reporting

    def start(self, message: str | None = None) -> None:
        """The batch begins (published at once)."""
        with self._lock:
            if self._state == "pending":
                self._state = "running"
                self._started = monotonic()
                self._started_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            self._message = message
            self._publish()

    def item_progress(self, key: str, stage: str | None, done: int | None = None, total: int | None = None) -> None:
        """Item ``key`` is in ``stage`` with ``done`` units counted (of ``total``; None keeps the count it had).
        Ignored once the item has ended."""
        with self._lock:
            item = self._items[key]
            if item.state in TERMINAL_STATES:
                return
            if item.state == "pending":
                self._states["pending"] -= 1
                self._states["running"] += 1
                item.state = "running"
                self._running[key] = None
            if stage != item.stage:
                if item.stage is not None:
                    self._stages[item.stage] -= 1
                if stage is not None:
                    self._stages[stage] += 1
                item.stage = stage
            if done is not None:
                self._units += done - item.done
                item.done, item.total = done, total
            self._changed()

    def item_finished(self, key: str, state: ItemEnd, *, done: int | None = None, failed: int = 0,
                      reason: str | None = None) -> None:
        """Item ``key`` ended (``state``), with ``done`` units read and ``failed`` failed; ``reason`` says why
        it failed or stopped. The first ending of an item stands."""
        if state not in TERMINAL_STATES:
            raise ValueError(f"an item ends complete, failed or cancelled, not {state!r}")
        with self._lock:
            item = self._items[key]
            if item.state in TERMINAL_STATES:
                return
            self._states[item.state] -= 1
            self._states[state] += 1
            if item.stage is not None:
                self._stages[item.stage] -= 1
            self._running.pop(key, None)
            if done is not None:
                self._units += done - item.done
                item.done = done
            self._units_failed += failed
            item.state, item.failed, item.reason = state, failed, reason
            self._recent.append(key)
            if state == "failed":
                self._failures.append(key)
            self._changed()

    def finish(self, state: ItemEnd = "complete", message: str | None = None) -> None:
        """The batch ended (published at once); items never finished count as cancelled."""
        with self._lock:
            if self.finished:
                return
            if self._started is None:
                self.start()
            self._state = state  # first: the topics marked cancelled below publish nothing of their own
            for key, item in self._items.items():
                if item.state not in TERMINAL_STATES:
                    self.item_finished(key, "cancelled", reason="the batch stopped before this topic finished")
            self._ended = monotonic()
            self._message = message
            self._publish()

    # ----------------------------------------------------------------- reading

    def item(self, key: str) -> dict[str, Any]:
        """One item's state, stage, counts and reason."""
        with self._lock:
            item = self._items[key]
            return {"key": key, "state": item.state, "stage": item.stage, "done": item.done, "total": item.total,
                    "failed": item.failed, "reason": item.reason}

    def status(self) -> dict[str, Any]:
        """A JSON-ready snapshot of the batch (exact, not throttled); its size does not grow with the batch."""
        with self._lock:
            now = monotonic()
            end = self._ended if self._ended is not None else now
            duration = end - self._started if self._started is not None else 0.0
            ended = sum(self._states[s] for s in TERMINAL_STATES)
            rate = ended / duration if ended and duration > 0 else None
            unit_rate = self._units / duration if self._units and duration > 0 else None
            eta = (self.total - ended) / rate if rate and self._state == "running" else None
            return {
                "operation": self.operation,
                "operation_id": self.operation_id,
                "state": self._state,
                "message": self._message,
                "unit": self.unit,
                "total": self.total,
                "ended": ended,
                "states": {name: self._states[name] for name in ("pending", "running", "complete", "failed", "cancelled")},
                "stages": {name: count for name, count in self._stages.items() if count > 0},
                "units": self._units,
                "units_failed": self._units_failed,
                "rate": rate,
                "unit_rate": unit_rate,
                "eta": eta,
                "duration": duration,
                "started_at": self._started_at,
                "percent": 100.0 * ended / self.total if self.total else 100.0,
                "running": [self.item(key) for key in list(self._running)[: self._shown]],
                "recent": [self.item(key) for key in reversed(self._recent)],
                "failures": [self.item(key) for key in reversed(self._failures)],
            }

    # ----------------------------------------------------------------- publishing

    def add_callback(self, callback: BatchCallback) -> None:
        """Call ``callback(status())`` on every publish (at most once per refresh_interval, plus start and end)."""
        with self._lock:
            self._callbacks.append(callback)

    def remove_callback(self, callback: BatchCallback) -> None:
        with self._lock:
            self._callbacks.remove(callback)

    def _changed(self) -> None:
        """A change: publish now if the interval has passed, else once it has (trailing timer)."""
        if self._state != "running":
            return
        now = monotonic()
        if now >= self._next_publish:
            self._publish()
        elif self._trailing is None:
            self._trailing = threading.Timer(self._next_publish - now, self._publish_trailing)
            self._trailing.daemon = True
            self._trailing.start()

    def _publish_trailing(self) -> None:
        with self._lock:
            self._trailing = None
            if self._state == "running":
                self._publish()

    def _publish(self) -> None:
        """Send the snapshot to every callback. Called with the lock held."""
        if self._trailing is not None:
            self._trailing.cancel()
            self._trailing = None
        self._next_publish = monotonic() + self.refresh_interval
        status = self.status()
        for callback in list(self._callbacks):
            try:
                callback(status)
            except Exception:  # a broken view must not stop the batch
                log.exception("batch progress callback %r raised; the batch continues", callback)

    def __repr__(self) -> str:
        return f"<BatchTracker {batch_line(self.status())}>"


# --------------------------------------------------------------------- static views


def _phrase(status: dict[str, Any]) -> str:
    state = status.get("state") or "pending"
    return "running" if state == "running" else str(state)


def _facts(status: dict[str, Any]) -> list[str]:
    """Counts, rate, ETA and elapsed time as short phrases (shared by the text line and the HTML)."""
    states = status.get("states") or {}
    unit = _clean(status.get("unit") or "items")
    parts = [f"{status.get('ended', 0):,}/{status.get('total', 0):,} topics"]
    if states.get("failed"):
        parts.append(f"{states['failed']:,} failed")
    if states.get("cancelled"):
        parts.append(f"{states['cancelled']:,} cancelled")
    units = status.get("units", 0)
    parts.append(f"{units:,} {unit.removesuffix('s') if units == 1 else unit} read")  # "1 page read"
    rate = status.get("rate")
    if rate:
        parts.append(f"{rate:,.1f} topics/s" if rate >= 1 else f"{rate * 60:,.1f} topics/min")
    if status.get("eta") is not None and status.get("state") == "running":
        parts.append(f"ETA {format_duration(status['eta'])}")
    parts.append(f"elapsed {format_duration(status.get('duration'))}")
    return parts


def batch_line(status: dict[str, Any]) -> str:
    """One line, e.g. ``research_many: running 40% | 2,000/5,000 topics | 3 failed | 18,000 pages read | ...``."""
    head = f"{_clean(status.get('operation') or 'batch')}: {_phrase(status)} {float(status.get('percent') or 0):.0f}%"
    return " | ".join([head, *_facts(status)])


def stage_counts(status: dict[str, Any]) -> list[tuple[str, int]]:
    """(label, count) per stage of the running items, then pending and the ends, omitting zeros."""
    states = status.get("states") or {}
    pairs = [(_clean(stage), count) for stage, count in (status.get("stages") or {}).items()]
    pairs += [(name, states.get(name, 0)) for name in ("pending", "complete", "failed", "cancelled")]
    return [(label, count) for label, count in pairs if count]


def _item_html(item: dict[str, Any], unit: str) -> str:
    state = _clean(item.get("state") or "pending")
    where = _clean(item.get("stage") or state) if state == "running" else state
    count = f"{item.get('done') or 0}" + (f"/{item['total']}" if item.get("total") else "")
    extra = f" · {html.escape(_clean(item['reason']))}" if item.get("reason") else ""
    return (
        f'<li data-state="{html.escape(state)}" style="white-space:nowrap;overflow:hidden;text-overflow:ellipsis">'
        f"{html.escape(STAGE_MARKS.get(state, '●'))} <strong>{html.escape(_clean(item.get('key') or ''))}</strong> "
        f'<span style="opacity:0.75">{html.escape(where)} · {html.escape(count)} {html.escape(unit)}{extra}</span></li>'
    )


def batch_html(status: dict[str, Any]) -> str:
    """A self-contained HTML snapshot (inline styles, no scripts) of a batch, for saved notebooks."""
    state = _clean(status.get("state") or "pending")
    colour = {"complete": "#43a047", "failed": "#e53935", "cancelled": "#fb8c00"}.get(state, "#1e88e5")
    percent = min(max(float(status.get("percent") or 0.0), 0.0), 100.0)
    unit = _clean(status.get("unit") or "items")
    chips = " · ".join(f"{html.escape(label)} {count:,}" for label, count in stage_counts(status))
    lists = []
    for title, key in (("Running", "running"), ("Failed", "failures"), ("Recently finished", "recent")):
        items = status.get(key) or []
        if items and not (key == "running" and state != "running"):
            body = "".join(_item_html(item, unit) for item in items)
            lists.append(f'<div style="margin-top:0.35em"><div style="opacity:0.75">{title}</div>'
                         f'<ul style="list-style:none;margin:0;padding:0">{body}</ul></div>')
    return (
        f'<div class="torq-batch-snapshot" data-state="{html.escape(state)}" data-percent="{percent:.1f}"'
        " style=\"font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:13px;line-height:1.45;"
        'max-width:46em;padding:0.5em 0.75em;border:1px solid rgba(128,128,128,0.35);border-radius:6px">'
        '<div style="display:flex;gap:0.75em;align-items:baseline">'
        f"<strong>{html.escape(_clean(status.get('operation') or 'batch'))}</strong>"
        f'<span style="color:{colour};font-weight:600">{html.escape(_phrase(status))}</span>'
        f'<span style="margin-left:auto">{percent:.0f}%</span></div>'
        '<div role="progressbar" aria-valuemin="0" aria-valuemax="100" '
        f'aria-valuenow="{percent:.1f}" style="height:6px;margin:0.35em 0;border-radius:3px;'
        f'background:rgba(128,128,128,0.25);overflow:hidden"><div style="height:100%;width:{percent:.1f}%;'
        f'background:{colour}"></div></div>'
        f'<div style="opacity:0.75">{html.escape(" · ".join(_facts(status)))}</div>'
        f"<div>{chips}</div>{''.join(lists)}</div>"
    )
