"""The report notebook: a run as nbformat Markdown cells, the one source of Markdown, HTML and PDF.

Everything that came from a page (titles, snippets, errors, the summary's sentences) is escaped so
that it stays text: no Markdown, HTML, math or table syntax from a page reaches a renderer. The
escaping is done with Polars expressions over whole columns, so 10,000 rows take milliseconds.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import nbformat
import polars as pl

from torq_nb.export.atomic import write_text
from torq_nb.export.data import ExportInput, RunData, normalize

#: Characters that start Markdown, HTML, entity, math or table syntax inline; each gets a backslash.
_MD_SPECIAL = r"([\\`*_\[\]<>#|~$&!])"
_CITATION = re.compile(r"\[(\d+)\]")
_ANCHOR_PREFIX = "source-"
#: Only these schemes become links; anything else (javascript:, data:, file:) stays text.
_LINK_SCHEME = r"^(?i)(https?|ftp)://\S|^(?i)mailto:\S"
#: Characters percent-encoded in link destinations: they would end the link, split a table row,
#: or open math; control characters are dropped.
_URL_ESCAPES = {" ": "%20", "<": "%3C", ">": "%3E", "|": "%7C", "\\": "%5C", '"': "%22", "`": "%60", "$": "%24"}


def _text(col: pl.Expr) -> pl.Expr:
    """Inline Markdown text that renders literally; line breaks become spaces; null becomes ''."""
    return col.cast(pl.String).fill_null("").str.replace_all(r"\r\n|\r|\n", " ").str.replace_all(_MD_SPECIAL, r"\$1")


def _cell(col: pl.Expr) -> pl.Expr:
    """A GFM table cell: escaped text with line breaks as ``<br>``."""
    escaped = col.cast(pl.String).fill_null("").str.replace_all(r"\r\n|\r", "\n").str.replace_all(_MD_SPECIAL, r"\$1")
    return escaped.str.replace_all("\n", "<br>", literal=True)


def _url(col: pl.Expr) -> pl.Expr:
    """A link destination, percent-encoded where Markdown needs it; null unless http(s), ftp or mailto."""
    url = col.cast(pl.String).str.strip_chars().str.replace_all(r"[\x00-\x1f\x7f]", "")
    for char, code in _URL_ESCAPES.items():
        url = url.str.replace_all(char, code, literal=True)
    return pl.when(url.str.contains(_LINK_SCHEME)).then(url)


def _link(label: pl.Expr, url: pl.Expr) -> pl.Expr:
    """``[label](<url>)`` where the URL is a web/mail link, else the label alone."""
    target = _url(url)
    return pl.when(target.is_not_null()).then(pl.format("[{}](<{}>)", label, target)).otherwise(label)


def _one(expr: pl.Expr, value: Any) -> str:
    """Apply a column expression to one value."""
    return str(pl.DataFrame({"v": [None if value is None else str(value)]}, schema={"v": pl.String}).select(expr).item())


def md_text(value: Any) -> str:
    """``value`` as inline Markdown text that renders literally; line breaks become spaces."""
    return _one(_text(pl.col("v")), value)


def md_cell(value: Any) -> str:
    """``value`` as the content of a GFM table cell: escaped, line breaks as ``<br>``."""
    return _one(_cell(pl.col("v")), value)


def anchor(rank: int) -> str:
    """The id of source ``rank`` in the source list, the target of its ``[n]`` citations."""
    return f"{_ANCHOR_PREFIX}{rank}"


def md_summary(summary: str, ranks: set[int]) -> str:
    """The summary as escaped Markdown, paragraphs kept, each known ``[n]`` a link to its source."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", summary.replace("\r\n", "\n")) if p.strip()]
    out = []
    for paragraph in paragraphs:
        pieces = []
        for i, part in enumerate(_CITATION.split(paragraph)):
            if i % 2 == 0:
                pieces.append(md_text(part) if part else "")
            elif int(part) in ranks:
                pieces.append(f"[\\[{part}\\]](#{anchor(int(part))})")
            else:
                pieces.append(f"\\[{part}\\]")
        out.append("".join(pieces))
    return "\n\n".join(out)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)} min {secs:.0f} s" if minutes else f"{secs:.1f} s"


def _header(run: RunData) -> str:
    fields = [
        ("Topic", md_text(run.topic) if run.topic else ""),
        ("Depth", md_text(run.depth) if run.depth else ""),
        ("Source", md_text(run.source) if run.source else ""),
        ("Date", md_text(run.date) if run.date else ""),
        ("Duration", _duration(run.duration)),
        ("Pages", f"{run.df.height} results: {run.count('ok')} fetched, {run.count('error')} failed"),
    ]
    lines = [f"- **{name}:** {value}" for name, value in fields if value]
    return f"# {md_text(run.title)}\n\n" + "\n".join(lines)


#: The results table's columns, in order, when the table has them: (column, heading, right-aligned).
_RESULT_COLUMNS = (("rank", "\\#", True), ("title", "Title", False), ("domain", "Domain", False),
                   ("status", "Status", False), ("word_count", "Words", True), ("published", "Published", False),
                   ("snippet", "Snippet", False))


def _col(df: pl.DataFrame, name: str) -> pl.Expr:
    return pl.col(name) if name in df.columns else pl.lit(None, dtype=pl.String)


def _rank(df: pl.DataFrame) -> pl.Expr:
    """Each row's number: its rank, or its position when there is no rank."""
    position = pl.int_range(1, pl.len() + 1)
    return pl.coalesce(pl.col("rank").cast(pl.Int64, strict=False), position) if "rank" in df.columns else position


def _lines(df: pl.DataFrame, line: pl.Expr) -> str:
    return "\n".join(df.select(line.alias("line")).get_column("line").to_list())


def _results_table(df: pl.DataFrame) -> str:
    shown = [c for c in _RESULT_COLUMNS if c[0] in df.columns]
    if not shown:
        shown = [(name, md_cell(name), False) for name in df.columns]
    cells = []
    for name, _, _ in shown:
        if name == "title":
            cells.append(_link(_text(pl.coalesce(_col(df, "title"), _col(df, "url"), pl.lit(""))), _col(df, "url")))
        elif name == "status":
            code = _col(df, "http_status").cast(pl.String)
            error = (pl.col("status") == "error") & code.is_not_null()
            cells.append(pl.when(error).then(pl.format("{} ({})", _cell(pl.col("status")), code)).otherwise(_cell(pl.col("status"))))
        else:
            cells.append(_cell(pl.col(name)))
    head = "| " + " | ".join(h for _, h, _ in shown) + " |\n|" + "|".join("---:" if right else "---" for *_, right in shown) + "|\n"
    row = pl.concat_str([pl.lit("| "), pl.concat_str(cells, separator=" | "), pl.lit(" |")])
    return head + _lines(df, row)


def _sources(df: pl.DataFrame) -> str:
    rank = _rank(df).cast(pl.String)
    title = _text(pl.coalesce(_col(df, "title"), _col(df, "url"), pl.lit("untitled")))
    domain = pl.when(_col(df, "domain").fill_null("") != "").then(pl.lit(" — ") + _text(_col(df, "domain"))).otherwise(pl.lit(""))
    url = _col(df, "url")
    link = pl.when(url.is_not_null()).then(pl.lit(" <br>") + _link(_text(url), url)).otherwise(pl.lit(""))
    line = pl.concat_str([pl.lit(f'- <a id="{_ANCHOR_PREFIX}'), rank, pl.lit('"></a>**\\['), rank, pl.lit("\\]** "), title, domain, link])
    return _lines(df, line)


def _failures(df: pl.DataFrame) -> str:
    url = _col(df, "url")
    line = pl.concat_str([pl.lit("| "), _rank(df).cast(pl.String), pl.lit(" | "), _link(_text(url), url), pl.lit(" | "),
                          _cell(_col(df, "http_status")), pl.lit(" | "), _cell(_col(df, "error")), pl.lit(" |")])
    return "| \\# | URL | HTTP | Reason |\n|---:|---|---:|---|\n" + _lines(df, line)


def build_report(results: ExportInput | RunData) -> nbformat.NotebookNode:
    """The report notebook of a run: title and metadata, summary, results table, sources, failures."""
    run = normalize(results)
    df = run.df
    ranks = set(df.select(_rank(df)).to_series().to_list()) if df.height else set()

    cells = [_header(run)]
    if run.summary.strip():
        cells.append("## Summary\n\n" + md_summary(run.summary, ranks))
    if df.height:
        cells.append("## Results\n\n" + _results_table(df))
        cells.append("## Sources\n\n" + _sources(df))
    else:
        cells.append("## Results\n\nThere were no results.")
    failed = df.with_columns(_rank(df).alias("rank")).filter(pl.col("status") == "error") if "status" in df.columns else df.clear()
    if failed.height:
        cells.append("## Appendix: failed pages\n\n" + _failures(failed))

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(source) for source in cells]
    nb.metadata["title"] = run.title
    nb.metadata["torq_nb"] = {"report": True, "topic": run.topic, "operation_id": run.operation_id}
    return nb


def save_notebook(results: ExportInput | RunData, path: str | os.PathLike[str]) -> Path:
    """Write the report notebook to ``path`` (atomically) and return the path."""
    return write_text(path, nbformat.writes(build_report(results)) + "\n")
