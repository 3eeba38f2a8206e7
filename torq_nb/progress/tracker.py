"""ProgressTracker: an observable record of a staged operation, cheap enough to update in a tight loop.

The tracker is the model; views (the notebook widget, the terminal line, callbacks) observe it through
``subscribe()``. Counters (done, percent, rate, eta, duration, message) change on every call but are
*published* (to subscribers, callbacks and the observable traits) at most once per ``refresh_interval``
seconds, as tqdm does; stage changes and terminal states are published at once, and a change held back
is published when the interval ends. That is the only throttle: views show what they are handed.
``get_status()`` always reads the exact current values. The fields of a status are declared once, by
``ProgressStatus``; the traits are made from its fields.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import math
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Sequence,
)
from datetime import datetime, timezone
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import traitlets

from torq_nb.progress.models import (
    TERMINAL_STATES,
    ErrorInfo,
    ProgressStatus,
    StageStatus,
)

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["DEFAULT_STAGES", "ProgressTracker", "StageSpec", "get_progress"]

log = logging.getLogger(__name__)

T = TypeVar("T")
StageSpec = Sequence[str] | Sequence[tuple[str, float]]
StatusCallback = Callable[[dict[str, Any]], object]
Subscriber = Callable[[ProgressStatus], object]

#: The research pipeline's stages and the percentage at which each begins.
DEFAULT_STAGES: tuple[tuple[str, float], ...] = (
    ("initializing", 0.0),
    ("searching", 25.0),
    ("extracting", 50.0),
    ("synthesizing", 75.0),
    ("complete", 100.0),
)

#: How many finished operations ``get_progress`` still remembers after their trackers are gone.
FINISHED_KEPT = 256

#: Hot-loop counting reads the clock at most this many units apart (see ``_Counter``).
_MAX_STEP = 64

_get_ident = threading.get_ident
_live: weakref.WeakValueDictionary[str, ProgressTracker] = weakref.WeakValueDictionary()
_finished: OrderedDict[str, ProgressStatus] = OrderedDict()
_registry_lock = threading.Lock()


def get_progress(operation_id: str) -> ProgressStatus | None:
    """The current status of the operation with this id, or None if no tracker has it."""
    with _registry_lock:
        tracker = _live.get(operation_id)
        if tracker is None:
            return _finished.get(operation_id)
    return tracker.status()


def _remember_finished(status: ProgressStatus) -> None:
    with _registry_lock:
        _finished[status.operation_id] = status
        _finished.move_to_end(status.operation_id)
        while len(_finished) > FINISHED_KEPT:
            _finished.popitem(last=False)


def _utc_iso(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _normalise_stages(stages: StageSpec | None) -> tuple[tuple[str, float], ...]:
    """Stage names evenly spaced over 0–100, or (name, percent) pairs, validated."""
    if stages is None:
        return DEFAULT_STAGES
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Iterable):
        raise TypeError(f"stages must be a list of stage names or of (name, percent) pairs, got {stages!r}")
    items: list[Any] = list(stages)
    if not items:
        raise ValueError("stages must name at least one stage")
    pairs: list[tuple[str, float]]
    if all(isinstance(item, str) for item in items):
        pairs = [(name, 100.0 * index / len(items)) for index, name in enumerate(items)]
    elif all(isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str) for item in items):
        try:
            pairs = [(name, float(percent)) for name, percent in items]
        except (TypeError, ValueError):
            raise ValueError(f"each stage's percent must be a number, got {items!r}") from None
    else:
        raise TypeError(f"stages must be a list of stage names or of (name, percent) pairs, got {items!r}")
    names = [name for name, _ in pairs]
    if not all(names):
        raise ValueError(f"stage names must not be empty, got {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique, got {names}")
    percents = [percent for _, percent in pairs]
    if any(not 0.0 <= p <= 100.0 for p in percents) or percents != sorted(percents):
        raise ValueError(f"stage percentages must rise from 0 to 100, got {percents}")
    return tuple(pairs)


def _number(value: Any, call: str, name: str) -> Any:
    """``value`` if it is a finite real number, else a TypeError or ValueError that names the parameter."""
    try:
        finite = -math.inf < value < math.inf  # False for NaN; TypeError for str, None, complex
    except (TypeError, ValueError):  # ValueError: an array's ambiguous truth
        raise TypeError(f"{call}: {name} must be a number of items, got {value!r} ({type(value).__name__})") from None
    if not finite:
        raise ValueError(f"{call}: {name} must be a finite number, got {value!r}")
    return value


def _whole(value: Any, call: str, name: str) -> int:
    """``value`` as an int if it is a whole number >= 0 (2 or 2.0), else an error that names the parameter."""
    number = _number(value, call, name)
    if number < 0 or number != int(number):
        raise ValueError(f"{call}: {name} must be a whole number >= 0, got {value!r}")
    return int(number)


def _text(value: Any, call: str, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{call}: {name} must be a string or None, got {value!r} ({type(value).__name__})")
    return value


class _Guarded:
    """Wraps an observer so that an exception in it is logged instead of breaking the tracked work."""

    __slots__ = ("handler",)

    def __init__(self, handler: Callable[..., object]) -> None:
        self.handler = handler

    def __call__(self, change: Any) -> None:
        try:
            self.handler(change)
        except Exception:
            log.exception("progress observer %r raised; the operation continues", self.handler)

    def __eq__(self, other: object) -> bool:
        target = other.handler if isinstance(other, _Guarded) else other
        return bool(self.handler == target)

    def __hash__(self) -> int:
        return hash(self.handler)


class _Counter:
    """One writer's share of a tracker's count: one thread's ``advance()`` calls, or one ``track()`` loop.

    Why: the lock was most of what ``advance()`` cost (390 ns a call with it on this machine, about
    200 ns without: less than tqdm's ``update(1)``). A counter has one writer at a time: a thread (found by its
    id) or a ``track()`` generator (which cannot run in two threads at once). So ``count += n`` needs no
    lock and loses no increment, however many threads count; the tracker's count is ``_offset`` plus the
    sum of its counters, read under the lock. Stage changes and ``update()`` move ``_offset``; the end of
    the operation freezes the sum into ``_offset`` and drops the counters, so a late ``advance()`` finds
    none and takes the slow path, which refuses it and logs.

    The writer reads the clock only when ``count`` reaches ``check_at``. The step to the next check
    adapts, like tqdm's miniters, so that the clock is read about ten times per refresh interval, but
    never more than ``_MAX_STEP`` units apart: a fast loop that turns slow is published again after at
    most that many more units.
    """

    __slots__ = ("check_at", "checked_at", "checked_count", "count")

    def __init__(self, now: float) -> None:
        self.count = 0
        self.check_at = 1
        self.checked_count = 0
        self.checked_at = now


#: A read-only trait per ProgressStatus field, of the same name, holding the published value as ``to_dict()``
#: gives it (``error`` and ``stages`` as dicts): ``tracker.observe(fn, names=["stage"])``, ``tracker.done``.
_StatusTraits: Any = traitlets.MetaHasTraits(
    "_StatusTraits",
    (traitlets.HasTraits,),
    {
        "__module__": __name__,
        "__doc__": "One read-only trait per ProgressStatus field (made from the dataclass, not declared again).",
        **{field.name: traitlets.Any(read_only=True) for field in dataclasses.fields(ProgressStatus)},
    },
)


class _Subscription:
    """One observer of a tracker: a subscriber (handed ProgressStatus) or an add_callback callback (a dict)."""

    __slots__ = ("as_dict", "callback")

    def __init__(self, callback: Callable[[Any], object], *, as_dict: bool) -> None:
        self.callback = callback
        self.as_dict = as_dict

    def deliver(self, status: ProgressStatus, data: dict[str, Any]) -> None:
        try:
            self.callback(data if self.as_dict else status)
        except Exception:
            log.exception("progress callback %r raised; the operation continues", self.callback)


class ProgressTracker(_StatusTraits):  # type: ignore[misc]  # a base made from ProgressStatus's fields
    """Tracks an operation through named stages, with counts, rate, ETA and errors.

    >>> tracker = ProgressTracker("research_task")
    >>> tracker.progress("initializing"); tracker.progress("searching")
    >>> for page in tracker.track(pages): ...
    >>> tracker.complete()

    Views subscribe: ``unsubscribe = tracker.subscribe(fn)`` calls ``fn(status)`` (a ProgressStatus) at once
    and on every published change. ``add_callback(fn)`` hands ``get_status()`` dicts instead, and every
    status field is also a read-only trait (``tracker.observe(fn, names=["stage"])``). A failing observer is
    logged and never breaks the operation. Safe to update from several threads and asyncio tasks at once.
    Observers run with the tracker's lock held, in the thread that published, so they see changes one at a
    time, in order.

    ``clock`` (seconds, monotonic; default ``time.monotonic``) times durations, rates, ETAs and the
    throttle: a test can pass a fake one and move time forward without sleeping. ``unit`` names what is
    counted (tqdm's ``unit``: "it", "pages", "files"), as the views show counts and rates.
    """

    def __init__(
        self,
        operation_name: str,
        stages: StageSpec | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        refresh_interval: float = 0.1,
        clock: Callable[[], float] = monotonic,
        unit: str = "it",
    ) -> None:
        super().__init__()
        if not isinstance(operation_name, str) or not operation_name:
            raise ValueError(f"operation_name must be a non-empty string, got {operation_name!r}")
        if not isinstance(unit, str) or not unit.strip():
            raise ValueError(f"unit must be a non-empty string such as 'it' or 'pages', got {unit!r}")
        self._unit = unit.strip()
        if not isinstance(refresh_interval, (int, float)) or not refresh_interval >= 0:
            raise ValueError(f"refresh_interval must be a number of seconds >= 0, got {refresh_interval!r}")
        self._stage_spec = _normalise_stages(stages)
        self._stage_index = {name: index for index, (name, _) in enumerate(self._stage_spec)}
        if not callable(clock):
            raise TypeError(f"clock must be a function returning seconds, like time.monotonic, got {clock!r}")
        self.refresh_interval = float(refresh_interval)
        self._clock = clock
        self._lock = threading.RLock()
        self._subscriptions: list[_Subscription] = []
        self._warned_terminal = False
        self._operation = operation_name
        self._operation_id = uuid.uuid4().hex
        self._initial_metadata = dict(metadata or {})
        self._clear()
        self._publish()  # the traits start as the pending status
        with _registry_lock:
            _live[self._operation_id] = self

    # ----------------------------------------------------------------- internal state

    def _clear(self) -> None:
        """Back to the pending state: no stage entered, no counts, no error."""
        self._state = "pending"
        self._current = -1
        self._message: str | None = None
        # done = _offset + the sum of the counters. Counters are only added, removed or replaced
        # with the lock held; a new dict (here and at the end) sends every writer through the slow path.
        self._counters: dict[object, _Counter] = {}
        self._offset = 0
        self._total: int | None = None
        self._started: float | None = None
        self._started_at: str | None = None
        self._ended: float | None = None
        self._count_started = 0.0
        self._error: ErrorInfo | None = None
        self._metadata = dict(self._initial_metadata)
        self._stage_started: list[float | None] = [None] * len(self._stage_spec)
        self._stage_started_at: list[str | None] = [None] * len(self._stage_spec)
        self._stage_duration: list[float | None] = [None] * len(self._stage_spec)
        self._stage_state: list[str] = ["pending"] * len(self._stage_spec)
        self._next_publish = 0.0
        self._trailing: threading.Timer | None = None

    @property
    def stage_names(self) -> list[str]:
        """The names of this tracker's stages, in order."""
        return [name for name, _ in self._stage_spec]

    @property
    def finished(self) -> bool:
        """True once the operation is complete, failed or cancelled."""
        return self._state in TERMINAL_STATES

    def _refuse_if_finished(self, what: str) -> bool:
        """True (and logged: a warning the first time, then at debug level) if the operation has ended."""
        if self._state not in TERMINAL_STATES:
            return False
        level = logging.DEBUG if self._warned_terminal else logging.WARNING
        log.log(level, "%s ignored: operation %r is already %s", what, self._operation, self._state)
        self._warned_terminal = True
        return True

    def _done_now(self) -> int:
        """The exact count in the current stage. Called with the lock held."""
        done = self._offset
        for counter in self._counters.values():
            done += counter.count
        return done

    def _percent_now(self, done: int) -> float:
        if self._state == "complete":
            return 100.0
        if self._current < 0:
            return 0.0
        start = self._stage_spec[self._current][1]
        following = self._stage_spec[self._current + 1][1] if self._current + 1 < len(self._stage_spec) else 100.0
        if self._total:
            return start + (following - start) * min(max(done / self._total, 0.0), 1.0)
        return start

    # ----------------------------------------------------------------- reading

    def status(self) -> ProgressStatus:
        """A typed snapshot of the current status (exact, not throttled)."""
        with self._lock:
            now = self._clock()
            end = self._ended if self._ended is not None else now
            done = int(self._done_now())  # int even if someone counted in floats
            duration = end - self._started if self._started is not None else 0.0
            counting = end - self._count_started
            rate = done / counting if done > 0 and counting > 0 else None
            eta = None
            if rate and self._total is not None and self._state == "running":
                eta = max(self._total - done, 0) / rate
            stages: list[StageStatus] = []
            for index, (name, percent) in enumerate(self._stage_spec):
                started = self._stage_started[index]
                stage_duration = self._stage_duration[index]
                if stage_duration is None and started is not None:
                    stage_duration = end - started
                stages.append(
                    StageStatus(name, percent, self._stage_state[index], self._stage_started_at[index], stage_duration)  # type: ignore[arg-type]
                )
            return ProgressStatus(
                operation=self._operation,
                operation_id=self._operation_id,
                stage=self._stage_spec[self._current][0] if self._current >= 0 else None,
                percent=round(self._percent_now(done), 3),
                state=self._state,  # type: ignore[arg-type]
                message=self._message,
                duration=duration,
                timestamp=_utc_iso(),
                started_at=self._started_at,
                done=done,
                total=self._total,
                rate=rate,
                eta=eta,
                error=self._error,
                unit=self._unit,
                metadata=dict(self._metadata),
                stages=tuple(stages),
            )

    def get_status(self) -> dict[str, Any]:
        """The current status as a plain dict (see ProgressStatus for its keys)."""
        return self.status().to_dict()

    # ----------------------------------------------------------------- publishing

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(status)`` with the current ProgressStatus now, then with every published one.

        The first call happens under the lock that publishing holds, so no change can fall between that
        snapshot and the next one. Published: at most every ``refresh_interval`` seconds, stage changes and
        the end at once, a held-back change when the interval ends. Returns a function that unsubscribes.
        """
        subscription = _Subscription(callback, as_dict=False)
        with self._lock:
            self._subscriptions.append(subscription)
            status = self.status()
            subscription.deliver(status, {})

        def unsubscribe() -> None:
            with self._lock:
                if subscription in self._subscriptions:
                    self._subscriptions.remove(subscription)

        return unsubscribe

    def add_callback(self, callback: StatusCallback) -> None:
        """Call ``callback(get_status())`` on every published change (see ``subscribe``, which also hands the
        current status at once, as a ProgressStatus)."""
        with self._lock:
            self._subscriptions.append(_Subscription(callback, as_dict=True))

    def remove_callback(self, callback: StatusCallback) -> None:
        """Stop calling a callback added with ``add_callback``; ValueError if it is not one."""
        with self._lock:
            for subscription in self._subscriptions:
                if subscription.as_dict and subscription.callback == callback:
                    self._subscriptions.remove(subscription)
                    return
        raise ValueError(f"{callback!r} is not a callback of this tracker")

    def _add_notifiers(self, handler: Any, name: Any, type: Any) -> None:  # traitlets' signature
        super()._add_notifiers(_Guarded(handler), name, type)

    def _publish(self) -> None:
        """Hand the exact current status to the traits, subscribers and callbacks. Called with the lock held."""
        status = self.status()
        data = status.to_dict()
        self._next_publish = self._clock() + self.refresh_interval
        if self._trailing is not None:
            self._trailing.cancel()
            self._trailing = None
        with self.hold_trait_notifications():
            for name, value in data.items():
                self.set_trait(name, value)
        for subscription in list(self._subscriptions):
            subscription.deliver(status, data)
        if status.finished:
            _remember_finished(status)

    def _publish_later(self) -> None:
        """A change was held back by the throttle: publish it when the interval ends, even if nothing else
        happens by then (a loop that pauses, the last page of a batch), so no view shows a stale count."""
        if self._trailing is not None:
            return
        with self._lock:
            if self._trailing is None and self._state == "running":
                timer = threading.Timer(max(self._next_publish - self._clock(), 0.0), self._publish_trailing)
                timer.daemon = True
                self._trailing = timer
                timer.start()

    def _publish_trailing(self) -> None:
        with self._lock:
            if self._trailing is not None and self._state == "running":
                self._publish()

    # ----------------------------------------------------------------- stages

    def _begin(self) -> None:
        if self._started is None:
            self._started = self._clock()
            self._started_at = _utc_iso()
        self._state = "running"

    def _close_stage(self, state: str, now: float) -> None:
        if self._current >= 0 and self._stage_state[self._current] == "running":
            self._stage_state[self._current] = state
            started = self._stage_started[self._current]
            self._stage_duration[self._current] = now - started if started is not None else 0.0

    def _enter(self, index: int, now: float) -> None:
        """Make stage ``index`` the current one (earlier stages complete or skipped); counts untouched."""
        self._close_stage("complete", now)
        for skipped in range(self._current + 1, index):
            self._stage_state[skipped] = "skipped"
        self._current = index
        self._stage_state[index] = "running"
        self._stage_started[index] = now
        self._stage_started_at[index] = _utc_iso()

    def _restart_count(self, total: int | None, now: float) -> None:
        """Count from zero (toward ``total``), with the rate measured from ``now``."""
        self._offset -= self._done_now()
        self._total = total
        self._count_started = now

    def _start_if_pending(self) -> bool:
        """Enter the first stage if the operation has not started; True if it just did."""
        if self._state != "pending":
            return False
        now = self._clock()
        self._begin()
        self._enter(0, now)
        self._restart_count(None, now)
        return True

    def progress(self, stage: str, message: str | None = None, **metadata: Any) -> None:
        """Enter ``stage`` (or stay in it), with an optional message and metadata to record.

        Entering a stage is published at once; staying in it (a new message) waits for the throttle.
        """
        _text(message, "progress()", "message")
        with self._lock:
            if self._refuse_if_finished(f"progress({stage!r})"):
                return
            index = self._stage_index.get(stage)
            if index is None:
                raise ValueError(f"unknown stage {stage!r}; valid stages are {', '.join(self.stage_names)}")
            if index < self._current:
                current = self._stage_spec[self._current][0]
                raise ValueError(f"cannot move back from stage {current!r} to earlier stage {stage!r}")
            self._begin()
            entered = index != self._current
            if entered:
                now = self._clock()
                self._enter(index, now)
                self._restart_count(None, now)
            self._message = message
            self._metadata.update(metadata)
            if entered or self._clock() >= self._next_publish:  # a new message in the same stage is throttled
                self._publish()
            else:
                self._publish_later()

    def update(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Set the count of items done in the current stage (and the total, and a message, if given).

        ``done`` is a number >= 0 (fractions count, the status shows the whole part), ``total`` a whole number.
        """
        done = _number(done, "update()", "done")
        if done < 0:
            raise ValueError(f"update(): done must be a number >= 0, got {done!r}")
        if total is not None:
            total = _whole(total, "update()", "total")
        _text(message, "update()", "message")
        with self._lock:
            if self._refuse_if_finished("update()"):
                return
            started = self._start_if_pending()
            self._offset += done - self._done_now()
            new_total = total is not None and total != self._total
            if total is not None:
                self._total = total
            if message is not None:
                self._message = message
            # A new total (the bar's scale) goes out at once; the same total again (update(i, total=n) in a
            # loop) waits for the throttle like any count.
            if started or new_total or self._clock() >= self._next_publish:
                self._publish()
            else:
                self._publish_later()

    # ----------------------------------------------------------------- counting in hot loops

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items done in the current stage. Cheap: no lock, publishes at most every refresh_interval.

        ``n`` is a finite number (fractions count, as in tqdm); anything else raises and counts nothing.
        """
        counter = self._counters.get(_get_ident())
        if counter is None:
            self._advance_slow(n)
            return
        # No type check per call: the sum raises for what is not a number, and the range check that decides when
        # to look at the clock is False for NaN, infinities and counts that went back, which take the checked path.
        try:
            count = counter.count + n
            if counter.checked_count <= count < counter.check_at:
                counter.count = count
                return
        except (TypeError, ValueError):
            _number(n, "advance()", "n")
            raise
        self._advance_checked(counter, count, n)

    def _advance_checked(self, counter: _Counter, count: Any, n: Any) -> None:
        """The fast path's rare case: validate ``n`` (the count is stored only if it is a number), then checkpoint."""
        _number(n, "advance()", "n")
        counter.count = count
        self._checkpoint(counter)

    def _advance_slow(self, n: int) -> None:
        """advance() of a thread without a counter yet: start the operation if pending, refuse if ended."""
        _number(n, "advance()", "n")
        with self._lock:
            if self._refuse_if_finished("advance()"):
                return
            started = self._start_if_pending()
            now = self._clock()
            counter = self._counters[_get_ident()] = _Counter(now)
            counter.count = n
            if started or now >= self._next_publish:
                self._publish()
            else:
                self._publish_later()

    def _checkpoint(self, counter: _Counter) -> int:
        """Called by a counter's writer every few units: adapt the step, publish if due; the next check_at."""
        now = self._clock()
        elapsed = now - counter.checked_at
        counted = counter.count - counter.checked_count
        step = int(counted * self.refresh_interval / (10 * elapsed)) if elapsed > 0 else _MAX_STEP
        counter.check_at = counter.count + min(max(step, 1), _MAX_STEP)
        counter.checked_count, counter.checked_at = counter.count, now
        if now >= self._next_publish:
            with self._lock:
                if self._state == "running" and now >= self._next_publish:
                    self._publish()
        else:
            self._publish_later()
        return counter.check_at

    def track(self, iterable: Iterable[T] | AsyncIterable[T], total: int | None = None) -> Any:
        """Yield from a sync or async iterable, counting each item in the current stage, like tqdm.

        The count restarts at zero, toward ``total`` (default: ``len(iterable)`` when it has one).
        An item counts once the loop asks for the next one, so a ``break`` leaves out the item it broke on.
        """
        if total is None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        else:
            total = _whole(total, "track()", "total")
        counter = self._start_track(total)
        if isinstance(iterable, AsyncIterable):
            return self._track_async(iterable, counter)
        return self._track_sync(iterable, counter)

    def _start_track(self, total: int | None) -> _Counter:
        """A counter for one track() loop, registered unless the operation has ended."""
        with self._lock:
            now = self._clock()
            counter = _Counter(now)
            if self._refuse_if_finished("track()"):
                return counter
            started = self._start_if_pending()
            self._restart_count(total, now)
            self._counters[counter] = counter
            if started or now >= self._next_publish:  # throttled: many short loops in a row stay cheap
                self._publish()
            else:
                self._publish_later()
            return counter

    def _end_track(self, counter: _Counter) -> None:
        """Fold a finished loop's count into the offset; its final count is published (now, or when the
        interval ends: many short loops in a row stay within the throttle)."""
        with self._lock:
            if self._counters.pop(counter, None) is counter:
                self._offset += counter.count
                if self._state == "running":
                    if self._clock() >= self._next_publish:
                        self._publish()
                    else:
                        self._publish_later()

    def _track_sync(self, iterable: Iterable[T], counter: _Counter) -> Generator[T, None, None]:
        count, check_at = 0, counter.check_at  # locals: the cheapest per-item work
        try:
            for item in iterable:
                yield item
                count += 1
                counter.count = count
                if count >= check_at:
                    check_at = self._checkpoint(counter)
        finally:
            self._end_track(counter)

    async def _track_async(self, iterable: AsyncIterable[T], counter: _Counter) -> AsyncIterator[T]:
        # The sync loop counts: one tick per item the loop asks past; closing it ends the track.
        ticks = self._track_sync(itertools.repeat(None), counter)
        next(ticks)
        try:
            async for item in iterable:
                yield item
                next(ticks)
        finally:
            ticks.close()

    # ----------------------------------------------------------------- endings

    def _finish(self, state: str, stage_state: str) -> None:
        now = self._clock()
        self._close_stage(stage_state, now)
        self._state = state
        self._ended = now
        # Freeze the count: later increments land in counters nobody reads any more.
        self._offset, self._counters = self._done_now(), {}
        self._publish()

    def complete(self, message: str | None = None) -> None:
        """Finish successfully: 100%, every stage done (the final marker stage, if any, entered).

        The counts, rate and total of the last counted stage are kept, as tqdm keeps them when it closes.
        """
        with self._lock:
            if self._refuse_if_finished("complete()"):
                return
            self._begin()
            last = len(self._stage_spec) - 1
            if self._stage_spec[last][1] >= 100.0 and self._current < last:
                self._enter(last, self._clock())
            for index in range(self._current + 1, len(self._stage_spec)):
                self._stage_state[index] = "skipped"
            if message is not None:
                self._message = message
            self._finish("complete", "complete")

    def fail(self, error: BaseException | str) -> None:
        """Finish with an error; the current stage is marked failed and the error recorded."""
        with self._lock:
            if self._refuse_if_finished("fail()"):
                return
            self._begin()
            if isinstance(error, BaseException):
                self._error = ErrorInfo(type(error).__name__, str(error) or repr(error))
            else:
                self._error = ErrorInfo("Error", str(error))
            self._finish("failed", "failed")

    def cancel(self, message: str | None = None) -> None:
        """Finish as cancelled; counts reached so far are kept."""
        with self._lock:
            if self._refuse_if_finished("cancel()"):
                return
            self._begin()
            if message is not None:
                self._message = message
            self._finish("cancelled", "cancelled")

    def reset(self) -> None:
        """Forget all progress and return to the pending state (same operation id)."""
        with self._lock:
            self._clear()
            self._warned_terminal = False
            self._publish()

    # ----------------------------------------------------------------- context managers

    def __enter__(self) -> Self:
        with self._lock:
            if self._state == "pending":
                self.progress(self._stage_spec[0][0])
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Complete on success, cancel on KeyboardInterrupt or task cancellation, else fail; never swallow."""
        with self._lock:
            if self.finished:  # ended inside the block: that ending stands
                return
            if exc is None:
                self.complete()
            elif isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
                self.cancel()
            else:
                self.fail(exc)

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # ----------------------------------------------------------------- display

    def __repr__(self) -> str:
        status = self.status()
        counts = f" ({status.done}/{status.total})" if status.total else ""
        return (
            f"<ProgressTracker {self._operation!r} {status.state} {status.stage or '-'} {status.percent:.0f}%{counts}>"
        )
