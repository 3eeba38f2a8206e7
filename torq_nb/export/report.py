"""The report notebook: a run as nbformat Markdown cells, the one source of Markdown, HTML and PDF.

Everything that came from a page (titles, snippets, errors, the summary's sentences) is escaped so
that it stays text: no Markdown, HTML, math or table syntax from a page reaches a renderer.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import nbformat

from torq_nb.export.atomic import write_text
from torq_nb.export.data import ExportInput, RunData, normalize

#: Characters that start Markdown, HTML, entity, math or table syntax inline; each gets a backslash.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~$&!])")
_CITATION = re.compile(r"\[(\d+)\]")
_LINK_SCHEMES = frozenset({"http", "https", "ftp", "mailto"})
#: Characters left as they are in a link destination; everything else is percent-encoded, so a
#: URL can hold no space, pipe, angle bracket, backslash or dollar that would end it early.
_URL_SAFE = ":/?#[]@!&'()*+,;=%~-._"


def md_text(value: Any) -> str:
    """``value`` as inline Markdown text that renders literally; line breaks become spaces."""
    text = " ".join(str(value).split("\n")).replace("\r", " ")
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_cell(value: Any) -> str:
    """``value`` as the content of a GFM table cell: escaped, with line breaks as ``<br>``."""
    if value is None:
        return ""
    lines = str(value).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "<br>".join(md_text(line) for line in lines)


def safe_url(url: Any) -> str | None:
    """``url`` percent-encoded for a Markdown link destination, or None if it is not a web/mail link."""
    if not isinstance(url, str) or not url.strip():
        return None
    url = url.strip()
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return quote(url, safe=_URL_SAFE) if scheme in _LINK_SCHEMES else None


def md_link(text: Any, url: Any) -> str:
    """A Markdown link with literal text; just the text when the URL is missing or not http(s)/mailto."""
    label = md_text(text) if text not in (None, "") else md_text(url or "")
    target = safe_url(url)
    return f"[{label}](<{target}>)" if target else label


def anchor(rank: int) -> str:
    """The id of source ``rank`` in the source list, the target of its ``[n]`` citations."""
    return f"source-{rank}"


def md_summary(summary: str, ranks: set[int]) -> str:
    """The summary as escaped Markdown, paragraphs kept, each known ``[n]`` a link to its source."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", summary.replace("\r\n", "\n")) if p.strip()]
    out = []
    for paragraph in paragraphs:
        pieces = []
        for i, part in enumerate(_CITATION.split(paragraph)):
            if i % 2 == 0:
                pieces.append(md_text(part))
            elif int(part) in ranks:
                pieces.append(f"[\\[{part}\\]](#{anchor(int(part))})")
            else:
                pieces.append(f"\\[{part}\\]")
        out.append("".join(pieces))
    return "\n\n".join(out)


def _get(row: dict[str, Any], key: str) -> Any:
    value = row.get(key)
    return "" if value is None else value


def _status(row: dict[str, Any]) -> str:
    status = str(_get(row, "status"))
    code = row.get("http_status")
    return f"{status} ({code})" if status == "error" and code else status


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)} min {secs:.0f} s" if minutes else f"{secs:.1f} s"


def _header(run: RunData) -> str:
    fields = [
        ("Topic", md_text(run.topic)),
        ("Depth", md_text(run.depth)),
        ("Source", md_text(run.source)),
        ("Date", md_text(run.date)),
        ("Duration", _duration(run.duration)),
        ("Pages", f"{run.df.height} results: {run.count('ok')} fetched, {run.count('error')} failed"),
    ]
    lines = [f"- **{name}:** {value}" for name, value in fields if value]
    return f"# {md_text(run.title)}\n\n" + "\n".join(lines)


#: The columns of the results table, in order, when the table has them.
_RESULT_COLUMNS = ("rank", "title", "domain", "status", "word_count", "published", "snippet")


def _results_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    headings = {"rank": "#", "title": "Title", "domain": "Domain", "status": "Status", "word_count": "Words",
                "published": "Published", "snippet": "Snippet"}
    shown = [c for c in _RESULT_COLUMNS if c in columns] or columns
    lines = ["| " + " | ".join(md_cell(headings.get(c, c)) for c in shown) + " |",
             "|" + "|".join("---:" if c in ("rank", "word_count") else "---" for c in shown) + "|"]
    for row in rows:
        cells = []
        for c in shown:
            if c == "title":
                cells.append(md_link(row.get("title") or row.get("url") or "", row.get("url")))
            elif c == "status":
                cells.append(md_cell(_status(row)))
            else:
                cells.append(md_cell(row.get(c)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _sources(rows: list[dict[str, Any]]) -> str:
    items = []
    for i, row in enumerate(rows, start=1):
        rank = row.get("rank") or i
        url = row.get("url")
        title = md_text(row.get("title") or url or "untitled")
        link = f" <br>{md_link(url, url)}" if url else ""
        domain = f" — {md_text(row['domain'])}" if row.get("domain") else ""
        items.append(f"- <a id=\"{anchor(int(rank))}\"></a>**\\[{int(rank)}\\]** {title}{domain}{link}")
    return "\n".join(items)


def _failures(rows: list[dict[str, Any]]) -> str:
    lines = ["| # | URL | HTTP | Reason |", "|---:|---|---:|---|"]
    for i, row in enumerate(rows, start=1):
        url = row.get("url")
        lines.append(f"| {md_cell(row.get('rank') or i)} | {md_link(url, url)} | {md_cell(row.get('http_status'))} "
                     f"| {md_cell(row.get('error'))} |")
    return "\n".join(lines)


def build_report(results: ExportInput | RunData) -> nbformat.NotebookNode:
    """The report notebook of a run: title and metadata, summary, results table, sources, failures."""
    run = normalize(results)
    df = run.df
    rows = df.to_dicts()
    ranks = {int(r["rank"]) for r in rows if isinstance(r.get("rank"), int)} or set(range(1, len(rows) + 1))
    failed = [r for r in rows if r.get("status") == "error"]

    cells = [_header(run)]
    if run.summary.strip():
        cells.append("## Summary\n\n" + md_summary(run.summary, ranks))
    if rows:
        cells.append("## Results\n\n" + _results_table(rows, df.columns))
        cells.append("## Sources\n\n" + _sources(rows))
    else:
        cells.append("## Results\n\nThere were no results.")
    if failed:
        cells.append("## Appendix: failed pages\n\n" + _failures(failed))

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(source) for source in cells]
    nb.metadata["title"] = run.title
    nb.metadata["torq_nb"] = {"report": True, "topic": run.topic, "operation_id": run.operation_id}
    return nb


def save_notebook(results: ExportInput | RunData, path: str | os.PathLike[str]) -> Path:
    """Write the report notebook to ``path`` (atomically) and return the path."""
    return write_text(path, nbformat.writes(build_report(results)) + "\n")


