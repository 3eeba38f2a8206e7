"""ExportManager and ``export()``: one call per format, the format chosen from the file's suffix.

The document formats import nbconvert, nbformat and Typst when they are first written, so a CSV, JSON,
NDJSON, Parquet or Excel export imports none of them.
"""

from __future__ import annotations

import io
import os
import shutil
import threading
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from torq_nb.export import tabular
from torq_nb.export.atomic import file_name, write_bytes, write_file, write_text
from torq_nb.export.data import ExportInput, normalize
from torq_nb.export.style import PLAIN, ReportStyle
from torq_nb.results import ResearchResults

if TYPE_CHECKING:
    import nbformat

    from torq_nb.export.report import Section

Engine = Literal["typst", "webpdf", "latex"]

#: Format name -> the suffixes that select it (the first is the one ZIP members get).
FORMATS: dict[str, tuple[str, ...]] = {
    "markdown": (".md", ".markdown"),
    "html": (".html", ".htm"),
    "pdf": (".pdf",),
    "csv": (".csv",),
    "json": (".json",),
    "ndjson": (".ndjson", ".jsonl"),
    "parquet": (".parquet",),
    "excel": (".xlsx",),
    "ipynb": (".ipynb",),
    "zip": (".zip",),
}
_BY_SUFFIX = {suffix: name for name, suffixes in FORMATS.items() for suffix in suffixes}
_local = threading.local()


def _supported() -> str:
    return ", ".join(f"{name} ({'/'.join(suffixes)})" for name, suffixes in FORMATS.items())


def resolve_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The format name for ``format`` (a name or suffix) or else the suffix of ``path`` (a path, or a URL's
    path, its query left out); ValueError if unknown."""
    file = file_name(path)
    suffix = Path(file).suffix
    key = (format or suffix).lower().strip()
    name = key if key in FORMATS else _BY_SUFFIX.get(key if key.startswith(".") else "." + key)
    if name is None:
        what = f"format {format!r}" if format else f"suffix {suffix or '(none)'!r} of {file or path}"
        raise ValueError(f"cannot export: unknown {what}; supported formats: {_supported()}")
    return name


def _exporter() -> Any:
    """nbconvert's MarkdownExporter, one per thread: building one loads Jinja templates (slow)."""
    if not hasattr(_local, "markdown"):
        from nbconvert import MarkdownExporter

        _local.markdown = MarkdownExporter()
    return _local.markdown


def to_notebook(results: ExportInput) -> nbformat.NotebookNode:
    """The report notebook of ``results`` (see ``torq_nb.export.report``)."""
    from torq_nb.export.report import build_report

    return build_report(results)


def _ipynb(results: ExportInput) -> str:
    import nbformat

    return str(nbformat.writes(to_notebook(results))) + "\n"


def to_markdown(results: ExportInput, style: ReportStyle = PLAIN) -> str:
    """The report as GitHub-flavoured Markdown, from nbconvert's MarkdownExporter (``style``: title and author;
    a Markdown file has no logo: see docs/templates.md)."""
    from torq_nb.export.report import build_report

    body, _ = _exporter().from_notebook_node(build_report(results, style))
    return str(body)


def to_html(results: ExportInput, style: ReportStyle = PLAIN) -> str:
    """The report as one self-contained, offline HTML file: the report's sections in a Jinja template, its tables
    sortable and filterable (``style``: title, author, logo, an HTML template; see docs/templates.md)."""
    from torq_nb.export.report import html_document, report_sections, title

    run = normalize(results)
    return html_document(report_sections(run, style=style), title(run, style), style)


def typst_report(notebook_of: Callable[[list[Section]], nbformat.NotebookNode], sections: list[Section], title: str,
                 style: ReportStyle) -> bytes:
    """A report's PDF through Typst (a run's or a batch's): the one place a style becomes Typst's arguments.
    Typst gets the tables' and lists' nodes, so the notebook (``notebook_of`` the sections) leaves their Markdown
    out (a 10,000-row table's is ~0.1 s)."""
    from dataclasses import replace

    from torq_nb.export.report import trees
    from torq_nb.export.typst_pdf import TEMPLATE, render_pdf

    bare = [replace(section, build_markdown=str) if section.tree is not None else section for section in sections]
    return render_pdf(notebook_of(bare), title=title, trees=trees(sections), author=style.author, logo=style.logo,
                      template=style.template_for("pdf") or TEMPLATE)


def to_pdf(results: ExportInput, engine: Engine = "typst", style: ReportStyle = PLAIN) -> bytes:
    """The report as PDF bytes: Typst by default (``style``: title, author, logo, a Typst template);
    nbconvert's ``webpdf`` or ``latex`` where installed."""
    from torq_nb.export.report import report_notebook, report_sections, title

    run = normalize(results)
    sections = report_sections(run, style=style)
    if engine == "typst":
        return typst_report(lambda bare: report_notebook(run, bare, style), sections, title(run, style), style)
    nb = report_notebook(run, sections, style)
    if engine == "latex":
        missing = [tool for tool in ("xelatex", "pandoc") if shutil.which(tool) is None]
        if missing:
            raise RuntimeError(f"engine='latex' needs {' and '.join(missing)} on PATH (Debian: apt-get install texlive-xetex "
                               "texlive-fonts-recommended texlive-plain-generic pandoc); engine='typst' needs nothing more")
        from nbconvert import PDFExporter

        return bytes(PDFExporter().from_notebook_node(nb)[0])
    if engine == "webpdf":
        from nbconvert import WebPDFExporter

        try:
            return bytes(WebPDFExporter(disable_sandbox=os.geteuid() == 0).from_notebook_node(nb)[0])
        except RuntimeError as exc:
            raise RuntimeError("engine='webpdf' needs Playwright and its own Chromium: pip install 'nbconvert[webpdf]' and "
                               "run `python -m playwright install chromium` (nbconvert cannot use a system Chromium such as "
                               f"/usr/bin/chromium); engine='typst' needs nothing more. nbconvert said: {exc}") from None
    raise ValueError(f"unknown PDF engine {engine!r}; choose 'typst', 'webpdf' or 'latex'")


def _zip_into(fh: IO[bytes], run: Any, stem: str, options: dict[str, Any],
              writers: Mapping[str, Callable[[IO[bytes], Any, dict[str, Any]], object]] | None = None) -> None:
    """A ZIP of every other format, each member named ``stem`` plus its suffix, written by ``writers``
    (by default a run's ``_WRITERS``; a batch gives its own)."""
    chosen = _WRITERS if writers is None else writers
    with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, suffixes in FORMATS.items():
            if name == "zip":
                continue
            buf = io.BytesIO()
            chosen[name](buf, run, options)
            zf.writestr(stem + suffixes[0], buf.getvalue())


_WRITERS: dict[str, Callable[[IO[bytes], ResearchResults, dict[str, Any]], object]] = {
    "markdown": lambda fh, run, o: fh.write(to_markdown(run, o.get("style", PLAIN)).encode("utf-8")),
    "html": lambda fh, run, o: fh.write(to_html(run, o.get("style", PLAIN)).encode("utf-8")),
    "pdf": lambda fh, run, o: fh.write(to_pdf(run, o.get("engine", "typst"), o.get("style", PLAIN))),
    "csv": lambda fh, run, o: tabular.csv_into(fh, run, bom=o.get("bom", False), neutralize=o.get("neutralize", True),
                                               metadata_comments=o.get("metadata_comments", False)),
    "json": lambda fh, run, o: tabular.json_into(fh, run),
    "ndjson": lambda fh, run, o: tabular.ndjson_into(fh, run),
    "parquet": lambda fh, run, o: tabular.parquet_into(fh, run),
    "excel": lambda fh, run, o: tabular.excel_into(fh, run, neutralize=o.get("neutralize", True)),
    "ipynb": lambda fh, run, o: fh.write(_ipynb(run).encode("utf-8")),
}


def export(results: ExportInput, path: str | os.PathLike[str], format: str | None = None, *,
           engine: Engine = "typst", bom: bool = False, neutralize: bool = True,
           metadata_comments: bool = False, title: str | None = None, author: str | None = None,
           logo: str | os.PathLike[str] | None = None, template: str | os.PathLike[str] | None = None,
           storage_options: Mapping[str, Any] | None = None) -> Path | str:
    """Write ``results`` to ``path`` in ``format`` (default: from the suffix), atomically; return the Path
    written, or the URL as given.

    Formats: Markdown, HTML, PDF (``engine``), CSV (``bom``, ``neutralize``, ``metadata_comments``),
    JSON, NDJSON, Parquet, Excel (.xlsx; ``neutralize``), the report notebook (.ipynb) and a ZIP bundle of
    all of them. The documents take a ``title``, an ``author`` line, a ``logo`` image and a ``template`` of
    your own (.typ for PDF, .html.j2 for HTML). ``path`` may be an fsspec URL (``s3://bucket/r.pdf``,
    ``gcs://...``, ``memory://...``): the document is built in memory and uploaded once, complete
    (``atomic.write_file``), with ``storage_options`` (endpoint, credentials) passed to fsspec.
    """
    name = resolve_format(path, format)
    style = ReportStyle.of(title=title, author=author, logo=logo, template=template, format=name)
    run = normalize(results)
    options = {"engine": engine, "bom": bom, "neutralize": neutralize, "metadata_comments": metadata_comments,
               "style": style}
    if name == "zip":
        stem = Path(file_name(path)).stem or "results"
        return write_file(path, lambda fh: _zip_into(fh, run, stem, options), storage_options)
    return write_file(path, lambda fh: _WRITERS[name](fh, run, options), storage_options)


class ExportManager:
    """The seed's export API, kept by name: Markdown as a string, PDF and CSV written to files."""

    def export_to_markdown(self, results: ExportInput) -> str:
        """The report as GitHub-flavoured Markdown."""
        return to_markdown(results)

    def export_to_html(self, results: ExportInput) -> str:
        """The report as one self-contained HTML document."""
        return to_html(results)

    def export_to_pdf(self, results: ExportInput, path: str | os.PathLike[str], engine: Engine = "typst") -> Path | str:
        """Write the report as PDF to ``path`` and return it."""
        return write_bytes(path, to_pdf(results, engine))

    def export_to_csv(self, results: ExportInput, path: str | os.PathLike[str], *, bom: bool = False,
                      neutralize: bool = True, metadata_comments: bool = False) -> Path | str:
        """Write the rows as CSV to ``path`` and return it (see ``tabular.write_csv``)."""
        return tabular.write_csv(results, path, bom=bom, neutralize=neutralize, metadata_comments=metadata_comments)

    def export(self, results: ExportInput, path: str | os.PathLike[str], format: str | None = None, **options: Any) -> Path | str:
        """Write ``results`` in the format of ``path``'s suffix (or ``format``); see ``torq_nb.export.export``."""
        return export(results, path, format, **options)

    def save_notebook(self, results: ExportInput, path: str | os.PathLike[str]) -> Path | str:
        """Write the report notebook (.ipynb) to ``path`` and return it."""
        return write_text(path, _ipynb(results))
