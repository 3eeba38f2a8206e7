"""Staged progress: the observable tracker, its typed status, and its notebook view."""

import sys

from torq_nb.progress.models import ErrorInfo, ProgressStatus, StageStatus
from torq_nb.progress.tracker import DEFAULT_STAGES, ProgressTracker, get_progress

__all__ = ["DEFAULT_STAGES", "ErrorInfo", "ProgressStatus", "ProgressTracker", "StageStatus", "get_progress"]


def _register_display() -> None:
    """Inside IPython, show trackers and research jobs as the live widget (torq_nb.progress.widget.show).

    Outside IPython (scripts, the CLI, extraction workers) nothing is imported. Meant to move to the top of
    the package (torq_nb/__init__.py) with the same two lines.
    """
    ipython = sys.modules.get("IPython")
    if ipython is not None and ipython.get_ipython() is not None:
        from torq_nb.progress.widget import register_display

        register_display()


_register_display()
