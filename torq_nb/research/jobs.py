"""ResearchJob: a research run in a background thread with its own event loop.

A notebook kernel does not read front-end messages (a Cancel click) while a cell is busy, so a run that
must stay cancellable runs here, off the cell: the cell returns at once and the widget's Cancel button,
``job.cancel()`` or a kernel interrupt stop it. The job's thread owns its loop, so the run also keeps
going while later cells do blocking work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from torq_nb.progress.models import ProgressStatus
from torq_nb.progress.tracker import ProgressTracker
from torq_nb.research.pipeline import ResearchCancelled, Run
from torq_nb.research.results import ResearchResults

#: How long cancel-and-wait gives a run to close its connections and hand back partial results.
CANCEL_GRACE = 5.0


class ResearchJob:
    """A running (or finished) research run. Display it for the live widget with a Cancel button.

    ``result()`` waits for the results; a cancelled run's result is its partial results (rows not reached
    are marked "cancelled"); a failed run's result() raises its error. ``await job`` does the same.
    """

    def __init__(self, run: Run, start: Callable[[], Coroutine[Any, Any, ResearchResults]]) -> None:
        self._run = run
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
            self._future.set_result(loop.run_until_complete(self._task))
        except asyncio.CancelledError:  # before 3.11 the task re-raises a plain CancelledError, not ours
            self._future.set_result(self._run.results())
        except BaseException as error:  # noqa: BLE001 - handed to whoever waits on the job
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
        return self._run.tracker.operation_id

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

    def wait_interruptibly(self) -> ResearchResults:
        """Wait for the results; on KeyboardInterrupt cancel the run and raise ResearchCancelled with them."""
        try:
            while True:
                # Wake up now and then: a signal delivered to another thread is only handled (raising
                # KeyboardInterrupt here) once the main thread runs Python code again.
                try:
                    return self._future.result(timeout=0.1)
                except concurrent.futures.TimeoutError:
                    continue
        except KeyboardInterrupt:
            self.cancel()
            try:
                results = self._future.result(CANCEL_GRACE)
            except concurrent.futures.TimeoutError:
                results = self.partial_results
            raise ResearchCancelled(results) from None

    def __await__(self) -> Generator[Any, None, ResearchResults]:
        return asyncio.wrap_future(self._future).__await__()

    def __repr__(self) -> str:
        status = self.status
        return f"<ResearchJob {self._run.topic!r} {status.state} {status.stage or '-'} {status.percent:.0f}%>"

    def _ipython_display_(self) -> None:
        from torq_nb.progress.widget import ProgressWidget

        ProgressWidget(self.tracker, on_cancel=self.cancel)._ipython_display_()
