"""The report: a run as sections, the one source of the Markdown, HTML and PDF documents.

Each ``Section`` holds one part of the report in every form: Markdown (the report notebook's cells, hence
the .md, the .ipynb and nbconvert's PDF of it), an HTML fragment (the .html report, written through the
Jinja template in ``templates/torq_html``) and, for tables and lists, the PDF's nodes. Everything that
came from a page (titles, snippets, errors, the summary's sentences) arrives as plain text and is escaped
per form, once, by ``torq_nb.export.text``: no Markdown, HTML, math, autolink or table syntax from a page
reaches a renderer. Each value is bounded first (``text.clip``), since every document lays it out; the
tables keep full values. The escaping is done with Polars expressions over whole columns, so 10,000 rows
take milliseconds.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import polars as pl

from torq_nb.export.atomic import write_text
from torq_nb.export.data import ExportInput, normalize
from torq_nb.export.style import PLAIN, ReportStyle
from torq_nb.export.text import (
    CELL_CHARS,
    SUMMARY_CHARS,
    TITLE_CHARS,
    URL_CHARS,
    clip,
    clip_expr,
    fragment_expr,
    html_expr,
    html_text,
    md_block_start,
    md_expr,
    md_text,
    summary_paragraphs,
)
from torq_nb.results import ResearchResults

if TYPE_CHECKING:  # imported where used: nbformat's import takes seconds (jsonschema), mdtree's loads nbconvert,
    import nbformat  # and an HTML report needs neither

    from torq_nb.export.mdtree import Cell, Node, Tree

_TEMPLATES = Path(__file__).parent / "templates"

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


def _summary_html(paragraphs: list[list[str | int]], ranks: set[int], prefix: str) -> str:
    """The summary's paragraphs as HTML, each known ``[n]`` a link to its source."""
    return "\n".join("<p>" + "".join(
        html_text(part) if isinstance(part, str)
        else f'<a class="cite" href="#{anchor(part, prefix)}">[{part}]</a>' if part in ranks else f"[{part}]"
        for part in paragraph) + "</p>" for paragraph in paragraphs)


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


def duration(seconds: float | None) -> str:
    """A run's duration as a reader says it ("4.2 s", "3 min 5 s"); '' if unknown."""
    if seconds is None:
        return ""
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)} min {secs:.0f} s" if minutes else f"{secs:.1f} s"


def human_date(value: str) -> str:
    """An ISO-8601 date or date-time as a reader says it: "2 December 2026, 03:17 UTC" (a time with a zone is
    shown in UTC, one without a zone as it is); text that is not ISO-8601 is returned as it is."""
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return value
    if len(value.strip()) <= 10:  # a date alone
        return f"{when.day} {when:%B %Y}"
    zone = ""
    if when.tzinfo is not None:
        when, zone = when.astimezone(timezone.utc), " UTC"
    return f"{when.day} {when:%B %Y, %H:%M}{zone}"


def title(run: ResearchResults, style: ReportStyle = PLAIN) -> str:
    """The report's title, bounded: it heads the document and every PDF page (``style.title`` if given)."""
    if style.title:
        return clip(style.title, TITLE_CHARS)
    return f"Research: {clip(run.topic, TITLE_CHARS)}" if run.topic else run.title


@dataclass(frozen=True)
class Fact:
    """One line of a report's header: a name and its plain-text value; ``iso`` is the machine-readable form
    of a date (HTML's ``<time datetime>``)."""

    name: str
    value: str
    iso: str = ""


def _facts_markdown(facts: list[Fact]) -> str:
    return "\n".join(f"- **{fact.name}:** {md_line(fact.value)}" for fact in facts)


def _facts_html(facts: list[Fact]) -> str:
    """The header's facts as a description list; dates and durations never break across lines."""
    def value(fact: Fact) -> str:
        if fact.iso:
            return f'<time class="whole" datetime="{html_text(fact.iso)}">{html_text(fact.value)}</time>'
        return html_text(fact.value)
    rows = "".join(f"<div><dt>{html_text(fact.name)}</dt><dd>{value(fact)}</dd></div>" for fact in facts)
    return f'<dl class="facts">{rows}</dl>'


def header_section(heading: str, author: str | None, facts: list[Fact], level: int = 1) -> Section:
    """A report's title, author line and facts. Its HTML is the facts alone: the template writes the title,
    author and logo (``templates/torq_html``)."""
    by = f"{md_block_start(md_line(clip(author, TITLE_CHARS)))}\n\n" if author else ""
    facts = [Fact(f.name, clip(f.value, CELL_CHARS), f.iso) for f in facts if f.value]
    return Section(lambda: f"{'#' * level} {md_line(heading)}\n\n{by}{_facts_markdown(facts)}", lambda: _facts_html(facts))


def date_fact(value: str) -> Fact:
    """The header's Date line: the human date, with the ISO form kept for HTML."""
    shown = human_date(value)
    return Fact("Date", clip(shown, TITLE_CHARS), value if shown != value else "")


def _header(run: ResearchResults, level: int, style: ReportStyle) -> Section:
    ok, failed, snippets, cancelled = (run.count(s) for s in ("ok", "error", "snippet", "cancelled"))
    pages = f"{run.df.height} results: {ok} fetched, {failed} failed" + (f", {snippets} snippets only" if snippets else "") \
        + (f", {cancelled} not read (the run stopped)" if cancelled else "")
    state = run.progress.state if run.progress is not None else "complete"
    unfinished = [Fact("Status", f"{state} before it finished: these are its partial results"
                               + ("" if run.summary.strip() else ", with no summary"))] if state in ("cancelled", "failed") else []
    return header_section(title(run, style), style.author, [
        Fact("Topic", run.topic), *unfinished, Fact("Depth", clip(run.depth, TITLE_CHARS)),
        Fact("Source", clip(run.source, TITLE_CHARS)), date_fact(run.date), Fact("Duration", duration(run.duration)),
        Fact("Pages", pages)], level)


@dataclass(frozen=True)
class Column:
    """A table column: its cells' plain text (an expression), its heading, and how it lays out. ``number``:
    right-aligned and sorted as a number; ``whole``: never broken across lines (domains, dates, statuses);
    ``url``: an address, broken only after its ``/``, ``?``, ``#``, ``=`` and ``&``; ``prose``: sentences (snippets,
    reasons), given room to read in a narrow window."""

    expr: pl.Expr
    head: str
    number: bool = False
    whole: bool = False
    url: bool = False
    prose: bool = False

    @property
    def css(self) -> str:
        """The HTML class attribute of its cells (the template's stylesheet gives the layout)."""
        flags = (("num", self.number), ("whole", self.whole), ("url", self.url), ("prose", self.prose))
        names = " ".join(name for name, on in flags if on)
        return f' class="{names}"' if names else ""


#: The results table's columns, in order, when the table has them, with their heading and layout.
_RESULT_COLUMNS = {"rank": Column(pl.lit(None), "#", number=True), "title": Column(pl.lit(None), "Title"),
                   "domain": Column(pl.lit(None), "Domain", whole=True), "status": Column(pl.lit(None), "Status", whole=True),
                   "word_count": Column(pl.lit(None), "Words", number=True),
                   "published": Column(pl.lit(None), "Published", whole=True),
                   "snippet": Column(pl.lit(None), "Snippet", prose=True)}


def _col(df: pl.DataFrame, name: str) -> pl.Expr:
    return pl.col(name) if name in df.columns else pl.lit(None, dtype=pl.String)


def _rank(df: pl.DataFrame) -> pl.Expr:
    """Each row's number: its rank, or its position when there is no rank."""
    position = pl.int_range(1, pl.len() + 1)
    return pl.coalesce(pl.col("rank").cast(pl.Int64, strict=False), position) if "rank" in df.columns else position


def _lines(df: pl.DataFrame, line: pl.Expr) -> str:
    return str(df.select(line.str.join("\n")).item()) if df.height else ""


def _plain(col: pl.Expr) -> pl.Expr:
    """Unescaped text: '' for null, line breaks normalised to \\n."""
    return col.cast(pl.String).fill_null("").str.replace_all(r"\r\n|\r", "\n")


def _label(df: pl.DataFrame, fallback: str) -> pl.Expr:
    """A row's title (or its URL, or ``fallback``) on one line, bounded."""
    return clip_expr(_one_line(pl.coalesce(_col(df, "title"), _col(df, "url"), pl.lit(fallback))), TITLE_CHARS)


def _html_url_text(escaped: pl.Expr) -> pl.Expr:
    """An escaped address in pieces that never break (the stylesheet's ``.url span``), each ending after a ``//``,
    ``/``, ``?``, ``=``, ``&`` or ``#`` (not the ``#`` of an entity): a long URL wraps only there, never inside a
    host, a word or at a hyphen of its own."""
    pieces = escaped.str.replace_all(r"(//|[/?=]|&amp;|[^&]#)", "$1</span><span>")
    return pl.concat_str([pl.lit("<span>"), pieces, pl.lit("</span>")])


def _html_link(label: pl.Expr, target: pl.Expr) -> pl.Expr:
    """``<a href=target>label</a>`` where ``target`` (from ``_url``) is not null, else the label alone."""
    link = pl.concat_str([pl.lit('<a href="'), html_expr(target), pl.lit('">'), label, pl.lit("</a>")])
    return pl.when(target.is_not_null()).then(link).otherwise(label)


#: Python's whitespace but the line break: GFM strips it from both ends of a table cell (mistune uses str.strip).
_CELL_SPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace() and c != "\n")


def _text_nodes(value: str) -> list[Node]:
    """Plain text as inline nodes: text runs and a ``br`` for each line break (what ``<br>`` parses to)."""
    from torq_nb.export.mdtree import text as text_node

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
    """A table of the report, the one builder of its three forms.

    The model is each shown column's text, plain and bounded (``CELL_CHARS``; the link column's expression
    bounds itself), plus the link column's targets. ``markdown()`` writes it as a GFM pipe table, escaped
    (the .md and .ipynb, and the PDF that nbconvert makes of the saved notebook); ``html()`` as an HTML table
    (the .html report: sortable and filterable there by the template's script); ``node()`` gives the PDF's
    table node directly, from the same model, through ``mdtree.table_node``, which holds the column-width and
    tall-row rule for every table. Parsing the Markdown gives exactly ``node()`` (tests/test_export_parity.py).
    """

    def __init__(self, df: pl.DataFrame, columns: list[Column], link_column: int, url: pl.Expr) -> None:
        self.columns = columns
        self.heads = [column.head for column in columns]
        self.right = [column.number for column in columns]
        self.link_column = link_column
        cells = (c.expr if i == link_column else clip_expr(c.expr, CELL_CHARS) for i, c in enumerate(columns))
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

    def html(self) -> str:
        """The table as HTML: every cell escaped (``html_expr``), line breaks as ``<br>``, the link column's
        cells links; number columns say so (``data-type``) for the template's sorting."""
        cells = []
        for i, column in enumerate(self.columns):
            text = html_expr(pl.col(f"c{i}"))
            text = _html_url_text(text) if column.url else text.str.replace_all("\n", "<br>", literal=True)
            if i == self.link_column:
                text = _html_link(text, pl.col("target"))
            cells += [pl.lit(f"<td{column.css}>"), text, pl.lit("</td>")]
        heads = "".join(f'<th scope="col"{c.css}{" data-type=number" if c.number else ""}>{html_text(c.head)}</th>'
                        for c in self.columns)
        rows = _lines(self.frame, pl.concat_str([pl.lit("<tr>"), *cells, pl.lit("</tr>")]))
        return f'<div class="table"><table>\n<thead><tr>{heads}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table></div>'

    def node(self) -> Node:
        """The table as the PDF's table node (``mdtree.table_node``): what the parser makes of ``markdown()``."""
        from torq_nb.export.mdtree import table_node

        link = self.link_column
        rows: list[list[Cell]] = []
        for *values, target in self.frame.iter_rows():
            row = [_cell_node(v) for v in values]
            if link >= 0 and target is not None:
                row[link] = [{"t": "link", "url": target, "c": _text_nodes(values[link])}]
            rows.append(row)
        return table_node(self.heads, rows, ["right" if r else "left" for r in self.right])


def _results(df: pl.DataFrame) -> Table:
    shown = [name for name in _RESULT_COLUMNS if name in df.columns]
    columns = []
    for name in shown:
        if name == "title":
            expr = _label(df, "")
        elif name == "status":
            code = _col(df, "http_status").cast(pl.String)
            error = (pl.col("status") == "error") & code.is_not_null()
            expr = pl.when(error).then(pl.format("{} ({})", _plain(pl.col("status")), code)).otherwise(_plain(pl.col("status")))
        elif name == "snippet":
            expr = fragment_expr(_plain(pl.col(name)))
        else:
            expr = _plain(pl.col(name))
        columns.append(replace(_RESULT_COLUMNS[name], expr=expr))
    if not shown:
        columns = [Column(_plain(pl.col(name)), name) for name in df.columns]
    return Table(df, columns, shown.index("title") if "title" in shown else -1, _col(df, "url"))


def _failures(df: pl.DataFrame) -> Table:
    url = _col(df, "url")
    return Table(df, [Column(_rank(df).cast(pl.String), "#", number=True),
                      Column(clip_expr(_one_line(url), URL_CHARS).fill_null(""), "URL", url=True),
                      Column(_plain(_col(df, "http_status")), "HTTP", number=True),
                      Column(_plain(_col(df, "error")), "Reason", prose=True)], 1, url)


def _sources(df: pl.DataFrame, level: int, prefix: str) -> Section:
    """The numbered source list under its heading, each item the target of its citations: its Markdown, its
    HTML, and the same list as PDF nodes (what the parser makes of the Markdown) with its anchor nodes."""
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

    def html() -> str:
        where = pl.when(pl.col("domain") != "").then(pl.concat_str([pl.lit(' — <span class="whole">'), html_expr(pl.col("domain")),
                                                                      pl.lit("</span>")])).otherwise(pl.lit(""))
        address = _html_link(_html_url_text(html_expr(pl.col("url"))), pl.col("target"))
        address = pl.when(pl.col("url").is_not_null()).then(pl.concat_str([pl.lit('<br><span class="url">'), address,
                                                                            pl.lit("</span>")])).otherwise(pl.lit(""))
        item = pl.concat_str([pl.lit(f'<li id="{html_text(prefix + _ANCHOR_PREFIX)}'), rank, pl.lit('"><strong>['), rank,
                              pl.lit("]</strong> "), html_expr(pl.col("title")), where, address, pl.lit("</li>")])
        return f'{_html_heading(level, "Sources")}\n<ul class="sources">\n{_lines(frame, item)}\n</ul>'

    return Section(lambda: f"{'#' * level} Sources\n\n{_lines(frame, line)}", html,
                   lambda: _tree(level, "Sources", *_source_list(frame, prefix)))


def _source_list(frame: pl.DataFrame, prefix: str) -> tuple[list[Node], list[Node]]:
    """The source list's PDF node, and its anchor nodes."""
    from torq_nb.export.mdtree import text as text_node

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
    """One part of a report, in each form, each built only when a document asks for it: its Markdown (one cell
    of the report notebook), its HTML fragment and, where given, the PDF's nodes of the same content (sparing
    the PDF parsing the Markdown back)."""

    build_markdown: Callable[[], str]
    html: Callable[[], str]
    tree: Callable[[], Tree] | None = None

    @cached_property
    def markdown(self) -> str:
        """The section as Markdown (built once)."""
        return self.build_markdown()


def _html_heading(level: int, heading: str) -> str:
    return f"<h{min(level, 6)}>{html_text(heading)}</h{min(level, 6)}>"


def _tree(level: int, heading: str, nodes: list[Node], anchors: list[Node] | None = None) -> Tree:
    """A heading and the nodes of its body."""
    from torq_nb.export.mdtree import text as text_node

    return [{"t": "h", "level": level, "c": [text_node(heading)]}, *nodes], anchors or [], []


def table_section(level: int, heading: str, table: Table) -> Section:
    """A heading and a table, in every form."""
    return Section(lambda: f"{'#' * level} {heading}\n\n{table.markdown()}", lambda: f"{_html_heading(level, heading)}\n{table.html()}",
                   lambda: _tree(level, heading, [table.node()]))


def text_section(level: int, heading: str, text: str) -> Section:
    """A heading and a paragraph of plain text, in every form (the PDF's from the Markdown)."""
    return Section(lambda: f"{'#' * level} {md_line(heading)}\n\n{md_block_start(md_line(text))}",
                   lambda: f"{_html_heading(level, heading)}\n<p>{html_text(text)}</p>")


def report_sections(results: ExportInput, *, level: int = 2, prefix: str = "", style: ReportStyle = PLAIN) -> list[Section]:
    """The report of a run, part by part: title and facts, summary, results table, the sources the summary
    cites, failures. Sections are headed at ``level`` (the title one above); ``prefix`` goes before every source
    anchor, so that several reports can share one document (a batch's); ``style`` gives the title and author."""
    run = normalize(results)
    df = run.df
    ranks = set(df.select(_rank(df)).to_series().to_list()) if df.height else set()
    heading = "#" * level
    sections = [_header(run, level - 1, style)]
    summary = run.summary
    paragraphs = summary_paragraphs(clip(summary, SUMMARY_CHARS))
    cited = {part for paragraph in paragraphs for part in paragraph if isinstance(part, int)} & ranks
    if summary.strip():
        sections.append(Section(lambda: f"{heading} Summary\n\n" + md_summary(summary, cited, prefix),
                                lambda: f"{_html_heading(level, 'Summary')}\n{_summary_html(paragraphs, cited, prefix)}"))
    if df.height:
        sections.append(table_section(level, "Results", _results(df)))
        if cited:
            sections.append(_sources(df.filter(_rank(df).is_in(sorted(cited))), level, prefix))
    else:
        sections.append(text_section(level, "Results", "There were no results."))
    failed = df.with_columns(_rank(df).alias("rank")).filter(pl.col("status") == "error") if "status" in df.columns else df.clear()
    if failed.height:
        sections.append(table_section(level, "Appendix: failed pages", _failures(failed)))
    return sections


def notebook(sections: list[Section], title: str, metadata: dict[str, Any]) -> nbformat.NotebookNode:
    """The report notebook of ``sections`` (one Markdown cell each)."""
    from nbformat.v4 import new_markdown_cell, new_notebook

    nb: nbformat.NotebookNode = new_notebook()
    nb.cells = [new_markdown_cell(section.markdown) for section in sections]
    nb.metadata["title"] = title
    nb.metadata["torq_nb"] = metadata
    return nb


def trees(sections: list[Section]) -> dict[int, Tree]:
    """The known PDF nodes of ``sections``, by cell number (what ``typst_pdf.render_pdf`` takes)."""
    return {i: section.tree() for i, section in enumerate(sections) if section.tree is not None}


def report_notebook(run: ResearchResults, sections: list[Section], style: ReportStyle = PLAIN) -> nbformat.NotebookNode:
    """The notebook of a run's ``report_sections``."""
    return notebook(sections, title(run, style), {"report": True, "topic": run.topic, "operation_id": run.operation_id})


def build_report(results: ExportInput, style: ReportStyle = PLAIN) -> nbformat.NotebookNode:
    """The report notebook of a run: title and facts, summary, results table, sources, failures."""
    run = normalize(results)
    return report_notebook(run, report_sections(run, style=style), style)


def save_notebook(results: ExportInput, path: str | os.PathLike[str]) -> Path | str:
    """Write the report notebook to ``path`` (atomically) and return the path."""
    import nbformat

    return write_text(path, nbformat.writes(build_report(results)) + "\n")


# --- The HTML document: the sections' fragments in a Jinja template (templates/torq_html/index.html.j2).

_LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}


@cache
def _asset(name: str) -> str:
    """A file of the default template's folder (its stylesheet and script), read once."""
    return (_TEMPLATES / "torq_html" / name).read_text(encoding="utf-8")


@cache
def _environment(folder: Path | None) -> Any:
    """A Jinja environment with autoescape on, finding the package's templates (``torq_html/index.html.j2``)
    and, first, those in ``folder`` (the user's template's own folder). Kept: it keeps its compiled templates,
    and reloads one whose file changed."""
    import jinja2

    folders = [str(folder), str(_TEMPLATES)] if folder is not None else [str(_TEMPLATES)]
    return jinja2.Environment(loader=jinja2.FileSystemLoader(folders), autoescape=True, keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined)


def logo_uri(logo: Path) -> str:
    """The logo file as a data: URI, for an ``<img src>``: an SVG shown this way is an image, so no script in it
    can run, and the document needs no other file."""
    return f"data:{_LOGO_TYPES[logo.suffix.lower()]};base64,{base64.b64encode(logo.read_bytes()).decode('ascii')}"


def html_document(sections: list[Section], heading: str, style: ReportStyle = PLAIN) -> str:
    """The HTML report of ``sections`` (the first is the header: its fragment is the facts), rendered by the
    user's template (``style.template_for("html")``) or the package's; the variables it gets are in
    docs/templates.md ("HTML")."""
    import jinja2
    from markupsafe import Markup

    template_file = style.template_for("html")
    nonce = secrets.token_urlsafe(18)
    csp = (f"default-src 'none'; img-src data:; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
           "base-uri 'none'; form-action 'none'")
    try:
        env = _environment(template_file.parent.resolve() if template_file is not None else None)
        template = env.get_template(template_file.name if template_file is not None else "torq_html/index.html.j2")
        # Markup marks what is HTML already: fragments escaped by text.py and the template's own files; any other
        # value is plain text, escaped by autoescape.
        return str(template.render(
            title=heading, author=clip(style.author, TITLE_CHARS) if style.author else None,
            logo=logo_uri(style.logo) if style.logo is not None else None,
            facts=Markup(sections[0].html()), sections=[Markup(section.html()) for section in sections[1:]],
            css=Markup(_asset("report.css")), script=Markup(_asset("report.js")), nonce=nonce, csp=csp))
    except jinja2.TemplateError as exc:
        if template_file is None:
            raise
        where = f" (line {exc.lineno})" if isinstance(exc, jinja2.TemplateSyntaxError) else ""
        raise ValueError(f"the HTML template {template_file}{where} could not be rendered: {exc}. Its variables and the "
                         "default template's blocks (extend 'torq_html/index.html.j2') are listed in docs/templates.md, "
                         "section HTML") from None

