"""Typed snapshots of a ProgressTracker: what a run's status looks like at one instant."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

#: The life of a tracked operation.
State = Literal["pending", "running", "complete", "failed", "cancelled"]
#: The life of one stage. "skipped" marks a stage the operation jumped over.
StageState = Literal["pending", "running", "complete", "failed", "cancelled", "skipped"]

TERMINAL_STATES: frozenset[str] = frozenset({"complete", "failed", "cancelled"})


@dataclass(frozen=True)
class ErrorInfo:
    """Why an operation failed: the exception's type name and its message."""

    type: str
    message: str


@dataclass(frozen=True)
class StageStatus:
    """One stage of the timeline. Times are ISO-8601 UTC; duration is in seconds."""

    name: str
    percent: float
    state: StageState = "pending"
    started_at: str | None = None
    duration: float | None = None


@dataclass(frozen=True)
class ProgressStatus:
    """The status of a tracked operation, as returned by ``get_progress``.

    Holds the same data as ``ProgressTracker.get_status()``; ``to_dict()`` gives that plain dict,
    and ``status["stage"]`` works as on the dict.
    """

    operation: str
    operation_id: str
    stage: str | None
    percent: float
    state: State
    message: str | None
    duration: float
    timestamp: str
    started_at: str | None
    done: int
    total: int | None
    rate: float | None
    eta: float | None
    error: ErrorInfo | None
    #: What ``done`` counts, as tqdm's ``unit``: "it" (items), "pages", ... (rates are ``unit``/s).
    unit: str = "it"
    metadata: dict[str, Any] = field(default_factory=dict)
    stages: tuple[StageStatus, ...] = ()

    @property
    def finished(self) -> bool:
        """True once the operation is complete, failed or cancelled."""
        return self.state in TERMINAL_STATES

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (error and stages become dicts, stages a list), JSON-ready if the metadata is.

        Metadata values are passed through as they are, not deep-copied: they may be anything a caller
        recorded (a session, a lock), and copying them would be slow or fail.
        """
        data = dict(vars(self))  # the fields (dataclasses.asdict would deep-copy, slowly)
        data["error"] = dict(vars(self.error)) if self.error is not None else None
        data["metadata"] = dict(self.metadata)
        data["stages"] = [dict(vars(stage)) for stage in self.stages]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProgressStatus:
        """Rebuild a status from ``to_dict()`` output (for example a saved run's JSON)."""
        fields = dict(data)
        error = fields.get("error")
        fields["error"] = ErrorInfo(**error) if error else None
        fields["stages"] = tuple(StageStatus(**s) for s in fields.get("stages", ()))
        return cls(**fields)
