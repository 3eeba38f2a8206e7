"""Markdown (and simple HTML tables) to a small JSON tree that the Typst template renders as text.

The tree holds only strings, numbers and node types; the template never evaluates any of it as
markup, so nothing a notebook or a web page contains can become Typst code. Math is found as
Jupyter finds it (nbconvert's parsers: ``$``, ``$$``, ``\\(``, ``\\[``, ``\begin{env}``) and kept as TeX in
``math`` nodes; ``torq_nb.export.texmath`` converts it, and only its checked output is evaluated, as math.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from html.parser import HTMLParser
from typing import Any, cast

import mistune
from nbconvert.filters.markdown_mistune import MathBlockParser, MathInlineParser

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


class _InlineParser(MathInlineParser):
    """nbconvert's inline parser (mistune's, with Jupyter's math), plain text (most table cells) returned
    as one token at once."""

    def __call__(self, s: str, env: Any) -> list[dict[str, Any]]:
        if not _INLINE_SYNTAX.search(s):
            return [{"type": "text", "raw": s}]
        return super().__call__(s, env)


_parse = mistune.Markdown(renderer=None, block=MathBlockParser(), inline=_InlineParser(), plugins=[
    mistune.plugins.import_plugin(name) for name in ("table", "strikethrough", "url")])
_ANCHOR = re.compile(r"""<a\s+(?:id|name)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_IMG = re.compile(r"<img\s", re.IGNORECASE)
_LINK_SCHEMES = ("http://", "https://", "ftp://", "mailto:")


def text(value: str) -> Node:
    return {"t": "text", "v": value}


def math(tex: str, block: bool) -> Node:
    """Math as TeX; ``torq_nb.export.texmath`` adds its Typst form (``v``) when it converts."""
    return {"t": "math", "tex": tex, "block": block}


def _attrs(tag: str) -> dict[str, str]:
    """The attributes of the first tag in ``tag``, entities decoded."""
    found: dict[str, str] = {}

    class _Tag(HTMLParser):
        def handle_starttag(self, name: str, attrs: list[tuple[str, str | None]]) -> None:
            if not found:
                found.update({k: v or "" for k, v in attrs})
    _Tag().feed(tag)
    return found


class _Converter:
    """One Markdown document's conversion; remembers anchors and internal links for checking."""

    def __init__(self, images: ImageResolver | None) -> None:
        self.images = images
        self.anchors: list[Node] = []
        self.refs: list[Node] = []

    def blocks(self, tokens: list[dict[str, Any]]) -> list[Node]:
        """Block nodes; an HTML block that opens a ``<div>`` box or ``<details>`` takes the Markdown
        blocks that follow until the block that closes it (the Markdown inside an HTML box, as Jupyter shows it)."""
        root: list[Node] = []
        stack = [root]
        for token in tokens:
            if token["type"] == "block_html" and "<table" not in token["raw"].lower():
                nodes, opened, closed = _HTMLBlocks.convert(token["raw"], self)
                del stack[max(1, len(stack) - closed):]
                stack[-1].extend(nodes)
                stack += [box["c"] for box in opened]
            elif (node := self.block(token)) is not None:
                stack[-1].append(node)
        return root

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
        if kind == "codespan":
            return [{"t": "code", "v": tok["raw"]}]
        if kind in ("inline_math", "block_math"):
            return [math(tok["raw"], kind == "block_math")]
        if kind == "latex_environment":
            name = tok["attrs"]["name"]
            return [math(f"\\begin{{{name}}}{tok['attrs']['body']}\\end{{{name}}}", True)]
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
        return [self.picture(url, alt)]

    def picture(self, url: str, alt: str, width: str | None = None) -> Node:
        """The image the resolver finds for ``url`` (``width``: an ``<img>``'s, in CSS pixels), else its alt
        text; a remote image is never fetched (an export makes no requests) and its label says so."""
        found = self.images(url) if self.images and url else None
        if found:
            if width and width.strip().removesuffix("px").replace(".", "", 1).isdigit():
                found["w"] = float(width.strip().removesuffix("px")) * 0.75
            return found
        if url.lower().startswith(("http://", "https://")):
            return self.link(url, [text(f"[image: {alt or url}] (not fetched)")])
        return text(f"[image: {alt or url}]")

    def html_inline(self, raw: str) -> list[Node]:
        if m := _ANCHOR.match(raw):
            self.anchors.append({"t": "anchor", "id": m.group(1)})
            return [self.anchors[-1]]
        if _BR.fullmatch(raw.strip()):
            return [{"t": "br"}]
        if _IMG.match(raw):
            attrs = _attrs(raw)
            return [self.picture(attrs.get("src", ""), attrs.get("alt", ""), attrs.get("width"))]
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


def _tall(row: Sequence[Cell]) -> bool:
    """Whether a row must be able to break across pages (one loop: it runs for every row of every table)."""
    for cell in row:
        text = cell if isinstance(cell, str) else _plain(cell)
        if len(text) > TALL_CHARS or (len(text) > TALL_LINES and text.count("\n") > TALL_LINES):
            return True
    return False


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
    # The first and last rows: a number column (ranks, counts) is widest at its end.
    for row in ([head] if head else []) + (rows if len(rows) <= 1000 else rows[:500] + rows[-500:]):
        for i, cell in enumerate(row):
            if len(plain := _cell_text(cell)) > len(longest[i]):
                longest[i] = plain
    widths = [column_width(s) for s in longest]
    align = (align or []) + ["left"] * (ncols - len(align or []))
    tall = [i for i, row in enumerate(rows) if _tall(row)]
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


_ALERT = re.compile(r"\balert-(info|warning|danger|success|primary|secondary|note|tip|important|caution)\b")
_INLINE_TAGS = {"b": "strong", "strong": "strong", "i": "em", "em": "em", "s": "strike", "del": "strike", "strike": "strike"}
#: Tags whose start or end breaks a paragraph.
_BLOCK_TAGS = {"p", "div", "ul", "ol", "li", "blockquote", "pre", "hr", "section", "center", "dl", "dt", "dd", "figure"}


class _HTMLBlocks(HTMLParser):
    """An HTML block of a Markdown cell as block nodes: headings, paragraphs (bold, italic, code, links,
    images, line breaks kept), Bootstrap alert ``<div>`` elements as boxes, ``<details>`` shown open. Every
    string stays data. A box or ``<details>`` left open here is returned, so that the Markdown blocks
    that follow go into it; closing tags of boxes opened by earlier blocks are counted."""

    def __init__(self, conv: _Converter) -> None:
        super().__init__(convert_charrefs=True)
        self.conv = conv
        self.root: list[Node] = []
        self.boxes: list[tuple[str, list[Node], Node | None]] = []  # (tag, blocks list, box node or None)
        self.inline: list[list[Node]] = [[]]  # the inline list being filled, innermost last
        self.heading = 0
        self.closed_outside = 0
        self.skip = 0

    def _blocks(self) -> list[Node]:
        return self.boxes[-1][1] if self.boxes else self.root

    def _flush(self) -> None:
        body = self.inline[0]
        self.inline = [[]]
        if any(n["t"] != "text" or n["v"].strip() for n in body):
            if body and body[0]["t"] == "text":
                body[0]["v"] = body[0]["v"].lstrip()
            if self.heading:
                self._blocks().append({"t": "h", "level": self.heading, "c": body})
            else:
                self._blocks().append({"t": "p", "c": body})

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag in ("script", "style"):
            self.skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading = int(tag[1])
        elif tag == "div" and (kind := _ALERT.search(values.get("class", ""))):
            self._flush()
            box: Node = {"t": "alert", "kind": kind.group(1), "c": []}
            self._blocks().append(box)
            self.boxes.append(("div", box["c"], box))
        elif tag == "details":
            self._flush()
            box = {"t": "details", "c": []}
            self._blocks().append(box)
            self.boxes.append(("details", box["c"], box))
        elif tag == "summary":
            self._flush()
            self.inline[-1].append({"t": "strong", "c": []})
            self.inline.append(self.inline[-1][-1]["c"])
        elif tag in _BLOCK_TAGS:
            self._flush()
            if tag == "div":
                self.boxes.append(("div", self._blocks(), None))  # a plain <div>: only its end is tracked
            elif tag == "li":
                self.inline[-1].append(text("• "))
            elif tag == "hr":
                self._blocks().append({"t": "hr"})
        elif tag == "br":
            self.inline[-1].append({"t": "br"})
        elif tag == "img":
            self.inline[-1].append(self.conv.picture(values.get("src", ""), values.get("alt", ""), values.get("width")))
        elif tag == "a" and not values.get("href") and (name := values.get("id") or values.get("name")):
            self.conv.anchors.append({"t": "anchor", "id": name})  # a link target, as in Markdown's inline HTML
            self.inline[-1].append(self.conv.anchors[-1])
            self.inline.append(self.inline[-1])  # its text, if any, follows the anchor
        elif tag in _INLINE_TAGS or tag == "code" or tag == "a":
            href = values.get("href", "")
            node: Node = ({"t": "code", "v": "", "c": []} if tag == "code" else self.conv.link(href, []) if tag == "a"
                          else {"t": _INLINE_TAGS[tag], "c": []})
            self.inline[-1].append(node)
            self.inline.append(node["c"])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip -= self.skip > 0
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading = 0
        elif tag in ("div", "details"):
            self._flush()
            if self.boxes and self.boxes[-1][0] == tag:
                self.boxes.pop()
            elif not self.boxes:
                self.closed_outside += 1
        elif tag == "summary" or tag in _INLINE_TAGS or tag in ("code", "a"):
            if len(self.inline) > 1:
                done = self.inline.pop()
                parent = self.inline[-1][-1]
                if parent["t"] == "code" and parent.get("c") is done:
                    parent["v"] = _plain(done)
                    parent.pop("c", None)
            if tag == "summary":
                self._flush()
        elif tag in _BLOCK_TAGS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self.skip:
            target = self.inline[-1]
            value = " ".join(data.split()) if not data.isspace() else (" " if target else "")
            if data[:1].isspace() and value and value != " ":
                value = " " + value
            if data[-1:].isspace() and value and not value.endswith(" "):
                value += " "
            if value:
                if target and target[-1]["t"] == "text":
                    target[-1] = text(target[-1]["v"] + value)
                else:
                    target.append(text(value))

    @classmethod
    def convert(cls, raw: str, conv: _Converter) -> tuple[list[Node], list[Node], int]:
        """Blocks of ``raw``, the boxes it leaves open (outermost first), how many earlier boxes it closes."""
        parser = cls(conv)
        parser.feed(raw)
        parser.close()
        parser._flush()
        return parser.root, [box for _, _, box in parser.boxes if box is not None], parser.closed_outside


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


def html_blocks(raw: str, images: ImageResolver | None = None) -> list[Node]:
    """An HTML fragment (a cell output's text/html) as block nodes (see ``_HTMLBlocks``); its links
    to anchors become plain spans: an output's in-document target may not exist."""
    conv = _Converter(images)
    nodes, _, _ = _HTMLBlocks.convert(raw, conv)
    for node in conv.refs:
        node["t"] = "span"
    return nodes


def markdown_tree(source: str, images: ImageResolver | None = None) -> tuple[list[Node], list[Node], list[Node]]:
    """Parse Markdown into block nodes; also returns its anchor nodes and its internal links (ref nodes)."""
    conv = _Converter(images)
    tokens = cast("list[dict[str, Any]]", _parse(source))  # renderer=None: the token list
    return conv.blocks(tokens), conv.anchors, conv.refs
