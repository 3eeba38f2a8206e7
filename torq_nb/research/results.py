"""ResearchResults: the product of a run — one row per search hit, a cited summary, and the final progress."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from torq_nb.progress.models import ProgressStatus

#: The schema of ``ResearchResults.df``. One row per search hit, in rank order.
#: status is "ok" (fetched and extracted), "error" (failed: see error/http_status),
#: "snippet" (quick depth: not fetched by design) or "cancelled" (the run stopped first).
SCHEMA: dict[str, pl.DataType] = {
    "rank": pl.Int32(),
    "title": pl.String(),
    "url": pl.String(),
    "domain": pl.String(),
    "snippet": pl.String(),
    "content": pl.String(),
    "word_count": pl.Int32(),
    "published": pl.Date(),
    "author": pl.String(),
    "source": pl.String(),
    "score": pl.Float64(),
    "status": pl.String(),
    "error": pl.String(),
    "http_status": pl.Int32(),
    "fetched_at": pl.Datetime("us", "UTC"),
    "elapsed_ms": pl.Float64(),
}


def empty_frame() -> pl.DataFrame:
    """A results table with the documented schema and no rows."""
    return pl.DataFrame(schema=SCHEMA)


@dataclass
class ResearchResults:
    """Everything a research run produced.

    ``df`` has one row per search hit (see ``SCHEMA``); ``summary`` is Markdown whose every
    sentence cites ``[n]``, the ``rank`` of the row it came from.
    """

    topic: str
    df: pl.DataFrame
    summary: str
    depth: str = "standard"
    source: str = ""
    operation_id: str = ""
    progress: ProgressStatus | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> pl.DataFrame:
        """The rows that failed, with their reasons."""
        return self.df.filter(pl.col("status") == "error").select("rank", "url", "http_status", "error")

    def to_dict(self) -> dict[str, Any]:
        """The seed's results dict: topic, summary, results (row dicts), progress and metadata."""
        return {
            "topic": self.topic,
            "depth": self.depth,
            "source": self.source,
            "operation_id": self.operation_id,
            "summary": self.summary,
            "results": self.df.to_dicts(),
            "progress": self.progress.to_dict() if self.progress else None,
            "metadata": dict(self.metadata),
        }

    def to_notebook(self) -> Any:
        """The run as a report notebook (nbformat): title, metadata, summary, results, sources, failures."""
        from torq_nb.export import to_notebook

        return to_notebook(self)

    def save_notebook(self, path: str | os.PathLike[str]) -> Path:
        """Write the report notebook to ``path`` (atomically) and return the path."""
        from torq_nb.export import save_notebook

        return save_notebook(self, path)

    def export(self, path: str | os.PathLike[str], format: str | None = None) -> Path:
        """Export to ``path``; the format comes from the suffix (.md .html .pdf .csv .json .ndjson .parquet .zip .ipynb)."""
        from torq_nb.export import export

        return export(self, path, format)
