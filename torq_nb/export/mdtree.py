"""Markdown (and simple HTML tables) to a small JSON tree that the Typst template renders as text.

The tree holds only strings, numbers and node types; the template never evaluates any of it as
markup, so nothing a notebook or a web page contains can become Typst code.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from html.parser import HTMLParser
from typing import Any, cast

import mistune

Node = dict[str, Any]
#: A table cell: plain text, or inline nodes.
Cell = str | list[Node]
#: A Markdown cell as nodes: its blocks, and among them its anchor nodes and internal links (ref nodes).
Tree = tuple[list[Node], list[Node], list[Node]]
#: Resolves an image reference (``attachment:x.png`` or a URL) to a file in the Typst root, or None.
ImageResolver = Callable[[str], "Node | None"]

#: Text that holds none of these cannot contain inline Markdown (escapes, code, emphasis, links,
#: HTML, entities, strikethrough, math, line breaks or autolinks).
_INLINE_SYNTAX = re.compile(r"[\\`*_\[\]!<&~$\n]|://|www\.|@")


class _InlineParser(mistune.InlineParser):
    """mistune's inline parser, with plain text (most table cells) returned as one token at once."""

    def __call__(self, s: str, env: Any) -> list[dict[str, Any]]:
        if not _INLINE_SYNTAX.search(s):
            return [{"type": "text", "raw": s}]
        return super().__call__(s, env)


_parse = mistune.Markdown(renderer=None, inline=_InlineParser(), plugins=[
    mistune.plugins.import_plugin(name) for name in ("table", "strikethrough", "url", "math")])
_ANCHOR = re.compile(r"""<a\s+(?:id|name)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_LINK_SCHEMES = ("http://", "https://", "ftp://", "mailto:")


def text(value: str) -> Node:
    return {"t": "text", "v": value}


class _Converter:
    """One Markdown document's conversion; remembers anchors and internal links for checking."""

    def __init__(self, images: ImageResolver | None) -> None:
        self.images = images
        self.anchors: list[Node] = []
        self.refs: list[Node] = []

    def blocks(self, tokens: list[dict[str, Any]]) -> list[Node]:
        return [node for token in tokens if (node := self.block(token)) is not None]

    def inlines(self, tokens: list[dict[str, Any]]) -> list[Node]:
        out: list[Node] = []
        for token in tokens:
            for node in self.inline(token):
                if node["t"] == "text" and out and out[-1]["t"] == "text":
                    out[-1] = text(out[-1]["v"] + node["v"])  # one node per run of text: less work for Typst
                else:
                    out.append(node)
        return out

    def block(self, tok: dict[str, Any]) -> Node | None:
        kind = tok["type"]
        attrs = tok.get("attrs", {})
        if kind == "paragraph":
            return {"t": "p", "c": self.inlines(tok["children"])}
        if kind == "block_text":
            return {"t": "span", "c": self.inlines(tok["children"])}
        if kind == "heading":
            return {"t": "h", "level": int(attrs.get("level", 1)), "c": self.inlines(tok["children"])}
        if kind == "list":
            items = [self.blocks(item.get("children", [])) for item in tok["children"]]
            return {"t": "list", "ordered": bool(attrs.get("ordered")), "start": int(attrs.get("start") or 1),
                    "tight": bool(tok.get("tight", True)), "items": items}
        if kind == "block_quote":
            return {"t": "quote", "c": self.blocks(tok["children"])}
        if kind == "block_code":
            lang = str(attrs.get("info") or "").split(" ")[0]
            return {"t": "codeblock", "v": tok["raw"].rstrip("\n"), "lang": lang}
        if kind == "block_math":
            return {"t": "codeblock", "v": tok["raw"], "lang": ""}
        if kind == "thematic_break":
            return {"t": "hr"}
        if kind == "block_html":
            return self.html_block(tok["raw"])
        if kind == "table":
            return self.table(tok)
        return None  # blank_line and anything unknown

    def inline(self, tok: dict[str, Any]) -> list[Node]:
        kind = tok["type"]
        if kind == "text":  # mistune leaves entities (&lt;, &amp;, &#36;) in the text: decode them as renderers do
            return [text(html.unescape(tok["raw"]) if "&" in tok["raw"] else tok["raw"])]
        if kind in ("emphasis", "strong", "strikethrough"):
            return [{"t": {"emphasis": "em", "strong": "strong", "strikethrough": "strike"}[kind],
                     "c": self.inlines(tok["children"])}]
        if kind in ("codespan", "inline_math"):
            return [{"t": "code", "v": tok["raw"]}]
        if kind == "linebreak":
            return [{"t": "br"}]
        if kind == "softbreak":
            return [text(" ")]
        if kind == "link":
            return [self.link(tok["attrs"].get("url", ""), self.inlines(tok["children"]))]
        if kind == "image":
            return self.image(tok)
        if kind == "inline_html":
            return self.html_inline(tok["raw"])
        return [text(tok.get("raw", ""))] if tok.get("raw") else self.inlines(tok.get("children", []))

    def link(self, url: str, body: list[Node]) -> Node:
        if url.startswith("#") and len(url) > 1:
            node = {"t": "ref", "id": url[1:], "c": body}
            self.refs.append(node)
            return node
        if url.lower().startswith(_LINK_SCHEMES):
            return {"t": "link", "url": url, "c": body}
        return {"t": "span", "c": body}

    def image(self, tok: dict[str, Any]) -> list[Node]:
        url = tok["attrs"].get("url", "")
        alt = "".join(n.get("v", "") for n in self.inlines(tok.get("children", [])))
        found = self.images(url) if self.images else None
        if found:
            return [found]
        label = text(f"[image: {alt or url}]")
        return [self.link(url, [label])] if url.lower().startswith(_LINK_SCHEMES) else [label]

    def html_inline(self, raw: str) -> list[Node]:
        if m := _ANCHOR.match(raw):
            self.anchors.append({"t": "anchor", "id": m.group(1)})
            return [self.anchors[-1]]
        if _BR.fullmatch(raw.strip()):
            return [{"t": "br"}]
        return []  # other inline tags: their text is in the neighbouring text tokens

    def html_block(self, raw: str) -> Node | None:
        tables = html_tables(raw)
        if tables:
            return {"t": "group", "c": tables}
        words = _HTMLText.extract(raw)
        return {"t": "p", "c": [text(words)]} if words else None

    def table(self, tok: dict[str, Any]) -> Node:
        head: list[list[Node]] = []
        rows: list[list[list[Node]]] = []
        align: list[str] = []
        for part in tok["children"]:
            if part["type"] == "table_head":
                head = [self.inlines(cell["children"]) for cell in part["children"]]
                align = [cell["attrs"].get("align") or "left" for cell in part["children"]]
            else:
                rows = [[self.inlines(cell["children"]) for cell in row["children"]] for row in part["children"]]
        return table_node(head, rows, align)


def _plain(cells: list[Node]) -> str:
    return "".join(n.get("v", "\n" if n.get("t") == "br" else "") + _plain(n.get("c", [])) for n in cells)


#: A cell with more characters or line breaks than this may not fit on one page in a narrow column.
TALL_CHARS, TALL_LINES = 600, 15


def _tall(text: str) -> bool:
    """Whether a cell's row must be able to break across pages."""
    return len(text) > TALL_CHARS or text.count("\n") > TALL_LINES


def column_width(longest: str) -> str | int:
    """A column's width entry: for a short column its longest text (the template measures it), else its share."""
    return longest if len(longest) <= 14 else min(len(longest), 80)


def _cell_text(cell: Cell) -> str:
    return cell if isinstance(cell, str) else _plain(cell)


def table_node(head: Sequence[Cell], rows: Sequence[Sequence[Cell]], align: list[str] | None = None) -> Node:
    """A table node; a cell is plain text or a list of inline nodes (kept as a bare string when plain:
    far less work for Typst). Each width is a share of the free width (columns with long text, in
    proportion) or, for a short column, its longest text, which the template measures. Tall rows are listed."""
    ncols = max([len(head)] + [len(r) for r in rows]) if (head or rows) else 0
    head = [_flat(c) for c in head] + [""] * (ncols - len(head)) if head else []
    rows = [[_flat(c) for c in r] + [""] * (ncols - len(r)) for r in rows]
    longest = [""] * ncols
    for row in ([head] if head else []) + rows[:500]:
        for i, cell in enumerate(row):
            if len(plain := _cell_text(cell)) > len(longest[i]):
                longest[i] = plain
    widths = [column_width(s) for s in longest]
    align = (align or []) + ["left"] * (ncols - len(align or []))
    tall = [i for i, row in enumerate(rows) if any(_tall(_cell_text(c)) for c in row)]
    return {"t": "table", "head": head, "rows": rows, "widths": widths, "align": align[:ncols], "tall": tall}


def _flat(cell: Cell) -> Cell:
    """A cell of plain text as a bare string."""
    if isinstance(cell, str) or not cell:
        return cell or ""
    return cell[0]["v"] if len(cell) == 1 and cell[0]["t"] == "text" else cell


class _HTMLText(HTMLParser):
    """Collects the visible text of an HTML fragment (scripts and styles dropped)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.skip += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self.skip -= tag in ("script", "style") and self.skip > 0

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)

    @classmethod
    def extract(cls, raw: str) -> str:
        parser = cls()
        parser.feed(raw)
        parser.close()
        return " ".join("".join(parser.parts).split())


class _HTMLTables(HTMLParser):
    """Collects the cells of every ``<table>`` in an HTML fragment (for example a DataFrame's HTML)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[tuple[list[str] | None, list[list[str]]]] = []
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.head_row = False
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "table":
            self.tables.append((None, []))
        elif tag == "tr" and self.tables:
            self.row, self.head_row = [], True
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []
            self.head_row &= tag == "th"
        elif tag in ("script", "style"):
            self.skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "tr" and self.row is not None and self.tables:
            head, body = self.tables[-1]
            if self.head_row and head is None and not body:
                self.tables[-1] = (self.row, body)
            elif self.row:
                body.append(self.row)
            self.row = None
        elif tag in ("script", "style") and self.skip:
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if self.cell is not None and not self.skip:
            self.cell.append(data)


def html_tables(raw: str) -> list[Node]:
    """The tables in an HTML fragment as table nodes (cells as plain text); [] if there are none."""
    if "<table" not in raw.lower():
        return []
    parser = _HTMLTables()
    parser.feed(raw)
    parser.close()
    return [table_node(list(head or []), [list(row) for row in body])
            for head, body in parser.tables if head or body]


def markdown_tree(source: str, images: ImageResolver | None = None) -> tuple[list[Node], list[Node], list[Node]]:
    """Parse Markdown into block nodes; also returns its anchor nodes and its internal links (ref nodes)."""
    conv = _Converter(images)
    tokens = cast("list[dict[str, Any]]", _parse(source))  # renderer=None: the token list
    return conv.blocks(tokens), conv.anchors, conv.refs
