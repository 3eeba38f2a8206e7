"""The report notebook: a run as nbformat Markdown cells, the one source of Markdown, HTML and PDF.

Everything that came from a page (titles, snippets, errors, the summary's sentences) arrives as plain
text and is escaped here, once, by ``torq_nb.export.text``: no Markdown, HTML, math, autolink or table
syntax from a page reaches a renderer. Each value is bounded first (``text.clip``), since every
document lays it out; the tables keep full values. The escaping is done with Polars expressions over
whole columns, so 10,000 rows take milliseconds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import nbformat
import polars as pl
from nbformat.v4 import new_markdown_cell, new_notebook

from torq_nb.export.atomic import write_text
from torq_nb.export.data import ExportInput, normalize
from torq_nb.export.mdtree import Cell, Node, Tree, table_node
from torq_nb.export.mdtree import text as text_node
from torq_nb.export.text import (
    CELL_CHARS,
    SUMMARY_CHARS,
    TITLE_CHARS,
    URL_CHARS,
    clip,
    clip_expr,
    md_block_start,
    md_expr,
    md_text,
    summary_paragraphs,
)
from torq_nb.results import ResearchResults

_ANCHOR_PREFIX = "source-"
#: Only these schemes become links; anything else (javascript:, data:, file:) stays text.
_LINK_SCHEME = r"^(?i)(https?|ftp)://\S|^(?i)mailto:\S"
#: Characters percent-encoded in link destinations: they would end the link, split a table row or open
#: math, or a renderer would encode them itself (mistune quotes all but ``:/?#@!$&()*+,;=%`` and letters,
#: digits, ``-._~``), so that every renderer links to the destination exactly as written; control
#: characters are dropped.
_URL_ESCAPES = {" ": "%20", "<": "%3C", ">": "%3E", "|": "%7C", "\\": "%5C", '"': "%22", "`": "%60", "$": "%24",
                "'": "%27", "^": "%5E", "{": "%7B", "}": "%7D", "[": "%5B", "]": "%5D"}
#: An address whose host is in brackets (IPv6): a renderer's own encoding of the brackets would break it.
_BRACKETED_HOST = r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*\["
_PRINTABLE_ASCII = "".join(map(chr, range(0x21, 0x7F)))


def _ascii_url(url: str) -> str | None:
    """A URL with non-ASCII characters in the ASCII form every renderer keeps: the host in IDNA, the rest
    percent-encoded as UTF-8; None if the host is not a valid international domain name."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced bracket
        return None
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host, colon, port = hostport.partition(":")
    try:
        host = host.encode("idna").decode("ascii") if host else host
    except UnicodeError:
        return None
    netloc = quote(userinfo + at, safe=_PRINTABLE_ASCII) + host + colon + quote(port, safe=_PRINTABLE_ASCII)
    return urlunsplit(parts._replace(netloc=netloc, path=quote(parts.path, safe=_PRINTABLE_ASCII),
                                     query=quote(parts.query, safe=_PRINTABLE_ASCII),
                                     fragment=quote(parts.fragment, safe=_PRINTABLE_ASCII)))


def _ascii_urls(urls: pl.Series) -> pl.Series:
    """``_ascii_url`` of each URL that is not ASCII (few are: the others are not touched)."""
    if not urls.str.contains(r"[^\x00-\x7f]").any():
        return urls
    return pl.Series([u if u is None or u.isascii() else _ascii_url(u) for u in urls.to_list()], dtype=pl.String)


def _one_line(col: pl.Expr) -> pl.Expr:
    """Unescaped text with line breaks as spaces (null stays null)."""
    return col.cast(pl.String).str.replace_all(r"\r\n|\r|\n", " ")


def _text(col: pl.Expr) -> pl.Expr:
    """Inline Markdown text that renders literally; line breaks become spaces; null becomes ''."""
    return md_expr(_one_line(col).fill_null(""))


def _cell(col: pl.Expr) -> pl.Expr:
    """A GFM table cell: escaped text with line breaks as ``<br>``."""
    escaped = md_expr(col.cast(pl.String).fill_null("").str.replace_all(r"\r\n|\r", "\n"))
    return escaped.str.replace_all("\n", "<br>", literal=True)


def _url(col: pl.Expr) -> pl.Expr:
    """A link destination, ASCII and percent-encoded where Markdown or a renderer needs it; null unless
    http(s), ftp or mailto, not a bracketed (IPv6) host, and at most ``URL_CHARS`` long (a longer URL is
    shown, clipped, but not linked)."""
    url = col.cast(pl.String).str.strip_chars().str.replace_all(r"[\x00-\x1f\x7f]", "")
    linkable = url.str.contains(_LINK_SCHEME) & ~url.str.contains(_BRACKETED_HOST) & (url.str.len_chars() <= URL_CHARS)
    url = url.map_batches(_ascii_urls, return_dtype=pl.String, is_elementwise=True)
    for char, code in _URL_ESCAPES.items():
        url = url.str.replace_all(char, code, literal=True)
    return pl.when(linkable & (url.str.len_chars() <= URL_CHARS)).then(url)


def _with_target(label: pl.Expr, target: pl.Expr) -> pl.Expr:
    """``[label](<target>)`` where ``target`` (from ``_url``) is not null, else the label alone.
    Renderers decode entities in a destination, so its ``&`` is written ``&amp;`` (``&lt;`` stays ``&lt;``)."""
    destination = target.str.replace_all("&", "&amp;", literal=True)
    return pl.when(target.is_not_null()).then(pl.format("[{}](<{}>)", label, destination)).otherwise(label)


def _one(expr: pl.Expr, value: Any) -> str:
    """Apply a column expression to one value."""
    return str(pl.DataFrame({"v": [None if value is None else str(value)]}, schema={"v": pl.String}).select(expr).item())


def md_line(value: Any) -> str:
    """``value`` as inline Markdown text that renders literally; line breaks become spaces."""
    return md_text(re.sub(r"\r\n|\r|\n", " ", str(value)))


def md_cell(value: Any) -> str:
    """``value`` as the content of a GFM table cell: escaped, line breaks as ``<br>``."""
    return _one(_cell(pl.col("v")), value)


def anchor(rank: int, prefix: str = "") -> str:
    """The id of source ``rank`` in the source list, the target of its ``[n]`` citations."""
    return f"{prefix}{_ANCHOR_PREFIX}{rank}"


def md_summary(summary: str, ranks: set[int], prefix: str = "") -> str:
    """The plain-text summary (bounded) as escaped Markdown, paragraphs kept, each known ``[n]`` a link to its source."""
    out = []
    for paragraph in summary_paragraphs(clip(summary, SUMMARY_CHARS)):
        pieces = []
        for part in paragraph:
            if isinstance(part, str):
                pieces.append(md_line(part))
            elif part in ranks:
                pieces.append(f"[\\[{part}\\]](#{anchor(part, prefix)})")
            else:
                pieces.append(f"\\[{part}\\]")
        out.append(md_block_start("".join(pieces)))
    return "\n\n".join(out)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)} min {secs:.0f} s" if minutes else f"{secs:.1f} s"


def title(run: ResearchResults) -> str:
    """The report's title, bounded: it heads the document and every PDF page."""
    return f"Research: {clip(run.topic, TITLE_CHARS)}" if run.topic else run.title


def _header(run: ResearchResults, level: int = 1) -> str:
    fields = [
        ("Topic", md_line(clip(run.topic, CELL_CHARS)) if run.topic else ""),
        ("Depth", md_line(clip(run.depth, TITLE_CHARS)) if run.depth else ""),
        ("Source", md_line(clip(run.source, TITLE_CHARS)) if run.source else ""),
        ("Date", md_line(clip(run.date, TITLE_CHARS)) if run.date else ""),
        ("Duration", _duration(run.duration)),
        ("Pages", f"{run.df.height} results: {run.count('ok')} fetched, {run.count('error')} failed"),
    ]
    lines = [f"- **{name}:** {value}" for name, value in fields if value]
    return f"{'#' * level} {md_line(title(run))}\n\n" + "\n".join(lines)


#: The results table's columns, in order, when the table has them: (column, heading, right-aligned).
_RESULT_COLUMNS = (("rank", "#", True), ("title", "Title", False), ("domain", "Domain", False),
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


def _plain(col: pl.Expr) -> pl.Expr:
    """Unescaped text: '' for null, line breaks normalised to \\n."""
    return col.cast(pl.String).fill_null("").str.replace_all(r"\r\n|\r", "\n")


def _label(df: pl.DataFrame, fallback: str) -> pl.Expr:
    """A row's title (or its URL, or ``fallback``) on one line, bounded."""
    return clip_expr(_one_line(pl.coalesce(_col(df, "title"), _col(df, "url"), pl.lit(fallback))), TITLE_CHARS)


#: Python's whitespace but the line break: GFM strips it from both ends of a table cell (mistune uses str.strip).
_CELL_SPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace() and c != "\n")


def _text_nodes(value: str) -> list[Node]:
    """Plain text as inline nodes: text runs and a ``br`` for each line break (what ``<br>`` parses to)."""
    nodes: list[Node] = []
    for i, line in enumerate(value.split("\n")):
        if i:
            nodes.append({"t": "br"})
        if line:
            nodes.append(text_node(line))
    return nodes


def _cell_node(value: str) -> Cell:
    """A table cell's PDF form: the bare string when it is one line (far less work for Typst), else nodes."""
    return value if "\n" not in value else _text_nodes(value)


class Table:
    """A table of the report, the one builder of both its forms.

    The model is each shown column's text, plain and bounded (``CELL_CHARS``; the link column's expression
    bounds itself), plus the link column's targets. ``markdown()`` writes it as a GFM pipe table, escaped
    (the .md, .html and .ipynb, and the PDF that nbconvert makes of the saved notebook); ``node()`` gives the
    PDF's table node directly, from the same model, through ``mdtree.table_node``, which holds the
    column-width and tall-row rule for every table. Parsing the Markdown gives exactly ``node()``
    (tests/test_export_parity.py).
    """

    def __init__(self, df: pl.DataFrame, columns: list[tuple[pl.Expr, str, bool]], link_column: int, url: pl.Expr) -> None:
        self.heads = [head for _, head, _ in columns]
        self.right = [right for *_, right in columns]
        self.link_column = link_column
        cells = (expr if i == link_column else clip_expr(expr, CELL_CHARS) for i, (expr, _, _) in enumerate(columns))
        self.frame = df.select(*(expr.fill_null("").str.strip_chars(_CELL_SPACE).alias(f"c{i}") for i, expr in enumerate(cells)),
                               _url(url).alias("target"))

    def markdown(self) -> str:
        """The table as a GFM pipe table: every cell escaped (``md_expr``), line breaks as ``<br>``."""
        cells = [_text(pl.col(f"c{i}")) if i == self.link_column else _cell(pl.col(f"c{i}")) for i in range(len(self.heads))]
        if self.link_column >= 0:
            cells[self.link_column] = _with_target(cells[self.link_column], pl.col("target"))
        head = "| " + " | ".join(md_cell(h) for h in self.heads) + " |\n|" + "|".join("---:" if r else "---" for r in self.right) + "|\n"
        row = pl.concat_str([pl.lit("| "), pl.concat_str(cells, separator=" | "), pl.lit(" |")])
        return head + _lines(self.frame, row)

    def node(self) -> Node:
        """The table as the PDF's table node (``mdtree.table_node``): what the parser makes of ``markdown()``."""
        link = self.link_column
        rows: list[list[Cell]] = []
        for *values, target in self.frame.iter_rows():
            row = [_cell_node(v) for v in values]
            if link >= 0 and target is not None:
                row[link] = [{"t": "link", "url": target, "c": _text_nodes(values[link])}]
            rows.append(row)
        return table_node(self.heads, rows, ["right" if r else "left" for r in self.right])


def _results(df: pl.DataFrame) -> Table:
    shown = [c for c in _RESULT_COLUMNS if c[0] in df.columns] or [(name, name, False) for name in df.columns]
    columns = []
    for name, head, right in shown:
        if name == "title":
            expr = _label(df, "")
        elif name == "status":
            code = _col(df, "http_status").cast(pl.String)
            error = (pl.col("status") == "error") & code.is_not_null()
            expr = pl.when(error).then(pl.format("{} ({})", _plain(pl.col("status")), code)).otherwise(_plain(pl.col("status")))
        else:
            expr = _plain(pl.col(name))
        columns.append((expr, head, right))
    return Table(df, columns, next((i for i, c in enumerate(shown) if c[0] == "title"), -1), _col(df, "url"))


def _failures(df: pl.DataFrame) -> Table:
    url = _col(df, "url")
    return Table(df, [(_rank(df).cast(pl.String), "#", True), (clip_expr(_one_line(url), URL_CHARS).fill_null(""), "URL", False),
                      (_plain(_col(df, "http_status")), "HTTP", True), (_plain(_col(df, "error")), "Reason", False)], 1, url)


def _sources(df: pl.DataFrame, level: int, prefix: str) -> Section:
    """The numbered source list under its heading, each item the target of its citations: its Markdown, and
    the same list as PDF nodes (what the parser makes of the Markdown) with its anchor nodes."""
    url = _col(df, "url")
    frame = df.select(_rank(df).cast(pl.String).alias("rank"), _label(df, "untitled").alias("title"),
                      clip_expr(_one_line(_col(df, "domain")), TITLE_CHARS).fill_null("").alias("domain"),
                      clip_expr(_one_line(url), URL_CHARS).alias("url"),
                      _url(url).alias("target"))
    rank = pl.col("rank")
    domain = pl.when(pl.col("domain") != "").then(pl.lit(" — ") + _text(pl.col("domain"))).otherwise(pl.lit(""))
    link = pl.when(pl.col("url").is_not_null()).then(pl.lit(" <br>") + _with_target(_text(pl.col("url")), pl.col("target"))).otherwise(pl.lit(""))
    line = pl.concat_str([pl.lit(f'- <a id="{prefix}{_ANCHOR_PREFIX}'), rank, pl.lit('"></a>**\\['), rank, pl.lit("\\]** "),
                          _text(pl.col("title")), domain, link])
    return Section(f"{'#' * level} Sources\n\n{_lines(frame, line)}",
                   lambda: _tree(level, "Sources", *_source_list(frame, prefix)))


def _source_list(frame: pl.DataFrame, prefix: str) -> tuple[list[Node], list[Node]]:
    """The source list's PDF node, and its anchor nodes."""
    items: list[list[Node]] = []
    anchors: list[Node] = []
    for number, label, where, address, target in frame.iter_rows():
        anchors.append({"t": "anchor", "id": anchor(int(number), prefix)})
        words = f" {label}" + (f" — {where}" if where else "") + (" " if address is not None else "")
        parts = [anchors[-1], {"t": "strong", "c": [text_node(f"[{number}]")]}, text_node(words)]
        if address is not None:
            parts += [{"t": "br"}, {"t": "link", "url": target, "c": _text_nodes(address)}] if target is not None \
                else [{"t": "br"}, *_text_nodes(address)]
        items.append([{"t": "span", "c": parts}])
    return [{"t": "list", "ordered": False, "start": 1, "tight": True, "items": items}], anchors


@dataclass(frozen=True)
class Section:
    """One Markdown cell of a report; ``tree``, where given, builds the PDF's nodes of the same content
    (only the PDF asks for them), sparing it parsing ``markdown`` back."""

    markdown: str
    tree: Callable[[], Tree] | None = None


def _tree(level: int, heading: str, nodes: list[Node], anchors: list[Node] | None = None) -> Tree:
    """A heading and the nodes of its body."""
    return [{"t": "h", "level": level, "c": [text_node(heading)]}, *nodes], anchors or [], []


def table_section(level: int, heading: str, table: Table) -> Section:
    """A heading and a table, in both forms."""
    return Section(f"{'#' * level} {heading}\n\n{table.markdown()}", lambda: _tree(level, heading, [table.node()]))


def report_sections(results: ExportInput, *, level: int = 2, prefix: str = "") -> list[Section]:
    """The report of a run, cell by cell: title and metadata, summary, results table, sources, failures.
    Sections are headed at ``level`` (the title one above); ``prefix`` goes before every source anchor, so
    that several reports can share one document (a batch's)."""
    run = normalize(results)
    df = run.df
    ranks = set(df.select(_rank(df)).to_series().to_list()) if df.height else set()
    heading = "#" * level
    sections = [Section(_header(run, level - 1))]
    if run.summary.strip():
        sections.append(Section(f"{heading} Summary\n\n" + md_summary(run.summary, ranks, prefix)))
    if df.height:
        sections.append(table_section(level, "Results", _results(df)))
        sections.append(_sources(df, level, prefix))
    else:
        sections.append(Section(f"{heading} Results\n\nThere were no results."))
    failed = df.with_columns(_rank(df).alias("rank")).filter(pl.col("status") == "error") if "status" in df.columns else df.clear()
    if failed.height:
        sections.append(table_section(level, "Appendix: failed pages", _failures(failed)))
    return sections


def notebook(sections: list[Section], title: str, metadata: dict[str, Any]) -> nbformat.NotebookNode:
    """The report notebook of ``sections`` (one Markdown cell each)."""
    nb: nbformat.NotebookNode = new_notebook()
    nb.cells = [new_markdown_cell(section.markdown) for section in sections]
    nb.metadata["title"] = title
    nb.metadata["torq_nb"] = metadata
    return nb


def trees(sections: list[Section]) -> dict[int, Tree]:
    """The known PDF nodes of ``sections``, by cell number (what ``typst_pdf.render_pdf`` takes)."""
    return {i: section.tree() for i, section in enumerate(sections) if section.tree is not None}


def report_notebook(run: ResearchResults, sections: list[Section]) -> nbformat.NotebookNode:
    """The notebook of a run's ``report_sections``."""
    return notebook(sections, title(run), {"report": True, "topic": run.topic, "operation_id": run.operation_id})


def build_report(results: ExportInput) -> nbformat.NotebookNode:
    """The report notebook of a run: title and metadata, summary, results table, sources, failures."""
    run = normalize(results)
    return report_notebook(run, report_sections(run))


def save_notebook(results: ExportInput, path: str | os.PathLike[str]) -> Path:
    """Write the report notebook to ``path`` (atomically) and return the path."""
    return write_text(path, nbformat.writes(build_report(results)) + "\n")
