"""Exports of a research run: the report notebook, Markdown, HTML and PDF through nbconvert (PDF via
Typst), and CSV, JSON, NDJSON and Parquet through Polars. Every write is atomic.

The package is callable: ``torq_nb.export(results, "report.pdf")`` is ``torq_nb.export.export``.
"""

from __future__ import annotations

from torq_nb._callable import make_callable
from torq_nb.export.data import ExportInput, RunData, load_run, normalize
from torq_nb.export.manager import (
    FORMATS,
    ExportManager,
    export,
    resolve_format,
    to_html,
    to_markdown,
    to_notebook,
    to_pdf,
)
from torq_nb.export.report import build_report, save_notebook
from torq_nb.export.tabular import (
    neutralize_formulas,
    write_csv,
    write_json,
    write_ndjson,
    write_parquet,
)
from torq_nb.export.typst_pdf import TypstPDFExporter

__all__ = [
    "FORMATS",
    "ExportInput",
    "ExportManager",
    "RunData",
    "TypstPDFExporter",
    "build_report",
    "export",
    "load_run",
    "neutralize_formulas",
    "normalize",
    "resolve_format",
    "save_notebook",
    "to_html",
    "to_markdown",
    "to_notebook",
    "to_pdf",
    "write_csv",
    "write_json",
    "write_ndjson",
    "write_parquet",
]

make_callable(__name__, "torq_nb.export.manager:export")
