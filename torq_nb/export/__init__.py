"""Exports of a research run: the report notebook, Markdown, HTML and PDF (through Typst), and CSV, Excel,
JSON, NDJSON and Parquet through Polars, to a local path or any fsspec URL. Every write is atomic where the
target allows it.

``torq_nb.export`` itself is the function (torq_nb/api.py). The names below load on first use, so a
CSV export does not import nbconvert or Typst.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torq_nb._lazy import lazy_names

if TYPE_CHECKING:
    from torq_nb.export.data import ExportInput, RunData, normalize
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
        write_excel,
        write_json,
        write_ndjson,
        write_parquet,
    )
    from torq_nb.export.typst_pdf import TypstPDFExporter

_WHERE: dict[str, str] = {
    "ExportInput": "torq_nb.export.data",
    "RunData": "torq_nb.export.data",
    "normalize": "torq_nb.export.data",
    "FORMATS": "torq_nb.export.manager",
    "ExportManager": "torq_nb.export.manager",
    "export": "torq_nb.export.manager",
    "resolve_format": "torq_nb.export.manager",
    "to_html": "torq_nb.export.manager",
    "to_markdown": "torq_nb.export.manager",
    "to_notebook": "torq_nb.export.manager",
    "to_pdf": "torq_nb.export.manager",
    "build_report": "torq_nb.export.report",
    "save_notebook": "torq_nb.export.report",
    "neutralize_formulas": "torq_nb.export.tabular",
    "write_csv": "torq_nb.export.tabular",
    "write_excel": "torq_nb.export.tabular",
    "write_json": "torq_nb.export.tabular",
    "write_ndjson": "torq_nb.export.tabular",
    "write_parquet": "torq_nb.export.tabular",
    "TypstPDFExporter": "torq_nb.export.typst_pdf",
}

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
    "write_excel",
    "write_json",
    "write_ndjson",
    "write_parquet",
]


__getattr__, __dir__ = lazy_names(__name__, _WHERE)
