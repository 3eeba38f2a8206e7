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
#: cached is True when the row came from the run store (its page, or its search hit); fetched_at and
#: elapsed_ms are then those of the fetch that got the page.
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
    "cached": pl.Boolean(),
}


def empty_frame() -> pl.DataFrame:
    """A results table with the documented schema and no rows."""
    return pl.DataFrame(schema=SCHEMA)


@dataclass(repr=False)
class ResearchResults:
    """Everything a research run produced.

    ``df`` has one row per search hit (see ``SCHEMA``); ``summary`` is plain text (nothing escaped:
    each export escapes it for its format) whose every sentence cites ``[n]``, the ``rank`` of the row
    it came from.
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

    def __repr__(self) -> str:
        """Two lines, as Polars keeps its repr short: what was researched, and what came of it."""
        counts = self.df["status"].value_counts().rows() if self.df.height else []
        tally = ", ".join(f"{n} {status}" for status, n in sorted(counts))
        state = self.progress.state if self.progress else "complete"
        return (
            f"<ResearchResults {self.topic!r} depth={self.depth} source={self.source or '-'} {state}>\n"
            f"{self.df.height} hits ({tally or 'none'}); summary {len(self.summary):,} characters; "
            "see .df, .summary, .errors"
        )

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

    def _repr_html_(self) -> str:
        """The notebook view: counts, the cited summary and the sources table. Page text stays text
        (escaped by ``torq_nb.export.text``, as every export is) and is bounded as in the report."""
        from torq_nb.export.text import CELL_CHARS, TITLE_CHARS, URL_CHARS, clip, html_text, summary_html

        def link(text: str, url: str | None) -> str:
            label = html_text(clip(text, TITLE_CHARS))
            if url and url.startswith(("http://", "https://")) and len(url) <= URL_CHARS:
                return f"<a href='{html_text(url)}' target='_blank' rel='noopener noreferrer'>{label}</a>"
            return label

        def cell(value: Any) -> str:
            return html_text(clip(str(value), CELL_CHARS)) if value is not None else ""

        counts = {status: self.df.filter(pl.col("status") == status).height for status in ("ok", "error", "snippet", "cancelled")}
        state = self.progress.state if self.progress else "complete"
        facts = [f"{self.df.height} hits", f"{counts['ok']} read", f"{counts['error']} failed"]
        facts += [f"{counts[s]} {s}" for s in ("snippet", "cancelled") if counts[s]]
        rows = "".join(
            "<tr>"
            f"<td>{row['rank']}</td><td>{link(row['title'] or row['url'] or '', row['url'])}</td>"
            f"<td>{cell(row['domain'])}</td><td>{cell(row['status'])}</td>"
            f"<td style='text-align:right'>{row['word_count'] if row['word_count'] is not None else ''}</td>"
            f"<td>{cell(row['error'])}</td>"
            "</tr>"
            for row in self.df.select("rank", "title", "url", "domain", "status", "word_count", "error").iter_rows(named=True)
        )
        return (
            f"<div class='torq-results'><h3>Research: {html_text(clip(self.topic, TITLE_CHARS))}</h3>"
            f"<p><small>{cell(self.depth)} · {cell(self.source)} · {cell(state)} · {' · '.join(facts)}</small></p>"
            f"{summary_html(self.summary)}"
            "<table><thead><tr><th>#</th><th>title</th><th>domain</th><th>status</th><th>words</th><th>error</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
            "<p><small>The full table is <code>.df</code> (Polars); <code>.export(path)</code> writes a report.</small></p></div>"
        )

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
