"""One normalising step for every exporter: whatever the caller holds becomes a ``RunData``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeAlias

import polars as pl

from torq_nb.research.results import SCHEMA, ResearchResults, empty_frame
from torq_nb.research.store import DEFAULT_STORE, StoreArgument, resolve_store

#: What every export function accepts: a run, a table of the documented schema (or some of its
#: columns), a list of row dicts, or the seed's results dict (``ResearchResults.to_dict()``).
ExportInput: TypeAlias = ResearchResults | pl.DataFrame | Sequence[Mapping[str, Any]] | Mapping[str, Any]


@dataclass(frozen=True)
class RunData:
    """A run reduced to what exporters need: the rows and the run's JSON-ready metadata."""

    df: pl.DataFrame
    topic: str = ""
    summary: str = ""
    depth: str = ""
    source: str = ""
    operation_id: str = ""
    progress: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """The report's title."""
        return f"Research: {self.topic}" if self.topic else "Research results"

    def count(self, status: str) -> int:
        """How many rows have ``status`` (0 when the table has no status column)."""
        if "status" not in self.df.columns:
            return 0
        return int((self.df.get_column("status") == status).sum())

    @property
    def duration(self) -> float | None:
        """The run's duration in seconds, from its progress (or metadata), if known."""
        value = (self.progress or {}).get("duration", self.metadata.get("duration"))
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def date(self) -> str:
        """When the run started (ISO-8601), if known."""
        progress = self.progress or {}
        value = progress.get("started_at") or progress.get("timestamp") or self.metadata.get("date") or ""
        return value.isoformat() if isinstance(value, (date, datetime)) else str(value)

    def info(self) -> dict[str, Any]:
        """The run's metadata as a JSON-ready dict (everything but the rows)."""
        return {
            "topic": self.topic,
            "summary": self.summary,
            "depth": self.depth,
            "source": self.source,
            "operation_id": self.operation_id,
            "date": self.date,
            "duration": self.duration,
            "counts": {"results": self.df.height, "fetched": self.count("ok"), "failed": self.count("error")},
            "progress": self.progress,
            "metadata": self.metadata,
        }


def normalize(results: ExportInput | RunData) -> RunData:
    """Turn any accepted input into a ``RunData``; a clear TypeError/ValueError for anything else."""
    if isinstance(results, RunData):
        return results
    if isinstance(results, ResearchResults):
        progress = results.progress.to_dict() if results.progress else None
        return RunData(results.df, results.topic, results.summary, results.depth, results.source,
                       results.operation_id, progress, dict(results.metadata))
    if isinstance(results, pl.DataFrame):
        return RunData(results)
    if isinstance(results, Mapping):
        if "results" not in results:
            raise ValueError("a results dict needs a 'results' key holding the row dicts (as ResearchResults.to_dict() gives)")
        progress = results.get("progress")
        if progress is not None and not isinstance(progress, Mapping):
            progress = progress.to_dict()
        return RunData(
            _frame(results["results"]),
            str(results.get("topic") or ""),
            str(results.get("summary") or ""),
            str(results.get("depth") or ""),
            str(results.get("source") or ""),
            str(results.get("operation_id") or ""),
            dict(progress) if progress else None,
            dict(results.get("metadata") or {}),
        )
    if isinstance(results, Sequence) and not isinstance(results, (str, bytes)):
        return RunData(_frame(results))
    raise TypeError(
        "export needs ResearchResults, a Polars DataFrame, a list of row dicts or a results dict; "
        f"got {type(results).__name__}"
    )


def _frame(rows: Any) -> pl.DataFrame:
    """Build the table from row dicts, with the documented types for the columns it knows."""
    if isinstance(rows, pl.DataFrame):
        return rows
    if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)):
        raise TypeError(f"results must be a list of row dicts, got {type(rows).__name__}")
    if not rows:
        return empty_frame()
    if not all(isinstance(row, Mapping) for row in rows):
        raise TypeError("results must be a list of row dicts; some rows are not dicts")
    try:
        df = pl.DataFrame(rows, infer_schema_length=None)
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        raise ValueError(f"the row dicts could not be made into a table (mixed value types in a column?): {exc}") from None
    for name in df.columns:
        wanted = SCHEMA.get(name)
        if wanted is not None and df.schema[name] != wanted:
            try:
                df = df.with_columns(_cast(pl.col(name), df.schema[name], wanted))
            except pl.exceptions.PolarsError:
                pass  # keep the column as given: every exporter can still print it
    return df


def _cast(col: pl.Expr, have: pl.DataType, wanted: pl.DataType) -> pl.Expr:
    """Convert a column to its documented type; ISO strings (from JSON) are parsed as dates."""
    if have == pl.String() and wanted == pl.Date():
        return col.str.to_date()
    if have == pl.String() and isinstance(wanted, pl.Datetime):
        return col.str.to_datetime(time_unit="us", time_zone="UTC")
    return col.cast(wanted)


def load_run(run: str | os.PathLike[str], *, store: StoreArgument = DEFAULT_STORE) -> ResearchResults:
    """A past run as ResearchResults, to look at or export again. ``run`` is a run id from ``torq_nb.runs()``
    (read from ``store``: by default ``$TORQ_NB_STORE`` or the user's cache folder), or the path of a run saved
    as JSON (``results.export("run.json")``): one that names a file or ends in ``.json``."""
    text = os.fspath(run)
    if text.lower().endswith(".json") or os.path.isfile(text):
        return _results(_read_json_run(text))
    found = resolve_store(store)
    try:
        if found is not None:
            return found.load(text)
    except KeyError:
        pass
    where = f"in the store {found.path}" if found is not None else "(the run store is off)"
    raise FileNotFoundError(f"no run {text!r} {where} and no saved run file of that name; torq_nb.runs() lists "
                            "the stored runs")


def _read_json_run(path: str) -> RunData:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"no saved run at {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a run saved as JSON ({error})") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{path} holds JSON but not a saved run (expected an object with 'results')")
    return normalize(data)


def _results(run: RunData) -> ResearchResults:
    """A saved run's data as ResearchResults (its progress rebuilt when the file holds a whole one)."""
    from torq_nb.progress.models import ProgressStatus

    try:
        progress = ProgressStatus.from_dict(run.progress) if run.progress else None
    except (TypeError, KeyError):
        progress = None
    return ResearchResults(topic=run.topic, df=run.df, summary=run.summary, depth=run.depth, source=run.source,
                           operation_id=run.operation_id, progress=progress, metadata=dict(run.metadata))
