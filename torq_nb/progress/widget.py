"""ProgressWidget: the live notebook view of a ProgressTracker (an anywidget, no build step). Which objects the
hosts show with it is registered at the top of the package (torq_nb/display.py).

The widget subscribes to its tracker and syncs each status it is handed as ONE value (the ``status`` dict:
ProgressStatus's fields, less the kernel-only ones), so each publish is one comm message and the tracker's
throttle is the only one. Displayed, it sends a bundle holding the widget view, a text/html snapshot and a
text/plain line under a display id, and rewrites that bundle when the run ends: saved and exported notebooks
show the final state.

A kernel reads no front-end message while a cell runs, so a Cancel click on a run that holds the cell
(``research()``) would wait for the cell to end. Where the kernel has subshells (ipykernel 7), the widget's
messages are handed to a subshell of their own, whose thread takes the click while the main shell is busy.
Where it has not, a job's widget shows no Cancel button while a caller blocks on the job, and says how to stop
the run instead (interrupt the kernel).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from torq_nb.progress.models import ProgressStatus
from torq_nb.progress.snapshot import status_html, status_line
from torq_nb.progress.tracker import ProgressTracker

__all__ = ["ProgressWidget", "asset_dir", "widget_asset"]

log = logging.getLogger(__name__)

#: Status fields that stay in the kernel: metadata may hold anything (a session, a lock), and the front-end
#: ticks its own clock from ``duration``, so it needs no timestamp.
KERNEL_ONLY: frozenset[str] = frozenset({"metadata", "timestamp"})

#: What a blocked run's widget says instead of offering a Cancel button the kernel could not receive, per host.
#: (The interrupt raises ResearchCancelled or BatchCancelled, which hold the results so far: say where they are.)
STOP_HINT = ("This cell is busy with the run: to stop it, interrupt the kernel (■, or I, I). The error it "
             "raises holds the results so far, as .results.")
MARIMO_STOP_HINT = ("This cell is busy with the run: to stop it, interrupt it (marimo's ■ stop button on the running "
                    "cell, in the editor). The error it raises holds the results so far, as .results.")


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


def widget_asset(name: str) -> str:
    """A widget's ``_esm`` or ``_css``: ``common.js`` (or ``common.css``) of :func:`asset_dir`, then ``name``.

    anywidget sends each widget one module and one stylesheet (a file path is read and its text sent), so an
    ``import`` of a sibling file would not resolve: the code and styles the widgets share travel in front of
    each widget's own, and the front-end tests load the same text (tests/js_frontend.py).
    """
    directory = asset_dir()
    shared = directory / f"common{Path(name).suffix}"
    return shared.read_text(encoding="utf-8") + "\n" + (directory / name).read_text(encoding="utf-8")


def view_state(status: ProgressStatus) -> dict[str, Any]:
    """What the front-end is sent of a status: every field but the kernel-only ones, JSON-ready."""
    data = status.to_dict()
    for name in KERNEL_ONLY:
        del data[name]
    return data


# ----------------------------------------------------------------------------- clicks while a cell is busy

_subshell_lock = threading.Lock()
_subshell: list[str | None] = []  # [] until tried once in this process, then [subshell id or None]


def _click_subshell() -> str | None:
    """A kernel subshell of this process for widget messages, created on first use; None where there is none.

    ipykernel 7 reads shell messages in a thread of its own and routes each comm message to the subshell its
    comm names (``Comm._reply_subshell_for``); a subshell runs in its own thread, so it handles a click while
    the main shell runs a cell. This leans on ipykernel internals (the shell channel thread's subshell manager),
    checked here against 7.4; any other kernel, or a change there, gives None and the fallback.
    """
    with _subshell_lock:
        if not _subshell:
            _subshell.append(_create_subshell())
        return _subshell[0]


def _create_subshell() -> str | None:
    try:
        from IPython.core.getipython import get_ipython

        thread = getattr(getattr(get_ipython(), "kernel", None), "shell_channel_thread", None)
        if thread is None:
            return None
        create = thread.manager._create_subshell  # must run in the shell channel thread
        created: concurrent.futures.Future[str] = concurrent.futures.Future()

        def in_shell_channel_thread() -> None:
            try:
                created.set_result(create())
            except BaseException as error:  # handed to the waiting thread
                created.set_exception(error)

        thread.io_loop.add_callback(in_shell_channel_thread)
        return created.result(timeout=10)
    except Exception:  # any failure means: no subshell, use the fallback
        log.debug("no kernel subshell for widget clicks; a busy cell will not take them", exc_info=True)
        return None


def _route_to_subshell(widget: anywidget.AnyWidget) -> bool:
    """Have the kernel hand this widget's front-end messages to the click subshell; whether it could."""
    comm = getattr(widget, "comm", None)
    if comm is None or not hasattr(comm, "_reply_subshell_for"):
        return False
    subshell = _click_subshell()
    if subshell is None:
        return False
    comm._reply_subshell_for = lambda data, default: subshell
    return True


# ----------------------------------------------------------------------------- the views


class LiveView(anywidget.AnyWidget):
    """What the live views (ProgressWidget, BatchWidget) share: the Cancel button, or the hint on how to stop
    a run that holds the cell, and the display bundle whose static parts are rewritten to the final state.

    A subclass keeps its snapshot in sync (``_sync``) and says what its static parts are (``_static``);
    it calls ``_show`` with each snapshot its tracker publishes.
    """

    cancellable = traitlets.Bool(False).tag(sync=True)
    stop_hint = traitlets.Unicode("").tag(sync=True)

    def __init__(self, latest: Any, *, on_cancel: Callable[[], object] | None, hint: str = STOP_HINT, **traits: Any) -> None:
        self._lock = threading.Lock()  # taken inside the tracker's (publishing holds it), never around it
        self._handles: list[Any] = []
        self._closed = False
        self._final_shown = False
        self._on_cancel = on_cancel
        self._hint = hint
        self._latest = latest
        self._unsubscribe: Callable[[], None] | None = None
        super().__init__(cancellable=on_cancel is not None, **traits)
        #: Whether a Cancel click reaches the kernel even while a cell is busy.
        self.takes_clicks_while_busy = on_cancel is not None and _route_to_subshell(self)
        self.on_msg(self._on_front_end_message)

    def _sync(self, snapshot: Any) -> None:
        """Set the synced trait(s) from ``snapshot``."""
        raise NotImplementedError

    def _static(self, snapshot: Any) -> tuple[str, str]:
        """The text/html and text/plain forms of ``snapshot``, kept in saved notebooks."""
        raise NotImplementedError

    def _finished(self) -> bool:
        raise NotImplementedError

    def set_blocking(self, blocking: bool) -> None:
        """The operation holds (or no longer holds) the kernel's main thread. Unless the widget takes clicks
        while a cell is busy, a held operation gets the stop hint instead of a Cancel button it cannot honour."""
        if self._on_cancel is None or self.takes_clicks_while_busy:
            return
        with self.hold_sync():
            self.cancellable = not blocking
            self.stop_hint = self._hint if blocking else ""

    def _show(self, snapshot: Any, final: bool) -> None:
        """A published snapshot (any thread): one comm message; the first final one also rewrites the static parts."""
        with self._lock:
            if self._closed:
                return
            self._latest = snapshot
            self._sync(snapshot)
            if final and not self._final_shown:
                self._final_shown = True
                data, metadata = self._bundle(snapshot)
                for handle in self._handles:  # the static parts; the live view stays
                    handle.update(data, metadata=metadata, raw=True)

    def _on_front_end_message(self, widget: Any, content: Any, buffers: Any) -> None:
        if content == {"type": "cancel"} and self._on_cancel is not None and not self._finished():
            self._on_cancel()

    def _bundle(self, snapshot: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """anywidget's own display bundle (the widget view, and what hosts such as Colab need in its metadata),
        plus the static text/html and text/plain of ``snapshot``."""
        data, metadata = self._repr_mimebundle_() or ({}, {})
        html, plain = self._static(snapshot)
        return {**data, "text/html": html, "text/plain": plain}, metadata

    def _ipython_display_(self) -> None:
        """Show the live view with a text/html snapshot and text line beside it, kept to the final state."""
        from IPython.display import display

        # Under the view's lock, so a run ending meanwhile either is in this bundle or updates this handle.
        with self._lock:
            data, metadata = self._bundle(self._latest)
            handle = display(data, metadata=metadata, raw=True, display_id=True)
            if handle is not None:
                self._handles.append(handle)

    def __repr__(self) -> str:
        return self._static(self._latest)[1]

    def close(self) -> None:
        """Stop observing the tracker and close the comm."""
        if "_lock" in self.__dict__:  # absent when the constructor refused its arguments
            with self._lock:
                self._closed = True
            if self._unsubscribe is not None:
                self._unsubscribe()  # outside the view's lock: it takes the tracker's
                self._unsubscribe = None
        super().close()


class ProgressWidget(LiveView):
    """Live view of a ProgressTracker: stage timeline, bar, elapsed time, rate/ETA, message and error.

    >>> ProgressWidget(tracker)            # or simply display(tracker)

    ``on_cancel``, if given, shows a Cancel button that calls it while the operation runs. Where the kernel
    can take the click while a cell is busy (ipykernel 7's subshells), it works at any time; elsewhere only
    while no cell is busy, and ``set_blocking(True)`` swaps the button for ``hint``, how to stop the run there.
    """

    _esm = widget_asset("progress.js")
    _css = widget_asset("progress.css")

    status = traitlets.Dict().tag(sync=True)

    def __init__(self, tracker: ProgressTracker, *, on_cancel: Callable[[], object] | None = None,
                 hint: str = STOP_HINT) -> None:
        if not isinstance(tracker, ProgressTracker):
            raise TypeError(f"ProgressWidget shows a ProgressTracker, got {type(tracker).__name__}")
        self._tracker = tracker
        latest = tracker.status()
        super().__init__(latest, on_cancel=on_cancel, hint=hint, status=view_state(latest))
        self._unsubscribe = tracker.subscribe(lambda status: self._show(status, status.finished))

    @property
    def tracker(self) -> ProgressTracker:
        """The tracker this widget shows."""
        return self._tracker

    def _sync(self, snapshot: ProgressStatus) -> None:
        self.status = view_state(snapshot)

    def _static(self, snapshot: ProgressStatus) -> tuple[str, str]:
        data = snapshot.to_dict()
        return status_html(data), status_line(data)

    def _finished(self) -> bool:
        return self._tracker.finished
