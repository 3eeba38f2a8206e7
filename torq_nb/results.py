"""The results of a run, the one type every layer shares: ``ResearchResults``, its table's ``SCHEMA``, and
its one serialiser (``to_dict``/``from_dict``, ``to_json``), used by the JSON export, the run store and
``load_run``.

The research layer makes it and the export layer reads it; neither imports the other for it (the export
methods import the export layer when called).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
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


def counted(n: int, noun: str) -> str:
    """``n`` of ``noun`` in words: "1 hit", "2 hits", "1,000 topics"."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def empty_frame() -> pl.DataFrame:
    """A results table with the documented schema and no rows."""
    return pl.DataFrame(schema=SCHEMA)


#: The results card's own layout: hosts without Jupyter's table styles (marimo, VS Code) would run its columns
#: together ("127.0.0.1ok"). Scoped to the card; page text never reaches it. The card opts out of MathJax
#: (tex2jax_ignore, mathjax_ignore): a page's "$5 to $10" is text, not math.
_CARD_CSS = (  # "table td": more specific than JupyterLab's own ".jp-RenderedHTMLCommon td" (right-aligned)
    ".torq-results table{border-collapse:collapse;margin:0.5em 0}"
    ".torq-results table th,.torq-results table td{padding:2px 8px;text-align:left;vertical-align:top;"
    "border-bottom:1px solid rgba(128,128,128,0.25)}"
    ".torq-results table td.whole{white-space:nowrap}"
    # Hosts that reset headings, paragraphs and links (marimo's Tailwind preflight) still show a card that reads.
    ".torq-results h3{font-size:1.25em;font-weight:600;margin:0.3em 0}"
    ".torq-results p{margin:0.5em 0}"
    ".torq-results a{color:var(--jp-content-link-color,#1a5fb4);text-decoration:underline}"
)
#: The card's columns, those of them the table has: (column, heading, right-aligned, never broken across lines).
#: "title" is shown when there is a title or a URL (the URL is its link).
_CARD_COLUMNS = (("rank", "#", True, True), ("title", "title", False, False), ("domain", "domain", False, True),
                 ("status", "status", False, True), ("word_count", "words", True, True), ("error", "error", False, False))


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
        counts = self.df["status"].value_counts().rows() if self.df.height and "status" in self.df.columns else []
        tally = ", ".join(f"{n} {status}" for status, n in sorted(counts, key=lambda row: str(row[0])))
        state = self.progress.state if self.progress else "complete"
        return (
            f"<ResearchResults {self.topic!r} depth={self.depth} source={self.source or '-'} {state}>\n"
            f"{counted(self.df.height, 'hit')} ({tally or 'none'}); summary {len(self.summary):,} characters; "
            "see .df, .summary, .errors"
        )

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
        """The run's duration in seconds, from its progress (or its metadata), if known."""
        value = self.progress.duration if self.progress else self.metadata.get("duration")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def date(self) -> str:
        """When the run started (ISO-8601), from its progress (or its metadata), if known."""
        progress = self.progress
        value = (progress.started_at or progress.timestamp) if progress else None
        value = value or self.metadata.get("date") or ""
        return value.isoformat() if isinstance(value, (date, datetime)) else str(value)

    def to_dict(self, *, rows: bool = True) -> dict[str, Any]:
        """The run as a dict (the seed's results dict): topic, summary, depth, source, operation_id, date,
        duration, counts, progress (a dict), metadata and, unless ``rows=False``, ``results``: the row dicts.
        ``from_dict`` reads it back, also as JSON (``to_json``)."""
        data: dict[str, Any] = {
            "topic": self.topic,
            "summary": self.summary,
            "depth": self.depth,
            "source": self.source,
            "operation_id": self.operation_id,
            "date": self.date,
            "duration": self.duration,
            "counts": {"results": self.df.height, "fetched": self.count("ok"), "failed": self.count("error")},
            "progress": self.progress.to_dict() if self.progress else None,
            "metadata": dict(self.metadata),
        }
        if rows:
            data["results"] = self.df.to_dicts()
        return data

    def to_json(self) -> str:
        """``to_dict()`` as one JSON document (dates as ISO-8601): what ``export("run.json")`` writes."""
        head = json.dumps(self.to_dict(rows=False), ensure_ascii=False, default=json_default)
        return f'{head[:-1]}, "results": {self.df.write_json()}}}\n'

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResearchResults:
        """A run from ``to_dict()`` or ``to_json()`` output (or the run store's fields): its ``results`` are row
        dicts (ISO strings for dates, as in JSON) or a DataFrame, the documented columns get their SCHEMA
        types, and its progress is rebuilt (a progress that is not a whole status keeps its start and
        duration in the metadata). The derived keys (date, duration, counts) are not read."""
        if "results" not in data:
            raise ValueError("a results dict needs a 'results' key holding the row dicts (as ResearchResults.to_dict() gives)")
        metadata = dict(data.get("metadata") or {})
        raw = data.get("progress")
        progress = _progress(raw)
        if progress is None:
            found = raw if isinstance(raw, Mapping) else {}
            for key, value in (("date", found.get("started_at") or found.get("timestamp") or data.get("date")),
                               ("duration", found.get("duration", data.get("duration")))):
                if value is not None and value != "":
                    metadata.setdefault(key, value)
        return cls(topic=str(data.get("topic") or ""), df=frame(data["results"]), summary=str(data.get("summary") or ""),
                   depth=str(data.get("depth") or ""), source=str(data.get("source") or ""),
                   operation_id=str(data.get("operation_id") or ""), progress=progress, metadata=metadata)

    def _repr_html_(self) -> str:
        """The notebook view: counts, the cited summary and the table's documented columns that it has. Page
        text stays text (escaped by ``torq_nb.export.text``, as every export is) and is bounded as in the report."""
        from torq_nb.export.text import CELL_CHARS, TITLE_CHARS, URL_CHARS, clip, html_text, summary_html

        def link(text: str, url: str | None) -> str:
            label = html_text(clip(text, TITLE_CHARS))
            if url and url.startswith(("http://", "https://")) and len(url) <= URL_CHARS:
                return f"<a href='{html_text(url)}' target='_blank' rel='noopener noreferrer'>{label}</a>"
            return label

        def cell(name: str, row: dict[str, Any]) -> str:
            if name == "title":
                return link(str(row.get("title") or row.get("url") or ""), row.get("url"))
            value = row[name]
            return html_text(clip(str(value), CELL_CHARS)) if value is not None else ""

        present = set(self.df.columns) | ({"title"} if "url" in self.df.columns else set())
        if "error" in present and self.df.get_column("error").null_count() == self.df.height:
            present.discard("error")  # no row failed: no empty column
        shown = [column for column in _CARD_COLUMNS if column[0] in present]
        names = [name for name, *_ in shown if name in self.df.columns] + (["url"] if "url" in self.df.columns else [])
        state = self.progress.state if self.progress else "complete"
        facts = [counted(self.df.height, "hit"), f"{self.count('ok')} read", f"{self.count('error')} failed"]
        facts += [f"{self.count(s)} {s}" for s in ("snippet", "cancelled") if self.count(s)]
        rows = "".join(
            "<tr>" + "".join(f"<td style='text-align:{'right' if right else 'left'}'{' class=whole' if whole else ''}>"
                             f"{cell(name, row)}</td>" for name, _, right, whole in shown) + "</tr>"
            for row in self.df.select(names).iter_rows(named=True)
        )
        heads = "".join(f"<th style='text-align:{'right' if right else 'left'}'>{head}</th>" for _, head, right, _ in shown)
        table = f"<table><thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table>" if shown else ""
        context = " · ".join(html_text(clip(value, CELL_CHARS)) for value in (self.depth, self.source, state) if value)
        return (
            f"<div class='torq-results tex2jax_ignore mathjax_ignore'><h3>{html_text(clip(self.title, TITLE_CHARS))}</h3>"
            f"<p><small>{context} · {' · '.join(facts)}</small></p>"
            f"{summary_html(self.summary)}"
            f"<style>{_CARD_CSS}</style>"
            f"{table}"
            "<p><small>The full table is <code>.df</code> (Polars); <code>.export(path)</code> writes a report.</small></p></div>"
        )

    def to_notebook(self) -> Any:
        """The run as a report notebook (nbformat): title, metadata, summary, results, sources, failures."""
        from torq_nb.export.manager import to_notebook

        return to_notebook(self)

    def save_notebook(self, path: str | os.PathLike[str]) -> Path | str:
        """Write the report notebook to ``path`` (atomically; or an fsspec URL) and return where it went."""
        from torq_nb.export.report import save_notebook

        return save_notebook(self, path)

    def export(self, path: str | os.PathLike[str], format: str | None = None, **options: Any) -> Path | str:
        """Export to ``path`` (a file, or an fsspec URL such as ``s3://bucket/r.pdf``: the URL is returned); the format
        comes from the suffix (.md .html .pdf .csv .json .ndjson .parquet .xlsx .zip .ipynb).
        ``options`` are ``torq_nb.export``'s: ``title``, ``author``, ``logo``, ``template``, ``engine``, ``bom``, ..."""
        from torq_nb.export.manager import export

        return export(self, path, format, **options)


def json_default(value: Any) -> Any:
    """How the run's JSON writes values JSON has no type for: dates as ISO-8601, anything else as text."""
    return value.isoformat() if isinstance(value, (date, datetime)) else str(value)


def _progress(value: Any) -> ProgressStatus | None:
    """A saved progress as a ProgressStatus, or None when it is missing or not a whole status."""
    if value is None or isinstance(value, ProgressStatus):
        return value
    if not isinstance(value, Mapping):
        value = value.to_dict() if hasattr(value, "to_dict") else None
    try:
        return ProgressStatus.from_dict(dict(value)) if isinstance(value, Mapping) else None
    except (TypeError, KeyError, ValueError):
        return None


def frame(rows: Any) -> pl.DataFrame:
    """The results table of ``rows`` (row dicts, or a DataFrame as it is), the documented columns with their
    SCHEMA types where they convert (ISO strings, from JSON, are parsed as dates)."""
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
                pass  # kept as given; the exporters check the table (torq_nb.export.data.normalize)
    return df


def _cast(col: pl.Expr, have: pl.DataType, wanted: pl.DataType) -> pl.Expr:
    """Convert a column to its documented type where it is of that kind already (Int64 to Int32, a date-time's
    zone) or holds ISO strings (from JSON) for a date; any other column is kept for the exporters to judge."""
    if have == pl.String() and wanted == pl.Date():
        return col.str.to_date()
    if have == pl.String() and isinstance(wanted, pl.Datetime):
        return col.str.to_datetime(time_unit="us", time_zone="UTC")
    same_kind = (have.is_integer() and wanted.is_integer()) or (have.is_numeric() and wanted.is_float()) \
        or (isinstance(have, pl.Datetime) and isinstance(wanted, pl.Datetime))
    if not same_kind:
        raise pl.exceptions.InvalidOperationError(f"{have} is not {wanted}")
    return col.cast(wanted)
