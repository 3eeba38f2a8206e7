"""How each notebook host shows torq_nb's live objects: a tracker or a job becomes its widget.

Trackers and jobs know nothing of views; this module, at the top of the package, registers them with the
hosts when torq_nb is imported there:

- IPython kernels (JupyterLab, Notebook 7, VS Code, Colab): IPython's display formatter, by type name, so
  registering imports nothing. ``display(tracker)`` and a tracker as a cell's value show the live widget,
  with the text/html snapshot that saved notebooks keep.
- marimo: its display protocol (``_display_``) on the same types, so a tracker or job as a cell's value is the
  live widget, and ``show`` appends the view to the running cell's output.
- a script on a terminal: ``show`` attaches the terminal view (one live line on standard error).

``show(obj)`` is what research(), start_research() and research_many() call to put a run's view in the cell.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["register", "show", "view"]

#: The types shown as widgets, by module and name (most specific first: a BatchJob is a ResearchJob).
SHOWN: tuple[tuple[str, str], ...] = (
    ("torq_nb.progress.batch", "BatchTracker"),
    ("torq_nb.research.batch", "BatchJob"),
    ("torq_nb.progress.tracker", "ProgressTracker"),
    ("torq_nb.research.jobs", "ResearchJob"),
)


def view(obj: Any) -> Any:
    """The live widget of a tracker, a batch tracker, a research job or a batch job (jobs get Cancel)."""
    from torq_nb.progress.batch import BatchTracker
    from torq_nb.progress.tracker import ProgressTracker

    if isinstance(obj, BatchTracker):
        from torq_nb.progress.batch_widget import BatchWidget

        return BatchWidget(obj)
    if isinstance(obj, ProgressTracker):
        from torq_nb.progress.widget import ProgressWidget

        return ProgressWidget(obj)
    from torq_nb.progress.widget import MARIMO_STOP_HINT, STOP_HINT, LiveView

    hint = MARIMO_STOP_HINT if _in_marimo() else STOP_HINT  # how to stop a run that holds the cell, in this host
    widget: LiveView
    if isinstance(obj.tracker, BatchTracker):
        from torq_nb.progress.batch_widget import BatchWidget

        widget = BatchWidget(obj.tracker, on_cancel=obj.cancel, hint=hint)
    else:
        from torq_nb.progress.widget import ProgressWidget

        widget = ProgressWidget(obj.tracker, on_cancel=obj.cancel, hint=hint)
    if not widget.takes_clicks_while_busy:  # a busy kernel cannot take the click: say how to stop instead
        obj.on_blocking(widget.set_blocking)
    return widget


def _in_marimo() -> bool:
    marimo = sys.modules.get("marimo")
    return marimo is not None and bool(marimo.running_in_notebook())


def _ipython_shell() -> Any:
    """The running IPython kernel's shell, or None (a script, a terminal IPython, marimo)."""
    if "IPython" not in sys.modules:
        return None
    from IPython.core.getipython import get_ipython

    shell = get_ipython()
    return shell if shell is not None and getattr(shell, "kernel", None) is not None else None


def show(obj: Any) -> None:
    """Put ``obj``'s live view in the running cell, in whatever host runs it; in a script on a terminal, the
    live line on standard error (as tqdm does); in logs and pipes, nothing."""
    if _in_marimo():
        import marimo

        marimo.output.append(view(obj))
    elif _ipython_shell() is not None:
        view(obj)._ipython_display_()
    elif sys.stderr is not None and sys.stderr.isatty():
        _terminal(obj)


def _terminal(obj: Any) -> None:
    from torq_nb.progress.batch import BatchTracker

    tracker = getattr(obj, "tracker", obj)
    if isinstance(tracker, BatchTracker):
        from torq_nb.progress.batch_terminal import BatchTerminalProgress

        tracker.add_callback(BatchTerminalProgress(sys.stderr))
    else:
        from torq_nb.progress.terminal import TerminalProgress

        tracker.add_callback(TerminalProgress(sys.stderr))


def _ipython_show(obj: Any) -> None:
    view(obj)._ipython_display_()


def _marimo_display(obj: Any) -> Any:
    return view(obj)


def register() -> None:
    """Register the shown types with the host this process runs in (called when torq_nb is imported)."""
    if _in_marimo():
        import importlib

        for module, name in SHOWN:
            shown = getattr(importlib.import_module(module), name)
            shown._display_ = _marimo_display
        return
    shell = _ipython_shell()
    if shell is not None:
        formatter = shell.display_formatter.ipython_display_formatter
        for module, name in SHOWN:
            formatter.for_type_by_name(module, name, _ipython_show)
