"""Exports of a batch (``BatchResults``): one report with a section per topic, or one table of every row.

The report notebook is the single-run report (``report.build_report``) of each topic, one after the
other under a heading of its own, after an overview of every topic's status: so the batch's Markdown,
HTML and PDF escape page text exactly as a run's do. Each topic's headings move one level down and its
citation anchors get the topic's number (``t3-source-2``), so every ``[n]`` links to its own topic's
source. The tables (CSV, JSON, NDJSON, Parquet) are the batch's ``.df``, a leading ``topic`` column
before the documented schema, written by the same writers as a run's.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import nbformat
import polars as pl

from torq_nb.export.manager import _WRITERS, FORMATS, _exporter, resolve_format
from torq_nb.export.report import Section, Table, _duration, md_line, notebook, report_sections, table_section, trees
from torq_nb.export.tabular import write_file
from torq_nb.export.text import CELL_CHARS, TITLE_CHARS, clip
from torq_nb.results import ResearchResults

if TYPE_CHECKING:
    from torq_nb.research.batch import BatchResults

__all__ = ["batch_notebook", "export_batch"]


def _title(batch: BatchResults) -> str:
    return f"Research: {len(batch):,} topic{'s' if len(batch) != 1 else ''}"


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
    summaries = batch.summaries
    columns = [(pl.col("topic"), "Topic", False), (pl.col("status"), "Status", False),
               (pl.col("pages_read").cast(pl.String), "Read", True), (pl.col("pages_failed").cast(pl.String), "Failed", True),
               (pl.col("reason").fill_null(""), "Reason", False)]
    return table_section(2, "Topics", Table(summaries, columns, -1, pl.lit(None, pl.String)))


def _header(batch: BatchResults) -> str:
    counts = dict(batch.summaries.get_column("status").value_counts().rows()) if len(batch) else {}
    df = batch.df
    read = int((df.get_column("status") == "ok").sum()) if df.height else 0
    failed = int((df.get_column("status") == "error").sum()) if df.height else 0
    progress = batch.progress or {}
    fields = [
        ("Depth", md_line(clip(batch.depth, TITLE_CHARS)) if batch.depth else ""),
        ("Source", md_line(clip(batch.source, TITLE_CHARS)) if batch.source else ""),
        ("Date", md_line(str(progress.get("started_at") or ""))),
        ("Duration", _duration(progress.get("duration"))),
        ("Topics", ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()))),
        ("Pages", f"{df.height:,} results: {read:,} read, {failed:,} failed"),
    ]
    lines = [f"- **{name}:** {value}" for name, value in fields if value]
    return f"# {md_line(_title(batch))}\n\n" + "\n".join(lines)


def batch_sections(batch: BatchResults) -> list[Section]:
    """The batch's report, cell by cell: header, the overview of topics, then one section per topic (each
    topic's report one level down, its source anchors numbered by topic)."""
    sections = [Section(_header(batch)), _overview(batch)]
    for number, topic in enumerate(batch.topics, start=1):
        row = batch.summaries.row(number - 1, named=True)
        facts = [md_line(row["status"]), f"{row['pages_read']} read", f"{row['pages_failed']} failed"]
        if row["query"] != topic:
            facts.append(f"query: {md_line(clip(row['query'], CELL_CHARS))}")
        if row["reason"]:
            facts.append(md_line(clip(row["reason"], CELL_CHARS)))
        sections.append(Section(f"## {md_line(clip(topic, TITLE_CHARS))}\n\n{' · '.join(facts)}"))
        results = batch.get(topic)
        if results is not None:
            sections += report_sections(results, level=3, prefix=f"t{number}-")[1:]
    return sections


def batch_notebook(batch: BatchResults, sections: list[Section] | None = None) -> Any:
    """The batch's report notebook (of ``sections``, by default ``batch_sections(batch)``)."""
    return notebook(batch_sections(batch) if sections is None else sections, _title(batch),
                    {"report": True, "batch": True, "topics": len(batch), "operation_id": batch.operation_id})


def _document(kind: str) -> Callable[[IO[bytes], BatchResults, dict[str, Any]], object]:
    def write(fh: IO[bytes], batch: BatchResults, options: dict[str, Any]) -> object:
        sections = batch_sections(batch)
        nb = batch_notebook(batch, sections)
        if kind == "pdf":
            if options.get("engine", "typst") != "typst":
                raise ValueError("a batch report's PDF is written with engine='typst'")
            from torq_nb.export.typst_pdf import render_pdf

            return fh.write(render_pdf(nb, title=_title(batch), trees=trees(sections)))
        if kind == "ipynb":
            return fh.write((nbformat.writes(nb) + "\n").encode("utf-8"))
        body, _ = _exporter("html" if kind == "html" else "markdown").from_notebook_node(nb)
        return fh.write(str(body).encode("utf-8"))

    return write


def _table(kind: str) -> Callable[[IO[bytes], BatchResults, dict[str, Any]], object]:
    def write(fh: IO[bytes], batch: BatchResults, options: dict[str, Any]) -> object:
        return _WRITERS[kind](fh, table_data(batch), options)

    return write


_BATCH_WRITERS: dict[str, Callable[[IO[bytes], BatchResults, dict[str, Any]], object]] = {
    **{kind: _document(kind) for kind in ("markdown", "html", "pdf", "ipynb")},
    **{kind: _table(kind) for kind in ("csv", "json", "ndjson", "parquet", "excel")},
}


def export_batch(batch: BatchResults, path: str | os.PathLike[str], format: str | None = None, *,
                 engine: str = "typst", bom: bool = False, neutralize: bool = True,
                 metadata_comments: bool = False) -> Path | str:
    """Write ``batch`` to ``path`` (the format from its suffix, or ``format``), atomically; return the path.

    Markdown, HTML, PDF and .ipynb: one report, a section per topic. CSV, JSON, NDJSON, Parquet: one table of
    every row (CSV cells a spreadsheet would run are neutralised unless ``neutralize=False``). ZIP: all of them.
    """
    name = resolve_format(path, format)
    options = {"engine": engine, "bom": bom, "neutralize": neutralize, "metadata_comments": metadata_comments}
    def write(fh: IO[bytes]) -> None:
        if name == "zip":
            with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
                for kind, suffixes in FORMATS.items():
                    if kind != "zip":
                        buf = io.BytesIO()
                        _BATCH_WRITERS[kind](buf, batch, options)
                        zf.writestr((Path(path).stem or "batch") + suffixes[0], buf.getvalue())
        else:
            _BATCH_WRITERS[name](fh, batch, options)

    return write_file(path, write)
