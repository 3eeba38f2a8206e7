"""ProgressTracker against the rules of issue 2 §2: stages, counting, endings, status, observers, threads, registry."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import pytest
import traitlets

from torq_nb.progress.models import ErrorInfo, ProgressStatus
from torq_nb.progress.tracker import (
    DEFAULT_STAGES,
    FINISHED_KEPT,
    ProgressTracker,
    get_progress,
)

LOGGER = "torq_nb.progress.tracker"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
STATUS_KEYS = {
    "operation", "operation_id", "stage", "percent", "state", "message", "duration", "timestamp", "started_at",
    "done", "total", "rate", "eta", "error", "metadata", "stages",
}  # fmt: skip


def stage_states(tracker: ProgressTracker) -> dict[str, str]:
    return {stage["name"]: stage["state"] for stage in tracker.get_status()["stages"]}


def numbers(count: int) -> Iterator[int]:
    """A generator: no len(), like most real streams."""
    yield from range(count)


async def anumbers(count: int) -> AsyncIterator[int]:
    for number in range(count):
        await asyncio.sleep(0)
        yield number


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))  # Python 3.10 does not read "Z"


# --------------------------------------------------------------------------- stages


def test_default_stages_and_their_percentages() -> None:
    tracker = ProgressTracker("research_task")
    assert tracker.stage_names == ["initializing", "searching", "extracting", "synthesizing", "complete"]
    assert [(s["name"], s["percent"]) for s in tracker.get_status()["stages"]] == list(DEFAULT_STAGES)
    seen = []
    for stage in ["initializing", "searching", "extracting", "synthesizing"]:
        tracker.progress(stage)
        seen.append((tracker.get_status()["stage"], tracker.get_status()["percent"]))
    assert seen == [("initializing", 0.0), ("searching", 25.0), ("extracting", 50.0), ("synthesizing", 75.0)]
    tracker.complete()
    status = tracker.get_status()
    assert (status["stage"], status["percent"], status["state"]) == ("complete", 100.0, "complete")
    assert set(stage_states(tracker).values()) == {"complete"}


def test_stage_names_are_spaced_evenly() -> None:
    tracker = ProgressTracker("etl", ["download", "parse", "save"])
    assert [s["percent"] for s in tracker.get_status()["stages"]] == pytest.approx([0.0, 100 / 3, 200 / 3])
    tracker.progress("parse")
    assert tracker.get_status()["percent"] == pytest.approx(33.333)


def test_stages_as_name_percent_pairs() -> None:
    tracker = ProgressTracker("train", [("load", 0), ("fit", 10), ("evaluate", 90), ("done", 100)])
    assert tracker.stage_names == ["load", "fit", "evaluate", "done"]
    tracker.progress("evaluate")
    assert tracker.get_status()["percent"] == 90.0
    tracker.complete()
    assert tracker.get_status()["stage"] == "done"


@pytest.mark.parametrize(
    ("stages", "error"),
    [
        ([], ValueError),
        ("abc", TypeError),  # a string is not a list of names
        ([("a", 0), "b"], TypeError),
        ([("a", 0, 1)], TypeError),
        ([("a", "half")], ValueError),
        ([("a", 50), ("b", 10)], ValueError),
        ([("a", 0), ("b", 150)], ValueError),
        ([("a", -1)], ValueError),
        ([("a", float("nan"))], ValueError),
        (["a", "a"], ValueError),
        (["a", ""], ValueError),
        (42, TypeError),
    ],
)
def test_invalid_stage_specs_are_refused(stages: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="stage"):
        ProgressTracker("op", stages)


@pytest.mark.parametrize("kwargs", [{"operation_name": ""}, {"operation_name": None}])
def test_operation_name_is_required(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="operation_name"):
        ProgressTracker(**kwargs)


def test_refresh_interval_must_be_a_non_negative_number() -> None:
    with pytest.raises(ValueError, match="refresh_interval"):
        ProgressTracker("op", refresh_interval=-1)


# --------------------------------------------------------------------------- counting


def test_update_moves_percent_smoothly_toward_the_next_stage() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("searching")
    percents = []
    for done in range(11):
        tracker.update(done, total=10)
        percents.append(tracker.get_status()["percent"])
    assert percents == pytest.approx([25 + 2.5 * i for i in range(11)])
    tracker.update(15)  # past the total: the next stage's percentage is the ceiling
    assert tracker.get_status()["percent"] == 50.0
    assert tracker.get_status()["done"] == 15


def test_last_stage_fills_up_to_100() -> None:
    tracker = ProgressTracker("op", ["first", "last"])
    tracker.progress("last")
    tracker.update(1, total=4)
    assert tracker.get_status()["percent"] == 62.5


def test_update_sets_message_and_keeps_total() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("extracting", "reading pages")
    tracker.update(2, total=8)
    tracker.update(4, message="read 4 of 8")
    status = tracker.get_status()
    assert (status["done"], status["total"], status["message"]) == (4, 8, "read 4 of 8")


def test_advance_counts_in_the_current_stage() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("extracting")
    tracker.update(0, total=4)
    tracker.advance()
    tracker.advance(2)
    status = tracker.get_status()
    assert (status["done"], status["total"], status["percent"]) == (3, 4, 68.75)


def test_counts_restart_in_each_stage() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("searching")
    for _ in range(5):
        tracker.advance()
    tracker.update(5, total=5)
    tracker.progress("extracting")
    status = tracker.get_status()
    assert (status["done"], status["total"], status["percent"]) == (0, None, 50.0)
    tracker.advance()
    assert tracker.get_status()["done"] == 1


def test_advance_on_a_pending_tracker_starts_the_first_stage() -> None:
    tracker = ProgressTracker("op")
    tracker.advance()
    status = tracker.get_status()
    assert (status["state"], status["stage"], status["done"]) == ("running", "initializing", 1)


def test_track_a_list_counts_every_item_toward_its_length() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("extracting")
    during = []
    items = list("abcdefgh")
    out = []
    for item in tracker.track(items):
        status = tracker.get_status()
        during.append((status["done"], status["total"], status["percent"]))
        out.append(item)
    assert out == items
    # exact while looping: the item being processed is not counted yet, as in tqdm
    assert during == [(i, 8, pytest.approx(50 + 25 * i / 8)) for i in range(8)]
    status = tracker.get_status()
    assert (status["done"], status["total"], status["percent"]) == (8, 8, 75.0)


def test_track_a_generator_without_len() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("searching")
    tracker.update(3, total=10)  # a previous count in the stage: track starts afresh
    assert sum(tracker.track(numbers(100))) == sum(range(100))
    status = tracker.get_status()
    assert (status["done"], status["total"], status["percent"]) == (100, None, 25.0)
    assert status["rate"] > 0 and status["eta"] is None


def test_track_with_an_explicit_total() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("searching")
    for _ in tracker.track(numbers(5), total=10):
        pass
    status = tracker.get_status()
    assert (status["done"], status["total"], status["percent"]) == (5, 10, 37.5)


def test_track_counts_up_to_an_early_break() -> None:
    tracker = ProgressTracker("op", refresh_interval=0.2)
    tracker.progress("searching")
    done_trait = []
    tracker.observe(lambda change: done_trait.append(change["new"]), names="done")
    for number in tracker.track(range(100)):
        if number == 10:
            break
    assert tracker.get_status()["done"] == 10
    # The end of the loop is published when the interval ends, even if nothing else happens.
    assert _eventually(lambda: done_trait and done_trait[-1] == 10)


async def test_track_an_async_iterable() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("extracting")
    seen = [number async for number in tracker.track(anumbers(50))]
    assert seen == list(range(50))
    status = tracker.get_status()
    assert (status["done"], status["total"], status["percent"]) == (50, None, 50.0)

    async for _ in tracker.track(anumbers(20), total=40):
        pass
    status = tracker.get_status()
    assert (status["done"], status["total"], status["percent"]) == (20, 40, 62.5)


async def test_async_track_counts_up_to_an_early_break_at_once() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("extracting")
    async for number in tracker.track(anumbers(100)):
        if number == 7:
            break
    # exact without waiting for the event loop to finalise the abandoned async generator
    assert tracker.get_status()["done"] == 7


def test_track_after_the_end_yields_items_counts_nothing_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    tracker = ProgressTracker("op")
    tracker.progress("searching")
    tracker.advance(3)
    tracker.complete()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert list(tracker.track([1, 2, 3])) == [1, 2, 3]
    assert tracker.get_status()["done"] == 3
    assert "track() ignored" in caplog.text and "already complete" in caplog.text


def test_rate_and_eta() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("extracting")
    status = tracker.get_status()
    assert status["rate"] is None and status["eta"] is None  # nothing counted yet
    tracker.update(0, total=1000)
    for _ in range(250):
        tracker.advance()
    status = tracker.get_status()
    assert isinstance(status["rate"], float) and status["rate"] > 0
    assert status["eta"] == pytest.approx(750 / status["rate"])
    tracker.complete()
    assert tracker.get_status()["eta"] is None
    assert tracker.get_status()["rate"] > 0


# --------------------------------------------------------------------------- endings


def test_complete_keeps_counts_and_marks_stages() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("searching")
    tracker.update(7, total=7)
    tracker.complete("7 hits")
    status = tracker.get_status()
    assert (status["state"], status["percent"], status["message"]) == ("complete", 100.0, "7 hits")
    assert (status["done"], status["total"]) == (7, 7)
    assert stage_states(tracker) == {
        "initializing": "skipped",  # never entered
        "searching": "complete",
        "extracting": "skipped",
        "synthesizing": "skipped",
        "complete": "complete",
    }
    assert tracker.finished


def test_complete_with_custom_stages_without_a_100_marker() -> None:
    tracker = ProgressTracker("etl", ["download", "parse", "save"])
    tracker.progress("download")
    tracker.complete()
    status = tracker.get_status()
    assert (status["stage"], status["percent"], status["state"]) == ("download", 100.0, "complete")
    assert stage_states(tracker) == {"download": "complete", "parse": "skipped", "save": "skipped"}


def test_fail_records_the_error_and_keeps_the_percentage() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("extracting")
    tracker.update(1, total=2)
    tracker.fail(RuntimeError("page 3 timed out"))
    status = tracker.get_status()
    assert status["state"] == "failed"
    assert status["error"] == {"type": "RuntimeError", "message": "page 3 timed out"}
    assert status["percent"] == 62.5
    assert stage_states(tracker)["extracting"] == "failed"
    assert stage_states(tracker)["synthesizing"] == "pending"


def test_fail_with_a_message_or_an_empty_exception() -> None:
    tracker = ProgressTracker("op")
    tracker.fail("no sources configured")
    assert tracker.get_status()["error"] == {"type": "Error", "message": "no sources configured"}
    other = ProgressTracker("op")
    other.fail(TimeoutError())
    assert other.get_status()["error"] == {"type": "TimeoutError", "message": "TimeoutError()"}


def test_cancel_keeps_counts() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("searching")
    tracker.update(3, total=9)
    tracker.cancel("stopped by the user")
    status = tracker.get_status()
    assert (status["state"], status["done"], status["message"]) == ("cancelled", 3, "stopped by the user")
    assert stage_states(tracker)["searching"] == "cancelled"
    assert status["error"] is None


def test_reset_returns_to_pending_with_the_same_id() -> None:
    tracker = ProgressTracker("op", metadata={"topic": "bees"})
    operation_id = tracker.operation_id
    tracker.progress("searching", source="wiki")
    tracker.advance(4)
    tracker.fail(ValueError("bad"))
    tracker.reset()
    status = tracker.get_status()
    assert status["operation_id"] == operation_id
    assert (status["state"], status["stage"], status["percent"], status["done"]) == ("pending", None, 0.0, 0)
    assert (status["error"], status["started_at"], status["metadata"]) == (None, None, {"topic": "bees"})
    assert set(stage_states(tracker).values()) == {"pending"}
    assert tracker.state == "pending" and tracker.done == 0  # the reset is published too
    tracker.advance()
    tracker.complete()
    assert tracker.get_status()["state"] == "complete"


# --------------------------------------------------------------------------- status


def test_get_status_keys_and_types() -> None:
    tracker = ProgressTracker("research: bees", metadata={"depth": "quick"})
    status = tracker.get_status()
    assert STATUS_KEYS <= status.keys()
    assert (status["state"], status["stage"], status["started_at"], status["duration"]) == ("pending", None, None, 0.0)
    assert re.fullmatch(r"[0-9a-f]{32}", status["operation_id"])

    tracker.progress("initializing")
    tracker.progress("searching", "asking the source", source="wikipedia")
    tracker.update(2, total=5)
    status = tracker.get_status()
    assert status["operation"] == "research: bees"
    assert isinstance(status["percent"], float) and 0 <= status["percent"] <= 100
    assert status["state"] in {"pending", "running", "complete", "failed", "cancelled"}
    assert status["message"] == "asking the source"
    assert isinstance(status["duration"], float) and status["duration"] >= 0
    assert ISO_Z.match(status["timestamp"]) and ISO_Z.match(status["started_at"])
    assert parse_iso(status["started_at"]) <= parse_iso(status["timestamp"])
    assert (status["done"], status["total"]) == (2, 5)
    assert isinstance(status["rate"], float) and isinstance(status["eta"], float)
    assert status["error"] is None
    assert status["metadata"] == {"depth": "quick", "source": "wikipedia"}
    assert [s["name"] for s in status["stages"]] == tracker.stage_names
    for stage in status["stages"]:
        assert set(stage) == {"name", "percent", "state", "started_at", "duration"}
    initializing, searching, extracting = status["stages"][:3]
    assert initializing["state"] == "complete" and initializing["duration"] >= 0
    assert searching["state"] == "running" and ISO_Z.match(searching["started_at"])
    assert extracting == {
        "name": "extracting",
        "percent": 50.0,
        "state": "pending",
        "started_at": None,
        "duration": None,
    }
    json.dumps(status)  # plain data all the way down


def test_metadata_may_hold_objects_that_cannot_be_copied() -> None:
    lock = threading.Lock()  # deepcopy would fail on it: metadata is passed through, not copied
    tracker = ProgressTracker("op", metadata={"guard": lock})
    tracker.progress("searching", pool=lock)
    tracker.complete()
    assert tracker.get_status()["metadata"] == {"guard": lock, "pool": lock}
    assert tracker.metadata["pool"] is lock


def test_duration_is_monotonic_and_freezes_at_the_end() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("searching")
    durations = [tracker.get_status()["duration"] for _ in range(50)]
    assert durations == sorted(durations)
    tracker.complete()
    final = tracker.get_status()["duration"]
    assert final >= durations[-1]
    assert tracker.get_status()["duration"] == final


def test_progress_status_round_trip_and_item_access() -> None:
    tracker = ProgressTracker("op", metadata={"topic": "bees"})
    tracker.progress("extracting", "reading", pages=3)
    tracker.update(1, total=3)
    tracker.fail(OSError("disk full"))
    status = tracker.status()
    assert isinstance(status, ProgressStatus)
    assert status.error == ErrorInfo("OSError", "disk full")
    assert status["stage"] == "extracting" and status["error"] == {"type": "OSError", "message": "disk full"}
    assert status.finished
    assert ProgressStatus.from_dict(status.to_dict()) == status
    assert ProgressStatus.from_dict(json.loads(json.dumps(status.to_dict()))) == status


# --------------------------------------------------------------------------- context managers


def test_context_manager_success_completes() -> None:
    with ProgressTracker("op") as tracker:
        assert (tracker.state, tracker.stage) == ("running", "initializing")
        tracker.progress("searching")
    assert tracker.get_status()["state"] == "complete"


def test_context_manager_exception_fails_and_propagates() -> None:
    tracker = ProgressTracker("op")
    with pytest.raises(ConnectionError, match="refused"), tracker:
        tracker.progress("searching")
        raise ConnectionError("connection refused")
    status = tracker.get_status()
    assert status["state"] == "failed"
    assert status["error"] == {"type": "ConnectionError", "message": "connection refused"}
    assert stage_states(tracker)["searching"] == "failed"


def test_context_manager_keyboard_interrupt_cancels() -> None:
    tracker = ProgressTracker("op")
    with pytest.raises(KeyboardInterrupt), tracker:
        raise KeyboardInterrupt
    assert tracker.get_status()["state"] == "cancelled"
    assert tracker.get_status()["error"] is None


def test_an_ending_inside_the_block_stands(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER), ProgressTracker("op") as tracker:
        tracker.fail("gave up")
    assert tracker.get_status()["error"] == {"type": "Error", "message": "gave up"}
    assert "ignored" not in caplog.text


async def test_async_context_manager_success_and_failure() -> None:
    async with ProgressTracker("op") as tracker:
        await asyncio.sleep(0)
        tracker.progress("synthesizing")
    assert tracker.get_status()["state"] == "complete"

    failing = ProgressTracker("op")
    with pytest.raises(LookupError):
        async with failing:
            raise LookupError("no such page")
    assert failing.get_status()["error"] == {"type": "LookupError", "message": "no such page"}


async def test_task_cancellation_marks_cancelled() -> None:
    tracker = ProgressTracker("op")
    inside = asyncio.Event()

    async def run() -> None:
        async with tracker:
            tracker.progress("searching")
            inside.set()
            await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(run())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tracker.get_status()["state"] == "cancelled"
    assert stage_states(tracker)["searching"] == "cancelled"


# --------------------------------------------------------------------------- observers and callbacks


def test_traits_can_be_observed() -> None:
    tracker = ProgressTracker("op")
    stages, states, percents = [], [], []
    tracker.observe(lambda change: stages.append(change["new"]), names="stage")
    tracker.observe(lambda change: states.append(change["new"]), names="state")
    tracker.observe(lambda change: percents.append(change["new"]), names="percent")
    for stage in ["initializing", "searching", "extracting", "synthesizing"]:
        tracker.progress(stage)
    tracker.complete()
    assert stages == ["initializing", "searching", "extracting", "synthesizing", "complete"]
    assert states == ["running", "complete"]
    assert percents == [25.0, 50.0, 75.0, 100.0]
    assert (tracker.stage, tracker.state, tracker.percent) == ("complete", "complete", 100.0)


def test_traits_are_read_only_for_users() -> None:
    tracker = ProgressTracker("op")
    with pytest.raises(traitlets.TraitError, match="read-only"):
        tracker.state = "complete"  # type: ignore[misc]


def test_unobserve_stops_notifications() -> None:
    tracker = ProgressTracker("op")
    seen: list[str] = []

    def handler(change: Any) -> None:
        seen.append(change["new"])

    tracker.observe(handler, names="stage")
    tracker.progress("initializing")
    tracker.unobserve(handler, names="stage")
    tracker.progress("searching")
    assert seen == ["initializing"]


def test_a_raising_observer_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    tracker = ProgressTracker("op")
    after: list[str] = []

    def broken(change: Any) -> None:
        raise ZeroDivisionError("observer bug")

    tracker.observe(broken, names="stage")
    tracker.observe(lambda change: after.append(change["new"]), names="stage")
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        tracker.progress("initializing")
        tracker.progress("searching")
        tracker.complete()
    assert after == ["initializing", "searching", "complete"]
    assert tracker.get_status()["state"] == "complete"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "observer" in r.getMessage()]
    assert len(errors) == 3
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is ZeroDivisionError


def test_callbacks_get_the_status_dict_and_a_raising_one_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    tracker = ProgressTracker("op")
    received: list[dict[str, Any]] = []

    def broken(status: dict[str, Any]) -> None:
        raise KeyError("callback bug")

    tracker.add_callback(broken)
    tracker.add_callback(received.append)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        tracker.progress("searching", "looking")
        tracker.complete()
    assert [(s["stage"], s["state"]) for s in received] == [("searching", "running"), ("complete", "complete")]
    assert STATUS_KEYS <= received[0].keys() and received[0]["message"] == "looking"
    assert sum("callback" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR) == 2

    tracker.remove_callback(received.append)
    tracker.reset()
    assert len(received) == 2


def test_callbacks_may_read_the_tracker() -> None:
    tracker = ProgressTracker("op")
    read: list[str | None] = []
    tracker.add_callback(lambda status: read.append(tracker.get_status()["stage"]))
    tracker.progress("searching")
    assert read == ["searching"]


def test_counters_are_published_at_most_once_per_refresh_interval() -> None:
    tracker = ProgressTracker("op", refresh_interval=3600)
    published: list[int] = []
    tracker.observe(lambda change: published.append(change["new"]), names="done")
    tracker.progress("searching")
    for _ in range(10_000):
        tracker.advance()
    assert published == []  # the next publish is an hour away
    assert tracker.get_status()["done"] == 10_000  # get_status() is exact all the same
    tracker.progress("extracting")  # stage changes go out at once
    assert tracker.stage == "extracting"
    tracker.advance(5)
    tracker.complete()  # and so does the end, with the final count
    assert (tracker.done, tracker.state) == (5, "complete")


def test_refresh_interval_zero_publishes_every_count() -> None:
    tracker = ProgressTracker("op", refresh_interval=0)
    tracker.progress("searching")
    published: list[int] = []
    tracker.observe(lambda change: published.append(change["new"]), names="done")
    for _ in range(300):
        tracker.advance()
    assert published == list(range(1, 301))


async def test_refresh_interval_zero_publishes_every_tracked_item() -> None:
    tracker = ProgressTracker("op", refresh_interval=0)
    tracker.progress("searching")
    published: list[int] = []
    tracker.observe(lambda change: published.append(change["new"]), names="done")
    for _ in tracker.track(range(40)):
        pass
    async for _ in tracker.track(anumbers(30)):
        pass
    assert published == [*range(1, 41), 0, *range(1, 31)]


# --------------------------------------------------------------------------- threads and tasks


def test_many_threads_advance_to_the_exact_count() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("extracting")
    tracker.update(0, total=400_000)
    published: list[int] = []
    tracker.add_callback(lambda status: published.append(status["done"]))
    start = threading.Barrier(9)

    def work() -> None:
        start.wait()
        for _ in range(50_000):
            tracker.advance()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    start.wait()
    readings = [tracker.get_status()["done"] for _ in range(200)]  # read while they count
    for thread in threads:
        thread.join()
    assert tracker.get_status()["done"] == 400_000
    assert readings == sorted(readings) and readings[-1] <= 400_000
    tracker.complete()
    assert published == sorted(published)  # published in order, never backwards
    assert published[-1] == 400_000
    assert tracker.done == 400_000


def test_threads_and_asyncio_tasks_at_once() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("extracting")

    def work() -> None:
        for _ in range(25_000):
            tracker.advance()

    async def task() -> None:
        for _ in range(1_000):
            tracker.advance()
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(task() for _ in range(50)))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    asyncio.run(main())
    for thread in threads:
        thread.join()
    assert tracker.get_status()["done"] == 4 * 25_000 + 50 * 1_000


def test_stage_changes_from_threads_are_safe() -> None:
    tracker = ProgressTracker("op", [f"s{i}" for i in range(20)])
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        for index in range(offset, 20, 2):
            try:
                tracker.progress(f"s{index}")
            except ValueError as error:  # the other thread may already be further along
                errors.append(error)
            tracker.advance()

    threads = [threading.Thread(target=work, args=(offset,)) for offset in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    states = list(stage_states(tracker).values())
    assert states[-1] == "running" and tracker.get_status()["stage"] == "s19"
    assert all(state in {"complete", "skipped"} for state in states[:-1])
    assert all("cannot move back" in str(error) for error in errors)


# --------------------------------------------------------------------------- registry


def test_get_progress_follows_a_live_tracker() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("searching")
    status = get_progress(tracker.operation_id)
    assert isinstance(status, ProgressStatus)
    assert (status.stage, status.state) == ("searching", "running")
    tracker.advance(3)
    assert get_progress(tracker.operation_id)["done"] == 3  # type: ignore[index]


def test_get_progress_remembers_a_finished_tracker_after_it_is_gone() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("searching")
    tracker.complete()
    operation_id = tracker.operation_id
    del tracker
    gc.collect()
    status = get_progress(operation_id)
    assert status is not None and (status.state, status.percent) == ("complete", 100.0)


def test_get_progress_of_an_unknown_id_is_none() -> None:
    assert get_progress("no-such-operation") is None


def test_finished_operations_do_not_accumulate() -> None:
    ids = []
    for number in range(FINISHED_KEPT + 5):
        tracker = ProgressTracker(f"op {number}")
        tracker.complete()
        ids.append(tracker.operation_id)
    del tracker
    gc.collect()
    remembered = [operation_id for operation_id in ids if get_progress(operation_id) is not None]
    assert remembered == ids[5:]


# --------------------------------------------------------------------------- bad use


def test_unknown_stage_names_the_valid_ones() -> None:
    tracker = ProgressTracker("op")
    with pytest.raises(ValueError, match="unknown stage 'fetching'") as raised:
        tracker.progress("fetching")
    for name in tracker.stage_names:
        assert name in str(raised.value)
    assert tracker.get_status()["state"] == "pending"


def test_moving_back_is_refused_and_changes_nothing() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("extracting")
    with pytest.raises(ValueError, match="cannot move back from stage 'extracting' to earlier stage 'searching'"):
        tracker.progress("searching")
    assert tracker.get_status()["stage"] == "extracting"
    tracker.progress("extracting", "still here")  # staying is fine
    assert tracker.get_status()["message"] == "still here"


def test_updates_after_the_end_change_nothing_and_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    tracker = ProgressTracker("op")
    tracker.progress("searching")
    tracker.update(2, total=4)
    tracker.complete()
    before = tracker.get_status()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        tracker.progress("synthesizing")
        tracker.update(3)
        tracker.advance()
        tracker.fail(RuntimeError("late"))
        tracker.cancel()
        tracker.complete()
    after = tracker.get_status()
    assert {k: v for k, v in after.items() if k != "timestamp"} == {k: v for k, v in before.items() if k != "timestamp"}
    assert "ignored" in caplog.text and "already complete" in caplog.text
    # a warning the first time; the rest at debug level, so a loop does not flood the log
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_advance_from_another_thread_after_the_end_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    tracker = ProgressTracker("op")
    tracker.progress("searching")

    def work(count: int) -> None:
        for _ in range(count):
            tracker.advance()

    worker = threading.Thread(target=work, args=(100,))
    worker.start()
    worker.join()
    tracker.cancel()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        late = threading.Thread(target=work, args=(100,))  # may even reuse the first thread's id
        late.start()
        late.join()
        work(1)
    assert tracker.get_status()["done"] == 100
    assert "advance() ignored" in caplog.text


def test_repr_says_what_the_tracker_is_doing() -> None:
    tracker = ProgressTracker("research: bees")
    tracker.progress("extracting")
    tracker.update(2, total=4)
    assert repr(tracker) == "<ProgressTracker 'research: bees' running extracting 62% (2/4)>"


def _eventually(check, within: float = 5.0) -> bool:
    """Poll ``check`` until it holds (a bound on waiting, not a measurement)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


def test_a_change_held_back_by_the_throttle_is_published_when_the_interval_ends():
    tracker = ProgressTracker("pausing loop", refresh_interval=0.2)
    seen: list[dict] = []
    tracker.add_callback(seen.append)
    tracker.progress("searching")
    tracker.update(1, total=10)
    tracker.update(2, message="page two")  # inside the interval: held back, then nothing more happens
    assert _eventually(lambda: tracker.done == 2 and tracker.message == "page two")
    assert seen[-1]["done"] == 2
    for _ in range(5):
        tracker.advance()
    assert _eventually(lambda: tracker.done == 7)
    tracker.complete()


# --------------------------------------------------------------------------- bad counts (issue 8 item 13)

NAN, INF = float("nan"), float("inf")


def assert_unchanged(tracker: ProgressTracker, before: dict[str, Any]) -> None:
    """The tracker reads as before the bad call, and still works."""
    after = tracker.get_status()
    assert {k: v for k, v in after.items() if k not in {"timestamp", "duration", "rate", "eta", "stages"}} == {
        k: v for k, v in before.items() if k not in {"timestamp", "duration", "rate", "eta", "stages"}
    }
    assert [(s["name"], s["state"]) for s in after["stages"]] == [(s["name"], s["state"]) for s in before["stages"]]


@pytest.mark.parametrize(
    ("call", "error", "names"),
    [
        (lambda t: t.update("x"), TypeError, "done"),
        (lambda t: t.update(None), TypeError, "done"),
        (lambda t: t.update(NAN), ValueError, "done"),
        (lambda t: t.update(INF), ValueError, "done"),
        (lambda t: t.update(-1), ValueError, "done"),
        (lambda t: t.update(1, total="10"), TypeError, "total"),
        (lambda t: t.update(1, total=NAN), ValueError, "total"),
        (lambda t: t.update(1, total=2.5), ValueError, "total"),
        (lambda t: t.update(1, total=-3), ValueError, "total"),
        (lambda t: t.update(1, message=42), TypeError, "message"),
        (lambda t: t.advance("x"), TypeError, "n"),
        (lambda t: t.advance(None), TypeError, "n"),
        (lambda t: t.advance(NAN), ValueError, "n"),
        (lambda t: t.advance(-INF), ValueError, "n"),
        (lambda t: t.advance(1j), TypeError, "n"),
        (lambda t: t.track([1, 2], total="2"), TypeError, "total"),
        (lambda t: t.track([1, 2], total=NAN), ValueError, "total"),
        (lambda t: t.progress("searching", message=b"bytes"), TypeError, "message"),
    ],
)
@pytest.mark.parametrize("warm", [False, True], ids=["first call", "after counting"])
def test_a_bad_count_is_refused_at_the_call_and_changes_nothing(call: Any, error: type, names: str, warm: bool) -> None:
    tracker = ProgressTracker("op")
    if warm:  # the thread already has its counter: advance() takes its fast path
        tracker.progress("searching")
        tracker.update(0, total=100)
        for _ in range(3):
            tracker.advance()
    before = tracker.get_status()
    with pytest.raises(error, match=rf"\b{names}\b") as raised:
        call(tracker)
    assert "must be" in str(raised.value)
    assert_unchanged(tracker, before)
    tracker.advance(2)  # and the tracker still counts
    tracker.update(tracker.get_status()["done"] + 1)
    assert tracker.get_status()["done"] == before["done"] + 3
    assert repr(tracker)


def test_a_bad_advance_mid_loop_keeps_the_exact_count() -> None:
    tracker = ProgressTracker("op", refresh_interval=0)
    tracker.progress("searching")
    for number in range(1000):
        tracker.advance()
        if number % 97 == 0:
            with pytest.raises(ValueError, match="n must be a finite number"):
                tracker.advance(NAN)
    tracker.complete()
    assert tracker.get_status()["done"] == 1000 and tracker.done == 1000


def test_numpy_style_and_fractional_counts_still_count() -> None:
    from fractions import Fraction

    tracker = ProgressTracker("op")
    tracker.progress("searching")
    tracker.advance(True)
    tracker.advance(Fraction(1, 2))
    tracker.advance(0.5)
    tracker.update(5.0, total=10.0)
    assert tracker.get_status()["done"] == 5 and tracker.get_status()["total"] == 10


# --------------------------------------------------------------------------- one model, one throttle (issue 9 item 2)


class FakeClock:
    """A monotonic clock that moves only when told (as tqdm's tests fake their timer)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_durations_rate_and_eta_follow_the_injected_clock() -> None:
    clock = FakeClock()
    tracker = ProgressTracker("op", clock=clock, refresh_interval=10)
    tracker.progress("searching")
    clock.advance(1.5)
    tracker.progress("extracting")
    tracker.update(0, total=100)
    clock.advance(2.0)
    tracker.update(10)
    status = tracker.status()
    assert status.duration == pytest.approx(3.5)
    assert status.rate == pytest.approx(5.0) and status.eta == pytest.approx(18.0)
    assert [s.duration for s in status.stages[1:3]] == [pytest.approx(1.5), pytest.approx(2.0)]
    clock.advance(6.0)
    tracker.complete()
    clock.advance(100.0)  # frozen at the end
    assert tracker.status().duration == pytest.approx(9.5) and tracker.status().eta is None


def test_the_throttle_follows_the_injected_clock_without_sleeping() -> None:
    clock = FakeClock()
    tracker = ProgressTracker("op", clock=clock, refresh_interval=1.0)
    seen: list[ProgressStatus] = []
    tracker.subscribe(seen.append)
    tracker.progress("searching")  # a stage change: published at once
    tracker.update(1, total=10)  # a new total: at once
    for done in range(2, 8):
        clock.advance(0.1)
        tracker.update(done, total=10)  # inside the interval: held back, the same total too (a loop may pass it)
    assert [(s.done, s.total) for s in seen] == [(0, None), (0, None), (1, 10)]
    clock.advance(0.5)  # 1.1 s after the last publish
    tracker.update(8)
    assert [s.done for s in seen] == [0, 0, 1, 8]
    for _ in range(500):
        tracker.advance()  # the fast path reads the clock too, and it has not moved
    assert seen[-1].done == 8 and tracker.status().done == 508
    clock.advance(1.0)
    for _ in range(64):  # a checkpoint comes within _MAX_STEP counts, sees the clock moved and publishes
        tracker.advance()
    assert 508 < seen[-1].done <= 572
    tracker.complete()
    assert (seen[-1].state, seen[-1].done) == ("complete", 572)


def test_subscribe_hands_the_current_status_at_once_then_each_publish() -> None:
    tracker = ProgressTracker("op")
    tracker.progress("searching", "looking")
    seen: list[ProgressStatus] = []
    unsubscribe = tracker.subscribe(seen.append)
    assert len(seen) == 1 and isinstance(seen[0], ProgressStatus)
    assert (seen[0].stage, seen[0].message) == ("searching", "looking")
    tracker.progress("extracting")
    unsubscribe()
    unsubscribe()  # twice is fine
    tracker.complete()
    assert [s.stage for s in seen] == ["searching", "extracting"]


def test_the_first_snapshot_and_the_publishes_after_it_leave_no_gap() -> None:
    tracker = ProgressTracker("op", refresh_interval=0)  # every update is published
    tracker.progress("searching")
    stop = threading.Event()

    def count() -> None:
        done = 0
        while not stop.is_set():
            done += 1
            tracker.update(done)

    worker = threading.Thread(target=count)
    worker.start()
    try:
        subscribers = [[] for _ in range(20)]
        for seen in subscribers:
            tracker.subscribe(seen.append)
            time.sleep(0.002)
    finally:
        stop.set()
        worker.join()
    for seen in subscribers:
        counts = [status.done for status in seen]
        assert counts == list(range(counts[0], counts[0] + len(counts))), counts[:20]


def test_every_status_field_is_a_trait_holding_the_published_value() -> None:
    clock = FakeClock()
    tracker = ProgressTracker("op", metadata={"topic": "bees"}, clock=clock)
    tracker.progress("searching", "looking")
    clock.advance(2)
    tracker.update(3, total=4)
    published = tracker.get_status()
    fields = {field.name for field in dataclasses.fields(ProgressStatus)}
    assert fields <= set(tracker.trait_names())
    assert {name: getattr(tracker, name) for name in fields if name != "timestamp"} == {
        name: value for name, value in published.items() if name != "timestamp"
    }


def test_remove_callback_of_an_unknown_function_says_so() -> None:
    tracker = ProgressTracker("op")
    with pytest.raises(ValueError, match="not a callback"):
        tracker.remove_callback(print)


def test_a_bad_clock_is_refused() -> None:
    with pytest.raises(TypeError, match="clock"):
        ProgressTracker("op", clock=5)  # type: ignore[arg-type]


def test_messages_and_short_loops_in_one_stage_wait_for_the_throttle() -> None:
    """With one throttle for every view, nothing but a stage change or the end may skip it: a message per page
    or a short track() loop per batch would otherwise be a widget message each."""
    clock = FakeClock()
    tracker = ProgressTracker("op", clock=clock, refresh_interval=1.0)
    seen: list[ProgressStatus] = []
    tracker.subscribe(seen.append)
    tracker.progress("extracting", "page 0")
    for page in range(1, 500):
        tracker.progress("extracting", f"page {page}")
        for _ in tracker.track(range(3)):
            pass
    assert len(seen) == 2  # the first snapshot and entering the stage
    assert tracker.status().message == "page 499" and tracker.status().done == 3
    clock.advance(1.0)
    tracker.progress("extracting", "last page")
    assert (len(seen), seen[-1].message) == (3, "last page")
    tracker.progress("synthesizing")
    tracker.complete()
    assert [s.stage for s in seen[-2:]] == ["synthesizing", "complete"]
