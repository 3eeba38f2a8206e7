"""Staged progress: the observable tracker, its typed status, and its views (widget, snapshot, terminal)."""

from torq_nb.progress.models import ErrorInfo, ProgressStatus, StageStatus
from torq_nb.progress.tracker import DEFAULT_STAGES, ProgressTracker, get_progress

__all__ = ["DEFAULT_STAGES", "ErrorInfo", "ProgressStatus", "ProgressTracker", "StageStatus", "get_progress"]

