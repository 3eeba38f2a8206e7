"""Exports of a batch (``BatchResults``): one report with a section per topic, or one table of every row.

The report is the single-run report (``report.report_sections``) of each topic, one after the other under a
heading of its own, after an overview of every topic's status: so the batch's Markdown, HTML and PDF escape
page text exactly as a run's do, and its HTML is written by the same template (``report.html_document``),
with the same style (title, author, logo, template). Each topic's headings move one level down and its
citation anchors get the topic's number (``t3-source-2``), so every ``[n]`` links to its own topic's source.
The tables (CSV, JSON, NDJSON, Parquet, Excel) are the batch's ``.df``, a leading ``topic`` column before the
documented schema, written by the same writers as a run's; a ZIP holds them all (``manager._zip_into``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import polars as pl

from torq_nb.export.atomic import file_name, write_file
from torq_nb.export.manager import _WRITERS, _exporter, _zip_into, resolve_format, typst_report
from torq_nb.export.report import (
    Column,
    Fact,
    Section,
    Table,
    date_fact,
    duration,
    header_section,
    html_document,
    md_line,
    notebook,
    report_sections,
    table_section,
)
from torq_nb.export.style import PLAIN, ReportStyle
from torq_nb.export.text import CELL_CHARS, TITLE_CHARS, clip, html_text
from torq_nb.results import ResearchResults, counted

if TYPE_CHECKING:
    from torq_nb.research.batch import BatchResults

__all__ = ["batch_notebook", "export_batch"]

_DOCUMENTS = ("markdown", "html", "pdf", "ipynb")


def _title(batch: BatchResults, style: ReportStyle = PLAIN) -> str:
    if style.title:
        return clip(style.title, TITLE_CHARS)
    return f"Research: {counted(len(batch), 'topic')}"


def table_data(batch: BatchResults) -> ResearchResults:
    """The batch as one table for the tabular writers: every row, the topics' outcomes in the metadata."""
    progress = batch.progress or {}
    metadata = {"topics": batch.summaries.drop("summary").to_dicts(), **batch.metadata}
    return ResearchResults.from_dict({"results": batch.df, "topic": _title(batch).removeprefix("Research: "),
                                      "depth": batch.depth, "source": batch.source, "operation_id": batch.operation_id,
                                      "progress": {"started_at": progress.get("started_at"),
                                                   "duration": progress.get("duration")}, "metadata": metadata})


def _overview(batch: BatchResults) -> Section:
    """The table of every topic: status, pages read and failed, and why a topic failed or stopped."""
    columns = [Column(pl.col("topic"), "Topic"), Column(pl.col("status"), "Status", whole=True),
               Column(pl.col("pages_read").cast(pl.String), "Read", number=True),
               Column(pl.col("pages_failed").cast(pl.String), "Failed", number=True),
               Column(pl.col("reason").fill_null(""), "Reason", prose=True)]
    return table_section(2, "Topics", Table(batch.summaries, columns, -1, pl.lit(None, pl.String)))


def _header(batch: BatchResults, style: ReportStyle) -> Section:
    counts = dict(batch.summaries.get_column("status").value_counts().rows()) if len(batch) else {}
    df = batch.df
    read = int((df.get_column("status") == "ok").sum()) if df.height else 0
    failed = int((df.get_column("status") == "error").sum()) if df.height else 0
    progress = batch.progress or {}
    return header_section(_title(batch, style), style.author, [
        Fact("Depth", clip(batch.depth or "", TITLE_CHARS)), Fact("Source", clip(batch.source or "", TITLE_CHARS)),
        date_fact(str(progress.get("started_at") or "")), Fact("Duration", duration(progress.get("duration"))),
        Fact("Topics", ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()))),
        Fact("Pages", f"{df.height:,} results: {read:,} read, {failed:,} failed")])


def _topic_section(topic: str, row: dict[str, Any]) -> Section:
    """A topic's heading and the line of its outcome."""
    facts = [row["status"], f"{row['pages_read']} read", f"{row['pages_failed']} failed"]
    if row["query"] != topic:
        facts.append(f"query: {clip(row['query'], CELL_CHARS)}")
    if row["reason"]:
        facts.append(clip(row["reason"], CELL_CHARS))
    heading = clip(topic, TITLE_CHARS)
    return Section(lambda: f"## {md_line(heading)}\n\n{' · '.join(map(md_line, facts))}",
                   lambda: f"<h2>{html_text(heading)}</h2>\n<p>{html_text(' · '.join(facts))}</p>")


def batch_sections(batch: BatchResults, style: ReportStyle = PLAIN) -> list[Section]:
    """The batch's report, part by part: header, the overview of topics, then one section per topic (each
    topic's report one level down, its source anchors numbered by topic)."""
    sections = [_header(batch, style), _overview(batch)]
    for number, topic in enumerate(batch.topics, start=1):
        sections.append(_topic_section(topic, batch.summaries.row(number - 1, named=True)))
        results = batch.get(topic)
        if results is not None:
            sections += report_sections(results, level=3, prefix=f"t{number}-")[1:]
    return sections


def batch_notebook(batch: BatchResults, sections: list[Section] | None = None, style: ReportStyle = PLAIN) -> Any:
    """The batch's report notebook (of ``sections``, by default ``batch_sections(batch, style)``)."""
    return notebook(batch_sections(batch, style) if sections is None else sections, _title(batch, style),
                    {"report": True, "batch": True, "topics": len(batch), "operation_id": batch.operation_id})


def _document(kind: str) -> Callable[[IO[bytes], BatchResults, dict[str, Any]], object]:
    def write(fh: IO[bytes], batch: BatchResults, options: dict[str, Any]) -> object:
        style: ReportStyle = options.get("style", PLAIN)
        sections = batch_sections(batch, style)
        if kind == "html":
            return fh.write(html_document(sections, _title(batch, style), style).encode("utf-8"))
        if kind == "pdf":
            if options.get("engine", "typst") != "typst":
                raise ValueError("a batch report's PDF is written with engine='typst'")
            return fh.write(typst_report(lambda bare: batch_notebook(batch, bare, style), sections, _title(batch, style),
                                         style))
        nb = batch_notebook(batch, sections, style)
        if kind == "ipynb":
            import nbformat

            return fh.write((nbformat.writes(nb) + "\n").encode("utf-8"))
        body, _ = _exporter().from_notebook_node(nb)
        return fh.write(str(body).encode("utf-8"))

    return write


def _table(kind: str) -> Callable[[IO[bytes], BatchResults, dict[str, Any]], object]:
    def write(fh: IO[bytes], batch: BatchResults, options: dict[str, Any]) -> object:
        return _WRITERS[kind](fh, table_data(batch), options)

    return write


_BATCH_WRITERS: dict[str, Callable[[IO[bytes], BatchResults, dict[str, Any]], object]] = {
    **{kind: _document(kind) for kind in _DOCUMENTS},
    **{kind: _table(kind) for kind in _WRITERS if kind not in _DOCUMENTS},
}


def export_batch(batch: BatchResults, path: str | os.PathLike[str], format: str | None = None, *,
                 engine: str = "typst", bom: bool = False, neutralize: bool = True,
                 metadata_comments: bool = False, title: str | None = None, author: str | None = None,
                 logo: str | os.PathLike[str] | None = None, template: str | os.PathLike[str] | None = None,
                 storage_options: Mapping[str, Any] | None = None) -> Path | str:
    """Write ``batch`` to ``path`` (the format from its suffix, or ``format``), atomically; return the path.

    Markdown, HTML, PDF and .ipynb: one report, a section per topic, styled as ``torq_nb.export``'s documents
    (``title``, ``author``, ``logo``, an HTML ``template``). CSV, JSON, NDJSON, Parquet, Excel: one table of every
    row (cells a spreadsheet would run are neutralised unless ``neutralize=False``). ZIP: all of them.
    ``storage_options`` go to fsspec when ``path`` is a URL.
    """
    name = resolve_format(path, format)
    style = ReportStyle.of(title=title, author=author, logo=logo, template=template, format=name)
    options = {"engine": engine, "bom": bom, "neutralize": neutralize, "metadata_comments": metadata_comments,
               "style": style}
    if name == "zip":
        stem = Path(file_name(path)).stem or "batch"
        return write_file(path, lambda fh: _zip_into(fh, batch, stem, options, _BATCH_WRITERS), storage_options)
    return write_file(path, lambda fh: _BATCH_WRITERS[name](fh, batch, options), storage_options)
