"""ResearchJob: a research run in a background thread with its own event loop.

The run works off the caller's thread: ``start_research`` returns the job at once (the cell is free), while
``research()`` waits on it with ``wait_interruptibly`` (the cell is busy until the run ends). Either way
``job.cancel()``, the widget's Cancel button or a kernel interrupt stop it. The job's thread owns its loop,
so the run also keeps going while later cells do blocking work. The job knows no views: it says when a
caller blocks on it (``on_blocking``), and a view decides what that means for its Cancel button.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from torq_nb.progress.models import ProgressStatus
from torq_nb.progress.tracker import ProgressTracker
from torq_nb.research.interrupts import interrupted
from torq_nb.research.pipeline import ResearchCancelled, Run
from torq_nb.research.results import ResearchResults

#: How long cancel-and-wait gives a run to close its connections and hand back partial results.
CANCEL_GRACE = 5.0

log = logging.getLogger(__name__)


class ResearchJob:
    """A running (or finished) research run. Display it for the live widget with a Cancel button.

    ``result()`` waits for the results; a cancelled run's result is its partial results (rows not reached
    are marked "cancelled"); a failed run's result() raises its error. ``await job`` does the same.
    ``blocking=True`` says from the start that a caller will wait on it in the kernel's main thread.
    """

    def __init__(
        self, run: Run, start: Callable[[], Coroutine[Any, Any, ResearchResults]], *, blocking: bool = False
    ) -> None:
        self._run = run
        self._blocking = blocking
        self._blocking_lock = threading.Lock()
        self._blocking_watchers: list[Callable[[bool], object]] = []
        self._done_lock = threading.Lock()
        self._done_callbacks: list[Callable[[], object]] | None = []  # None once they have been called
        self._future: concurrent.futures.Future[ResearchResults] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[ResearchResults] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._main, args=(start,), name=f"torq_nb-{run.tracker.operation_id[:8]}", daemon=True
        )
        self._thread.start()
        self._ready.wait()

    def _main(self, start: Callable[[], Coroutine[Any, Any, ResearchResults]]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._task = loop.create_task(start())
        self._ready.set()
        try:
            try:
                outcome = loop.run_until_complete(self._task)
            except asyncio.CancelledError:  # before 3.11 the task re-raises a plain CancelledError, not ours
                outcome = self._run.results()
            finally:
                self._ended()
            self._future.set_result(outcome)
        except BaseException as error:  # handed to whoever waits on the job
            self._future.set_exception(error)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    @property
    def tracker(self) -> ProgressTracker:
        """The run's ProgressTracker."""
        return self._run.tracker

    @property
    def operation_id(self) -> str:
        return str(self._run.tracker.operation_id)

    @property
    def status(self) -> ProgressStatus:
        """The run's current progress."""
        return self._run.tracker.status()

    @property
    def partial_results(self) -> ResearchResults:
        """The results gathered so far, at any moment (unfinished rows are marked "cancelled")."""
        return self._run.results()

    def done(self) -> bool:
        """True once the run has completed, failed or been cancelled."""
        return self._future.done()

    def cancel(self) -> bool:
        """Ask the run to stop; it stops within about a second and keeps its partial results.

        Returns False if the run had already finished.
        """
        if self._future.done() or self._loop is None or self._task is None:
            return False
        try:
            self._loop.call_soon_threadsafe(self._task.cancel)
        except RuntimeError:  # the loop closed between the check and the call
            return False
        return True

    def result(self, timeout: float | None = None) -> ResearchResults:
        """Wait for the run (at most ``timeout`` seconds) and return its results."""
        return self._future.result(timeout)

    def add_done_callback(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once the run has ended, however it ended, and before ``result()`` returns (at once
        if it has ended): what the run writes to (stream_to) is closed when its caller gets the results."""
        with self._done_lock:
            if self._done_callbacks is not None:
                self._done_callbacks.append(callback)
                return
        self._tell(callback)

    def _ended(self) -> None:
        """The run has ended: call the done callbacks, once."""
        with self._done_lock:
            callbacks, self._done_callbacks = self._done_callbacks or [], None
        for callback in callbacks:
            self._tell(callback)

    @property
    def blocking(self) -> bool:
        """True while a caller waits on the job in the kernel's main thread (``research()``): its cell is busy."""
        return self._blocking

    def _set_blocking(self, blocking: bool) -> None:
        with self._blocking_lock:
            if blocking == self._blocking:
                return
            self._blocking = blocking
            for watcher in list(self._blocking_watchers):
                self._tell(watcher, blocking)

    @staticmethod
    def _tell(watcher: Callable[..., object], *args: object) -> None:
        try:
            watcher(*args)
        except Exception:
            log.exception("callback %r of the job raised; the job goes on", watcher)

    def on_blocking(self, callback: Callable[[bool], object]) -> Callable[[], None]:
        """Call ``callback(blocking)`` now and whenever a caller starts or stops blocking on the job.

        For views: a Cancel button cannot work while the cell is busy unless the host delivers clicks then.
        Returns a function that stops the calls.
        """
        with self._blocking_lock:
            self._blocking_watchers.append(callback)
            self._tell(callback, self._blocking)

        def stop() -> None:
            with self._blocking_lock:
                if callback in self._blocking_watchers:
                    self._blocking_watchers.remove(callback)

        return stop

    #: How long a cancelled job waits for its run to hand back its partial results.
    _cancel_grace = CANCEL_GRACE

    @staticmethod
    def _cancelled(results: Any) -> BaseException:
        """The exception a cancelled wait raises, carrying the partial results."""
        return ResearchCancelled(results)

    def wait_interruptibly(self) -> ResearchResults:
        """Wait for the results, blocking the calling (main) thread, as ``research()`` does.

        A Ctrl-C (noted by ``ctrl_c_noted``; or a KeyboardInterrupt: the kernel's interrupt, another handler) or
        a cancel meanwhile (the widget's Cancel button, where the host delivers clicks to a busy kernel;
        ``job.cancel()`` from another thread) stops the run and raises ResearchCancelled, whose ``.results`` are
        the partial results.
        """
        self._set_blocking(True)
        try:
            try:
                results = self._result_unless_interrupted()
            except KeyboardInterrupt:  # raised by another handler, or by the run's own thread
                results = None
            if results is not None and self.tracker.status()["state"] != "cancelled":
                return results
            interrupted()  # taken, however the run stopped (Polars also raises a Ctrl-C inside its calls, any thread)
            if results is None:
                self.cancel()
                try:
                    results = self._result_unless_interrupted(self._cancel_grace)
                except (Exception, KeyboardInterrupt):  # it failed while stopping; a second Ctrl-C, another handler's
                    results = None
            raise self._cancelled(self.partial_results if results is None else results) from None
        finally:
            self._set_blocking(False)

    def _result_unless_interrupted(self, timeout: float | None = None) -> ResearchResults | None:
        """The run's results, or None at a Ctrl-C or after ``timeout`` seconds. The wait wakes every 0.1 s: a
        signal handler runs only when the main thread runs Python code again."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not interrupted():
            try:
                return self._future.result(timeout=0.1)
            except concurrent.futures.TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    return None
        return None

    def __await__(self) -> Generator[Any, None, ResearchResults]:
        return asyncio.wrap_future(self._future).__await__()

    def __repr__(self) -> str:
        status = self.status
        return f"<ResearchJob {self._run.topic!r} {status.state} {status.stage or '-'} {status.percent:.0f}%>"
