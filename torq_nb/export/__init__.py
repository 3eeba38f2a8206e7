"""Exports of a research run: the report notebook, Markdown, HTML and PDF through nbconvert (PDF via
Typst), and CSV, JSON, NDJSON and Parquet through Polars. Every write is atomic.

The module itself is callable, so ``torq_nb.export(results, "report.pdf")`` works beside
``torq_nb.export.to_markdown(...)``; ``from torq_nb.export import export`` is the same function.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from torq_nb.export.data import ExportInput, RunData, normalize
from torq_nb.export.manager import FORMATS, ExportManager, export, resolve_format, to_html, to_markdown, to_notebook, to_pdf
from torq_nb.export.report import build_report, save_notebook
from torq_nb.export.tabular import neutralize_formulas, write_csv, write_json, write_ndjson, write_parquet
from torq_nb.export.typst_pdf import TypstPDFExporter

__all__ = [
    "FORMATS",
    "ExportInput",
    "ExportManager",
    "RunData",
    "TypstPDFExporter",
    "build_report",
    "export",
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


class _CallableModule(types.ModuleType):
    """This package, callable as ``export()``: one name for the module and its main function."""

    def __call__(self, results: ExportInput, path: Any, format: str | None = None, **options: Any) -> Any:
        return export(results, path, format, **options)


sys.modules[__name__].__class__ = _CallableModule
