"""The report notebook: a run as nbformat Markdown cells, the one source of Markdown, HTML and PDF.

Everything that came from a page (titles, snippets, errors, the summary's sentences) arrives as plain
text and is escaped here, once, by ``torq_nb.export.text``: no Markdown, HTML, math, autolink or table
syntax from a page reaches a renderer. Each value is bounded first (``text.clip``), since every
document lays it out; the tables keep full values. The escaping is done with Polars expressions over
whole columns, so 10,000 rows take milliseconds.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import nbformat
import polars as pl
from nbformat.v4 import new_markdown_cell, new_notebook

from torq_nb.export.atomic import write_text
from torq_nb.export.data import ExportInput, RunData, normalize
from torq_nb.export.mdtree import TALL_CHARS, TALL_LINES, column_width, tree_metadata
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

_ANCHOR_PREFIX = "source-"
#: Only these schemes become links; anything else (javascript:, data:, file:) stays text.
_LINK_SCHEME = r"^(?i)(https?|ftp)://\S|^(?i)mailto:\S"
#: Characters percent-encoded in link destinations: they would end the link, split a table row,
#: or open math; control characters are dropped.
_URL_ESCAPES = {" ": "%20", "<": "%3C", ">": "%3E", "|": "%7C", "\\": "%5C", '"': "%22", "`": "%60", "$": "%24"}


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
    """A link destination, percent-encoded where Markdown needs it; null unless http(s), ftp or mailto
    and at most ``URL_CHARS`` long (a longer URL is shown, clipped, but not linked)."""
    url = col.cast(pl.String).str.strip_chars().str.replace_all(r"[\x00-\x1f\x7f]", "")
    for char, code in _URL_ESCAPES.items():
        url = url.str.replace_all(char, code, literal=True)
    return pl.when(url.str.contains(_LINK_SCHEME) & (url.str.len_chars() <= URL_CHARS)).then(url)


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


def anchor(rank: int) -> str:
    """The id of source ``rank`` in the source list, the target of its ``[n]`` citations."""
    return f"{_ANCHOR_PREFIX}{rank}"


def md_summary(summary: str, ranks: set[int]) -> str:
    """The plain-text summary (bounded) as escaped Markdown, paragraphs kept, each known ``[n]`` a link to its source."""
    out = []
    for paragraph in summary_paragraphs(clip(summary, SUMMARY_CHARS)):
        pieces = []
        for part in paragraph:
            if isinstance(part, str):
                pieces.append(md_line(part))
            elif part in ranks:
                pieces.append(f"[\\[{part}\\]](#{anchor(part)})")
            else:
                pieces.append(f"\\[{part}\\]")
        out.append(md_block_start("".join(pieces)))
    return "\n\n".join(out)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)} min {secs:.0f} s" if minutes else f"{secs:.1f} s"


def title(run: RunData) -> str:
    """The report's title, bounded: it heads the document and every PDF page."""
    return f"Research: {clip(run.topic, TITLE_CHARS)}" if run.topic else run.title


def _header(run: RunData) -> str:
    fields = [
        ("Topic", md_line(clip(run.topic, CELL_CHARS)) if run.topic else ""),
        ("Depth", md_line(clip(run.depth, TITLE_CHARS)) if run.depth else ""),
        ("Source", md_line(clip(run.source, TITLE_CHARS)) if run.source else ""),
        ("Date", md_line(clip(run.date, TITLE_CHARS)) if run.date else ""),
        ("Duration", _duration(run.duration)),
        ("Pages", f"{run.df.height} results: {run.count('ok')} fetched, {run.count('error')} failed"),
    ]
    lines = [f"- **{name}:** {value}" for name, value in fields if value]
    return f"# {md_line(title(run))}\n\n" + "\n".join(lines)


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


class _Table:
    """A table's text, unescaped, one column per shown column plus its link targets.

    The Markdown escapes it; the PDF's tree (``mdtree`` nodes) takes it as it is. Every cell is bounded
    here (``CELL_CHARS``; the link column's own expression bounds it), so no document lays out more.
    """

    def __init__(self, df: pl.DataFrame, columns: list[tuple[pl.Expr, str, bool]], link_column: int, url: pl.Expr) -> None:
        self.heads = [head for _, head, _ in columns]
        self.right = [right for *_, right in columns]
        self.link_column = link_column
        cells = (expr if i == link_column else clip_expr(expr, CELL_CHARS) for i, (expr, _, _) in enumerate(columns))
        self.frame = df.select(*(expr.alias(f"c{i}") for i, expr in enumerate(cells)), _url(url).alias("target"))

    def markdown(self) -> str:
        cells = [_text(pl.col(f"c{i}")) if i == self.link_column else _cell(pl.col(f"c{i}")) for i in range(len(self.heads))]
        if self.link_column >= 0:
            cells[self.link_column] = _with_target(cells[self.link_column], pl.col("target"))
        head = "| " + " | ".join(md_cell(h) for h in self.heads) + " |\n|" + "|".join("---:" if r else "---" for r in self.right) + "|\n"
        row = pl.concat_str([pl.lit("| "), pl.concat_str(cells, separator=" | "), pl.lit(" |")])
        return head + _lines(self.frame, row)

    def tree(self) -> str:
        """The table node as JSON text (see ``mdtree.table_node``), built column-wise."""
        ncols = len(self.heads)
        texts = [pl.col(f"c{i}") for i in range(ncols)]
        cells = [_linked(c, pl.col("target")) if i == self.link_column else _json(c) for i, c in enumerate(texts)]
        rows = self.frame.select(pl.concat_str([pl.lit("["), pl.concat_str(cells, separator=","), pl.lit("]")]))
        sample = self.frame.head(500).select(c.sort_by(c.str.len_chars(), descending=True).first() for c in texts).row(0)
        longest = [max(h, s or "", key=len) for h, s in zip(self.heads, sample, strict=True)]
        tall = self.frame.select(pl.arg_where(pl.any_horizontal(
            (c.str.len_chars() > TALL_CHARS) | (c.str.count_matches("\n", literal=True) > TALL_LINES) for c in texts)))
        node = {"t": "table", "head": self.heads, "widths": [column_width(s) for s in longest],
                "align": ["right" if r else "left" for r in self.right], "tall": tall.to_series().to_list()}
        return json.dumps(node, ensure_ascii=False)[:-1] + ', "rows": [' + ",".join(rows.to_series().to_list()) + "]}"


def _json(col: pl.Expr) -> pl.Expr:
    """Each value as a JSON string literal (null as null), so trees are built as JSON text column-wise."""
    return pl.struct(col.alias("v")).struct.json_encode().str.slice(5).str.strip_suffix("}")


def _link_node(label: pl.Expr, target: pl.Expr) -> pl.Expr:
    """A node (JSON text): a link with the label where there is a target, else the label as text."""
    text = pl.concat_str([pl.lit('{"t":"text","v":'), _json(label), pl.lit("}")])
    return pl.when(target.is_not_null()).then(pl.concat_str([pl.lit('{"t":"link","url":'), _json(target), pl.lit(',"c":['), text, pl.lit("]}")])).otherwise(text)


def _linked(label: pl.Expr, target: pl.Expr) -> pl.Expr:
    """A table cell (JSON text): the link node where there is a target, else the bare label."""
    return pl.when(target.is_not_null()).then(pl.lit("[") + _link_node(label, target) + pl.lit("]")).otherwise(_json(label))


def _results(df: pl.DataFrame) -> _Table:
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
    return _Table(df, columns, next((i for i, c in enumerate(shown) if c[0] == "title"), -1), _col(df, "url"))


def _failures(df: pl.DataFrame) -> _Table:
    url = _col(df, "url")
    return _Table(df, [(_rank(df).cast(pl.String), "#", True), (clip_expr(_one_line(url), URL_CHARS).fill_null(""), "URL", False),
                       (_plain(_col(df, "http_status")), "HTTP", True), (_plain(_col(df, "error")), "Reason", False)], 1, url)


def _sources(df: pl.DataFrame) -> tuple[str, str]:
    """The numbered source list, each item the target of its citations: Markdown and tree."""
    url = _col(df, "url")
    frame = df.select(_rank(df).cast(pl.String).alias("rank"), _label(df, "untitled").alias("title"),
                      clip_expr(_one_line(_col(df, "domain")), TITLE_CHARS).fill_null("").alias("domain"),
                      clip_expr(_one_line(url), URL_CHARS).alias("url"),
                      _url(url).alias("target"))
    rank = pl.col("rank")
    domain = pl.when(pl.col("domain") != "").then(pl.lit(" — ") + _text(pl.col("domain"))).otherwise(pl.lit(""))
    link = pl.when(pl.col("url").is_not_null()).then(pl.lit(" <br>") + _with_target(_text(pl.col("url")), pl.col("target"))).otherwise(pl.lit(""))
    line = pl.concat_str([pl.lit(f'- <a id="{_ANCHOR_PREFIX}'), rank, pl.lit('"></a>**\\['), rank, pl.lit("\\]** "),
                          _text(pl.col("title")), domain, link])
    address = pl.col("url").is_not_null()
    words = pl.concat_str([pl.lit(" "), pl.col("title"), pl.when(pl.col("domain") != "").then(pl.lit(" — ") + pl.col("domain")).otherwise(pl.lit("")),
                           pl.when(address).then(pl.lit(" ")).otherwise(pl.lit(""))])
    url_part = pl.when(address).then(pl.lit(',{"t":"br"},') + _link_node(pl.col("url"), pl.col("target")))
    item = pl.concat_str([pl.lit(f'[{{"t":"span","c":[{{"t":"anchor","id":"{_ANCHOR_PREFIX}'), rank, pl.lit('"},{"t":"strong","c":[{"t":"text","v":"['),
                          rank, pl.lit(']"}]},{"t":"text","v":'), _json(words), pl.lit("}"), url_part.fill_null(""), pl.lit("]}]")])
    items = ",".join(frame.select(item).to_series().to_list())
    tree = '{"t":"list","ordered":false,"start":1,"tight":true,"items":[' + items + "]}"
    return _lines(frame, line), tree


def _cell_with_tree(heading: str, body: str, node_json: str) -> nbformat.NotebookNode:
    """A Markdown cell of a heading and a body, carrying its tree so that the PDF need not parse it."""
    source = f"## {heading}\n\n{body}"
    tree = "[" + json.dumps({"t": "h", "level": 2, "c": [{"t": "text", "v": heading}]}) + "," + node_json + "]"
    cell: nbformat.NotebookNode = new_markdown_cell(source, metadata={"torq_nb": tree_metadata(source, tree)})
    return cell


def build_report(results: ExportInput | RunData) -> nbformat.NotebookNode:
    """The report notebook of a run: title and metadata, summary, results table, sources, failures."""
    run = normalize(results)
    df = run.df
    ranks = set(df.select(_rank(df)).to_series().to_list()) if df.height else set()

    nb: nbformat.NotebookNode = new_notebook()
    nb.cells = [new_markdown_cell(_header(run))]
    if run.summary.strip():
        nb.cells.append(new_markdown_cell("## Summary\n\n" + md_summary(run.summary, ranks)))
    if df.height:
        table = _results(df)
        nb.cells.append(_cell_with_tree("Results", table.markdown(), table.tree()))
        nb.cells.append(_cell_with_tree("Sources", *_sources(df)))
    else:
        nb.cells.append(new_markdown_cell("## Results\n\nThere were no results."))
    failed = df.with_columns(_rank(df).alias("rank")).filter(pl.col("status") == "error") if "status" in df.columns else df.clear()
    if failed.height:
        table = _failures(failed)
        nb.cells.append(_cell_with_tree("Appendix: failed pages", table.markdown(), table.tree()))

    nb.metadata["title"] = title(run)
    nb.metadata["torq_nb"] = {"report": True, "topic": run.topic, "operation_id": run.operation_id}
    return nb


def save_notebook(results: ExportInput | RunData, path: str | os.PathLike[str]) -> Path:
    """Write the report notebook to ``path`` (atomically) and return the path."""
    return write_text(path, nbformat.writes(build_report(results)) + "\n")
