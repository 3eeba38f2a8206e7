"""TypstPDFExporter: any notebook to PDF through a Typst template, with nothing but pip.

The notebook becomes a JSON tree (``notebook_document``) passed to the template through
``sys.inputs``; the template prints every string as text. Images go into a private temporary
folder that is the compiler's root, so the document can read nothing else from the disk. Every
string is bounded before Typst sees it (``_bound``): Typst's memory grows with the text it lays out,
and it refuses links over 8,000 bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import shutil
import tempfile
import threading
import urllib.parse
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import typst
from nbconvert.exporters import Exporter
from nbformat import NotebookNode
from traitlets import List, Unicode, default

from torq_nb.export.mdtree import Node, Tree, html_blocks, html_tables, markdown_tree
from torq_nb.export.texmath import definitions, math_node, to_typst
from torq_nb.export.text import CELL_CHARS, TITLE_CHARS, URL_CHARS, breakable, clip

_TEMPLATES = Path(__file__).parent / "templates" / "typst"
TEMPLATE = _TEMPLATES / "notebook.typ"
#: The template's parts (``report``, ``render``, ``doc``...), which every template imports as ``/torq.typ``.
BASE = _TEMPLATES / "torq.typ"
#: Preferred families, first match wins per glyph; Typst falls back further on its own.
BODY_FONTS = ("Libertinus Serif", "Noto Serif CJK SC", "Noto Serif CJK KR", "Noto Sans CJK SC", "DejaVu Sans")
MONO_FONTS = ("DejaVu Sans Mono", "Noto Sans Mono CJK SC", "Noto Sans CJK SC")

#: At most this many characters of one text, code cell or output reach Typst (a report's own
#: values are bounded more tightly when the report is built: ``torq_nb.export.text``).
TEXT_CHARS = 100_000
#: At most this many characters of one table cell reach Typst: narrow columns make tall rows.
TABLE_CELL_CHARS = 5 * CELL_CHARS
#: A Markdown image read from the notebook's folder may have at most this many bytes.
IMAGE_BYTES = 20_000_000
#: The page header shows at most this many characters of the title.
RUNNING_TITLE_CHARS = 90

_fonts_lock = threading.Lock()
_fonts_cache: dict[tuple[str, ...], typst.Fonts] = {}


def _fonts(font_paths: tuple[str, ...]) -> typst.Fonts:
    """The system's, the bundled and the given fonts, scanned once per process (it takes ~60 ms)."""
    with _fonts_lock:
        if font_paths not in _fonts_cache:
            _fonts_cache[font_paths] = typst.Fonts(include_system_fonts=True, include_embedded_fonts=True,
                                                   font_paths=list(font_paths))
        return _fonts_cache[font_paths]


class _Images:
    """Writes a notebook's images into the Typst root under names of our own choosing."""

    _KINDS: ClassVar[dict[str, tuple[str, bytes]]] = {"image/png": (".png", b"\x89PNG"), "image/jpeg": (".jpg", b"\xff\xd8"), "image/gif": (".gif", b"GIF8")}

    def __init__(self, root: Path, base: Path | None = None) -> None:
        self.root = root
        self.base = base  # the notebook's folder: images by relative path are read from there only
        self.count = 0

    def add(self, mime: str, data: Any) -> Node | None:
        """An image node for ``data`` (base64 for raster, text for SVG), or None if it is not a valid image."""
        if mime == "image/svg+xml":
            return self.raw(("".join(data) if isinstance(data, list) else str(data)).encode("utf-8"))
        try:
            raw = base64.b64decode("".join(data) if isinstance(data, list) else data, validate=False)
        except (binascii.Error, ValueError, TypeError):
            return None
        return self.raw(raw) if mime in self._KINDS else None

    def raw(self, raw: bytes) -> Node | None:
        """An image node for the bytes of a PNG, JPEG, GIF or SVG image (told by its content), at its natural
        width (CSS pixels as 0.75 pt), or None."""
        for ext, magic in self._KINDS.values():
            if raw.startswith(magic):
                return self._write(raw, ext, _pixel_width(raw, ext))
        if b"<svg" in raw[:4096]:
            return self._write(_SVG_GENERIC.sub(lambda m: _SVG_FAMILIES[m.group(0)], raw), ".svg", _svg_width(raw))
        return None

    def url(self, url: str) -> Node | None:
        """An image given by a Markdown or ``<img>`` address: a ``data:`` URL, or a file by relative path
        inside the notebook's folder ``base`` (nothing outside it, no link leading out of it, nothing
        else than an image, at most ``IMAGE_BYTES``). Remote addresses: None (an export fetches nothing)."""
        if url.startswith("data:image/") and ";base64," in url[:80]:
            try:
                return self.raw(base64.b64decode(url.split(",", 1)[1], validate=False))
            except (binascii.Error, ValueError):
                return None
        path = urllib.parse.unquote(url.split("?", 1)[0].split("#", 1)[0])
        base = self.base
        if base is None or not path or "://" in url or url.startswith(("/", "\\", "data:", "file:")) or ":" in path[:3]:
            return None
        try:
            folder = base.resolve()
            target = (folder / path).resolve()
            if not target.is_relative_to(folder) or not target.is_file() or target.stat().st_size > IMAGE_BYTES:
                return None
            return self.raw(target.read_bytes())
        except OSError:
            return None

    def _write(self, raw: bytes, ext: str, width: float | None) -> Node:
        self.count += 1
        name = f"img-{self.count}{ext}"
        (self.root / name).write_bytes(raw)
        return {"t": "image", "path": "/" + name, "w": width}


def _pixel_width(raw: bytes, ext: str) -> float | None:
    """A PNG's, GIF's or baseline/progressive JPEG's width in points (a pixel as a CSS pixel, 0.75 pt)."""
    if ext == ".png" and len(raw) > 24:
        return int.from_bytes(raw[16:20], "big") * 0.75
    if ext == ".gif" and len(raw) > 10:
        return int.from_bytes(raw[6:8], "little") * 0.75
    if ext == ".jpg":
        i = 2
        while i + 9 < len(raw) and raw[i] == 0xFF:
            marker, size = raw[i + 1], int.from_bytes(raw[i + 2:i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                return int.from_bytes(raw[i + 7:i + 9], "big") * 0.75
            i += 2 + size
    return None


_SVG_TAG = re.compile(rb"<svg\b[^>]*>", re.DOTALL)
#: Typst's SVG renderer gives the generic families its body font (a serif): name real ones first.
_SVG_FAMILIES = {b"sans-serif": b"DejaVu Sans, Noto Sans CJK SC, sans-serif", b"monospace": b"DejaVu Sans Mono, monospace"}
_SVG_GENERIC = re.compile(rb"(?<![\w-])(?:sans-serif|monospace)(?![\w-])")
_SVG_LENGTH = re.compile(r"^\s*([0-9.]+)\s*(px|pt|in|cm|mm|)\s*$")
_UNIT_PT = {"": 0.75, "px": 0.75, "pt": 1.0, "in": 72.0, "cm": 72 / 2.54, "mm": 72 / 25.4}


def _svg_width(raw: bytes) -> float | None:
    """An SVG's width in points from its ``width`` (or its ``viewBox``, in CSS pixels); None if relative."""
    tag = _SVG_TAG.search(raw[:8192])
    if not tag:
        return None
    attrs = dict(re.findall(r'([\w:-]+)\s*=\s*["\']([^"\']*)["\']', tag.group(0).decode("utf-8", "replace")))
    if m := _SVG_LENGTH.match(attrs.get("width", "")):
        return float(m.group(1)) * _UNIT_PT[m.group(2)]
    box = attrs.get("viewBox", "").replace(",", " ").split()
    try:
        return float(box[2]) * 0.75 if len(box) == 4 and "width" not in attrs else None
    except ValueError:
        return None


def _source(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


#: Jupyter's ANSI palette (JupyterLab's --jp-ansi-* colours): 8 normal, then 8 bright.
_ANSI_PALETTE = ("#3e424d", "#e75c58", "#00a250", "#ddb62b", "#208ffb", "#d160c4", "#60c6c8", "#c5c1b4",
                 "#282c36", "#b22b31", "#007427", "#b27d12", "#0065ca", "#a03196", "#258f8f", "#a1a6b2")
_ANSI_ESCAPE = re.compile(r"\x1b\[([0-9;]*)m|\x1b\[[0-9;?]*[A-Za-ln-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[()][A-Z0-9]")


def _ansi_colour(codes: list[int], i: int) -> tuple[str | None, int]:
    """The colour of a 38/48 sequence starting at ``codes[i]`` (5;n or 2;r;g;b), and the index past it."""
    if i + 2 < len(codes) and codes[i + 1] == 5:
        n = codes[i + 2]
        if n < 16:
            return _ANSI_PALETTE[n], i + 3
        if n < 232:
            r, g, b = ((n - 16) // 36, (n - 16) // 6 % 6, (n - 16) % 6)
            return "#" + "".join(f"{0 if c == 0 else 55 + 40 * c:02x}" for c in (r, g, b)), i + 3
        return "#" + f"{8 + 10 * (n - 232):02x}" * 3, i + 3
    if i + 4 < len(codes) and codes[i + 1] == 2:
        return "#" + "".join(f"{min(255, c):02x}" for c in codes[i + 2:i + 5]), i + 5
    return None, len(codes)


def _ansi_runs(value: str) -> tuple[str, list[list[Any]] | None]:
    """The text without escape sequences, and its coloured runs ``[text, fg, bg, bold]`` (None if it has
    no colour or weight: the template then prints one plain block)."""
    if "\x1b" not in value:
        return value, None
    runs: list[list[Any]] = []
    fg: str | None = None
    bg: str | None = None
    bold = False
    styled = False
    pos = 0
    for m in _ANSI_ESCAPE.finditer(value):
        if m.start() > pos:
            runs.append([value[pos:m.start()], fg, bg, bold])
        pos = m.end()
        if m.group(1) is None:
            continue
        codes = [int(c) for c in m.group(1).split(";") if c.isdigit()] or [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            i += 1
            if c == 0:
                fg, bg, bold = None, None, False
            elif c == 1:
                bold = True
            elif c == 22:
                bold = False
            elif 30 <= c <= 37 or 90 <= c <= 97:
                fg = _ANSI_PALETTE[c - 30 if c < 90 else c - 82]
            elif 40 <= c <= 47 or 100 <= c <= 107:
                bg = _ANSI_PALETTE[c - 40 if c < 100 else c - 92]
            elif c == 39:
                fg = None
            elif c == 49:
                bg = None
            elif c in (38, 48):
                colour, i = _ansi_colour(codes, i - 1)
                fg, bg = (colour, bg) if c == 38 else (fg, colour)
            styled = styled or bool(fg or bg or bold)
    if pos < len(value):
        runs.append([value[pos:], fg, bg, bold])
    plain = "".join(r[0] for r in runs)
    merged: list[list[Any]] = []
    for run in runs:
        if merged and merged[-1][1:] == run[1:]:
            merged[-1][0] += run[0]
        elif run[0]:
            merged.append(run)
    return plain, merged if styled else None


def _text_output(kind: str, value: str) -> Node:
    """A stream, error or plain output: its text (ANSI colours kept as runs), wrappable."""
    plain, runs = _ansi_runs(value.rstrip("\n"))
    node: Node = {"t": "output", "kind": kind, "v": breakable(plain.rstrip("\n"))}
    if runs and len(plain) <= TEXT_CHARS:
        node["runs"] = [[breakable(r[0]), *r[1:]] for r in runs]
    return node


_TABLE_HTML = re.compile(r"(<table\b.*?</table>)", re.IGNORECASE | re.DOTALL)
_NUMBER = re.compile(r"^[-+−]?(?:\d[\d,_ ]*)?(?:\.\d+)?(?:[eE][-+]?\d+)?%?$|^(?:nan|NaN|inf|-inf|None|null|<NA>|NaT)$")


def _html_output(raw: str, images: _Images) -> list[Node]:
    """A text/html output as nodes: its tables as tables (number columns right-aligned), the rest as
    HTML blocks (headings, paragraphs, images given inline as data: URLs). [] if nothing is visible."""
    nodes: list[Node] = []
    for piece in _TABLE_HTML.split(raw):
        if piece[:6].lower() == "<table":
            for table in html_tables(piece):
                _align_numbers(table)
                nodes.append(table)
        elif piece.strip():
            nodes += html_blocks(piece, images=images.url)
    return nodes


#: A Polars DataFrame's HTML has its column types as the first body row.
_POLARS_DTYPE = re.compile(r"^(?:[iu](?:8|16|32|64|128)|f(?:32|64)|str|bool|date|time|null|object|cat|enum|binary|"
                           r"decimal|(?:datetime|duration|list|array|struct|decimal)\b.*)$")


def _align_numbers(table: Node) -> None:
    """Right-aligns the columns whose every non-empty body cell is a number (a DataFrame's values)."""
    rows = [r for r in table["rows"] if isinstance(r, list)]
    if rows and all(isinstance(c, str) and (not c or _POLARS_DTYPE.match(c)) for c in rows[0]):
        rows = rows[1:]
    for i in range(len(table["align"])):
        cells = [r[i] for r in rows if i < len(r) and isinstance(r[i], str) and r[i].strip()]
        if cells and all(_NUMBER.match(c.strip()) for c in cells):
            table["align"][i] = "right"


def _latex_output(value: str) -> Node | None:
    """A text/latex output (SymPy's ``$\\displaystyle ...$``) as display math, or None if it is not math
    that converts (a LaTeX table, say): the next representation is used then."""
    tex = value.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\[", "\\]"), ("\\(", "\\)")):
        if tex.startswith(left) and tex.endswith(right) and len(tex) > len(left) + len(right):
            tex = tex[len(left):-len(right)]
            break
    else:
        if not tex.startswith("\\begin{"):
            return None
    node = math_node(tex, True)
    return node if "v" in node else None


def _output(out: NotebookNode, images: _Images) -> list[Node]:
    """One cell output as nodes, preferring LaTeX math (typeset, as JupyterLab and nbconvert's LaTeX PDF
    prefer it to a picture of it), images, Markdown, HTML, then plain text: the richest form the PDF can show."""
    kind = out.get("output_type")
    if kind == "stream":
        return [_text_output("stderr" if out.get("name") == "stderr" else "stream", _source(out.get("text")))]
    if kind == "error":
        trace = "\n".join(out.get("traceback") or [f"{out.get('ename')}: {out.get('evalue')}"])
        return [_text_output("error", trace)]
    data = out.get("data", {})
    if "text/latex" in data and (math := _latex_output(_source(data["text/latex"]))):
        return [math]
    for mime in ("image/png", "image/jpeg", "image/gif", "image/svg+xml"):
        if mime in data and (node := images.add(mime, data[mime])):
            return [node]
    if "text/markdown" in data:
        blocks, anchors, refs = markdown_tree(_source(data["text/markdown"]), images=images.url)
        for node in refs + anchors:  # outputs link only outward: an in-document target may not exist
            _unlink(node)
        return blocks
    if "text/html" in data and (nodes := _html_output(_source(data["text/html"]), images)):
        return nodes
    for mime in ("text/plain", "text/latex", "application/json"):
        if mime in data:
            value = data[mime] if mime != "application/json" else json.dumps(data[mime], indent=2)
            return [_text_output("plain", _source(value))]
    return []


def _attachments(cell: NotebookNode, images: _Images) -> Any:
    """Resolves the image references of one Markdown cell: ``attachment:name``, ``data:`` URLs, and
    relative paths inside the notebook's folder (see ``_Images.url``)."""
    def resolve(url: str) -> Node | None:
        if not url.startswith("attachment:"):
            return images.url(url)
        bundle = (cell.get("attachments") or {}).get(url.removeprefix("attachment:"), {})
        return next((node for mime, data in bundle.items() if (node := images.add(mime, data))), None)
    return resolve


def _slug(nodes: list[Node]) -> str:
    """Jupyter's heading anchor: the heading's text with spaces as dashes."""
    def plain(ns: list[Node]) -> str:
        return "".join(n.get("v", "") + plain(n.get("c", [])) for n in ns)
    return re.sub(r"\s+", "-", plain(nodes).strip())


def _link_targets(blocks: list[Node], anchors: list[Node], refs: list[Node]) -> None:
    """Keep internal links whose target exists exactly once; others become plain text (Typst would fail).
    Anchors are kept only where a link points."""
    headings = [b for b in blocks if b.get("t") == "h"]
    counts = Counter([a["id"] for a in anchors] + [_slug(h["c"]) for h in headings])
    unique = {name for name, n in counts.items() if name and n == 1 and len(name) <= TITLE_CHARS}
    for h in headings:
        h.pop("id", None)
        if (slug := _slug(h["c"])) in unique:
            h["id"] = slug
    for ref in refs:
        if ref["id"] not in unique:
            _unlink(ref)
    linked = {ref["id"] for ref in refs}
    for anchor in anchors:  # an anchor nothing links to only costs Typst time (a label to track)
        if anchor["id"] not in unique or anchor["id"] not in linked:
            _unlink(anchor)


def _bound(nodes: list[Node], maths: list[Node]) -> list[Node]:
    """Clip, in place, every string of the tree that Typst would lay out, and let its long unbroken runs wrap
    (``_text``); a link to an over-long URL becomes a plain span (its text kept). One pass over the nodes,
    which also collects the math nodes into ``maths`` (in document order) and returns it. (Over-long labels:
    ``_link_targets``.)"""
    for n in nodes:
        for key in ("v", "src", "tex"):
            if isinstance(value := n.get(key), str) and len(value) > TEXT_CHARS:
                n[key] = clip(value, TEXT_CHARS)
        if n.get("t") == "text":
            n["v"] = _text(n["v"])
        if isinstance(lang := n.get("lang"), str) and len(lang) > 40:
            n["lang"] = ""
        kind = n.get("t")
        if kind == "math":
            maths.append(n)
        elif kind == "link" and len(n["url"]) > URL_CHARS:
            _unlink(n)
        if kind == "table":
            for row in (n["head"], *n["rows"]):
                for i, cell in enumerate(row):
                    if isinstance(cell, str):
                        row[i] = _text(clip(cell, TABLE_CELL_CHARS) if len(cell) > TABLE_CELL_CHARS else cell)
                    else:
                        _bound(cell, maths)
            n["widths"] = [clip(w, TITLE_CHARS) if isinstance(w, str) else w for w in n["widths"]]
        elif kind == "list":
            for item in n["items"]:
                _bound(item, maths)
        elif kind == "cell":
            _bound(n["outputs"], maths)
        if isinstance(n.get("c"), list):
            _bound(n["c"], maths)
    return maths


def _text(value: str) -> str:
    """Text as Typst should lay it out: a tab as a space (Typst drops it, gluing the words), long runs breakable."""
    return breakable(value.replace("\t", " "))


def _unlink(node: Node) -> None:
    """An anchor or internal link as a plain span (its text, if any, kept)."""
    node["t"] = "span"
    node.setdefault("c", [])


def notebook_document(nb: NotebookNode, root: Path, *, title: str = "", paper: str = "a4",
                      fonts: typst.Fonts | None = None, trees: Mapping[int, Tree] | None = None,
                      base: Path | None = None, author: str | None = None, logo: Path | None = None) -> dict[str, Any]:
    """The JSON tree the template renders: title, authors, logo, metadata lines, and one node per cell part.
    ``trees`` gives some Markdown cells' nodes by cell number (blocks, anchors, refs, as ``markdown_tree``
    returns them), built by the caller from the data the cell's Markdown was written from; the others are
    parsed. ``base``: the notebook's folder, where Markdown images given by relative path are looked for.
    ``author`` (instead of the notebook's authors) goes into the PDF's metadata; ``logo``, an image file, is
    copied into ``root`` for the top of the first page."""
    return _document(nb, root, title=title, paper=paper, fonts=fonts, trees=trees, base=base, author=author,
                     logo=logo)[0]


def _document(nb: NotebookNode, root: Path, *, title: str, paper: str, fonts: typst.Fonts | None,
              trees: Mapping[int, Tree] | None, base: Path | None, author: str | None,
              logo: Path | None) -> tuple[dict[str, Any], list[Node]]:
    """``notebook_document``'s tree, and its math nodes (for finding what Typst refuses)."""
    images = _Images(root, base)
    lang = (nb.metadata.get("language_info") or {}).get("name") or (nb.metadata.get("kernelspec") or {}).get("language") or ""
    blocks: list[Node] = []
    anchors: list[Node] = []
    refs: list[Node] = []
    for number, cell in enumerate(nb.cells):
        source = _source(cell.get("source"))
        if cell.cell_type == "markdown":
            parsed, cell_anchors, cell_refs = (trees or {}).get(number) or \
                markdown_tree(source, images=_attachments(cell, images))
            blocks.extend(parsed)
            anchors += cell_anchors
            refs += cell_refs
        elif cell.cell_type == "code":
            outputs = [node for out in cell.get("outputs", []) for node in _output(out, images)]
            blocks.append({"t": "cell", "src": breakable(source), "lang": str(lang), "count": cell.get("execution_count"),
                           "outputs": outputs})
        elif source.strip():
            blocks += _raw_cell(cell, source, images)
    maths = _bound(blocks, [])
    _typeset_math(maths)
    _link_targets(blocks, anchors, refs)
    first = blocks[0] if blocks else {}
    nb_title = clip(str(nb.metadata.get("title") or title or "Notebook"), CELL_CHARS)
    names = [str(a.get("name", a)) if isinstance(a, dict) else str(a) for a in nb.metadata["authors"]] \
        if isinstance(nb.metadata.get("authors"), list) else []
    meta = [["Authors", clip(", ".join(names), CELL_CHARS)]] if names else []
    available = set(fonts.families()) if fonts else set()
    if logo is not None:
        shutil.copyfile(logo, root / ("logo" + logo.suffix.lower()))
    return {
        "title": nb_title,
        "running_title": _running_title(nb_title),
        "authors": [clip(name, TITLE_CHARS) for name in ([author] if author else names)],
        "logo": "/logo" + logo.suffix.lower() if logo is not None else None,
        "show_title": not (first.get("t") == "h" and first.get("level") == 1),
        "meta": meta,
        "paper": paper,
        "fonts": [f for f in BODY_FONTS if f in available] or list(BODY_FONTS[:1]),
        "mono": [f for f in MONO_FONTS if f in available] or list(MONO_FONTS[:1]),
        "blocks": blocks,
    }, maths


#: A raw cell's format (its ``format`` or ``raw_mimetype`` metadata) as the language of its code block.
_RAW_LANGS = {"text/restructuredtext": "rst", "text/x-python": "python", "text/x-typst": "typst", "typst": "typst",
              "text/latex": "latex", "latex": "latex", "text/asciidoc": "asciidoc", "text/x-rst": "rst"}


def _raw_cell(cell: NotebookNode, source: str, images: _Images) -> list[Node]:
    """A raw cell by its format: Markdown and HTML rendered, LaTeX that is math typeset; the rest (reST,
    Python, Typst, unknown) printed as code. Nothing in it is run: a raw Typst cell is shown, not compiled."""
    meta = cell.get("metadata") or {}
    fmt = str(meta.get("format") or meta.get("raw_mimetype") or "").lower()
    if fmt in ("text/markdown", "markdown"):
        blocks, anchors, refs = markdown_tree(source, images=images.url)
        for node in refs + anchors:
            _unlink(node)
        return blocks
    if fmt in ("text/html", "html") and (nodes := _html_output(source, images)):
        return nodes
    if fmt in ("text/latex", "latex") and (math := _latex_output(source)):
        return [math]
    return [{"t": "codeblock", "v": breakable(source), "lang": _RAW_LANGS.get(fmt, "")}]


def _typeset_math(maths: list[Node]) -> None:
    """Gives every Markdown math node its Typst form (``v``), with the notebook's own argument-less
    ``\\newcommand`` definitions (MathJax keeps them from where they appear to the end of the notebook);
    a span that only defines macros prints nothing. Nodes that do not convert print their TeX."""
    macros: dict[str, str] = {}
    for node in maths:
        if "v" in node:
            continue
        defined, rest = definitions(node["tex"])
        macros.update(defined)
        if defined and not rest.strip():
            node["v"], node["tag"] = "", ""
        elif (done := to_typst(rest, macros)) is not None:
            node["v"], node["tag"] = done


def _running_title(title: str) -> str:
    """The title as it heads every page after the first: one short line."""
    line = " ".join(title.split())
    return line if len(line) <= RUNNING_TITLE_CHARS else line[:RUNNING_TITLE_CHARS].rstrip() + "…"


#: Evaluates a list of math sources, nothing else: finds the spans Typst refuses (``_refused_math``).
_MATH_CHECK = b'#for s in json(bytes(sys.inputs.m)) { eval(s, mode: "math") }\n'
#: Typst's tagged-PDF catalog entry that poppler misreads ("Suspects object is wrong type (boolean)"):
#: a false /Suspects is the default, so it is blanked out, byte for byte (offsets stay valid).
_SUSPECTS = b"/MarkInfo<</Marked true/Suspects false>>"
_log = logging.getLogger("torq_nb.export")


def _refused_math(compiler: typst.Compiler, nodes: list[Node]) -> list[Node]:
    """The math nodes whose Typst source Typst refuses (a converter's mistake): halves until found."""
    def fails(group: list[Node]) -> bool:
        try:
            compiler.compile(input=_MATH_CHECK, format="pdf", sys_inputs={"m": json.dumps([n["v"] for n in group])})
        except typst.TypstError:
            return True
        return False
    refused: list[Node] = []
    groups = [nodes]
    while groups:
        group = groups.pop()
        if len(group) == 1 or not fails(group):
            refused += group if len(group) == 1 and fails(group) else []
            continue
        groups += [group[:len(group) // 2], group[len(group) // 2:]]
    return refused


def render_pdf(nb: NotebookNode, *, title: str = "", paper: str = "a4", font_paths: tuple[str, ...] = (),
               template: Path = TEMPLATE, trees: Mapping[int, Tree] | None = None, base: Path | None = None,
               author: str | None = None, logo: Path | None = None, log: logging.Logger | None = None) -> bytes:
    """Compile ``nb`` to PDF bytes with the Typst ``template`` (``trees``, ``base``, ``author``, ``logo``: see
    ``notebook_document``), which may import the package's parts as ``/torq.typ``. Typst's warnings go to
    ``log``; math Typst refuses is printed as its TeX (and logged), never a failed export; a template that
    fails is a RuntimeError naming it, with Typst's message."""
    log = log or _log
    fonts = _fonts(tuple(font_paths))
    with tempfile.TemporaryDirectory(prefix="torq-typst-") as tmp:
        root = Path(tmp)
        doc, maths = _document(nb, root, title=title, paper=paper, fonts=fonts, trees=trees, base=base, author=author,
                               logo=logo)
        shutil.copyfile(BASE, root / BASE.name)
        compiler = typst.Compiler(root=str(root), font_paths=fonts)
        source = template.read_bytes()
        while True:
            try:
                pdf, warnings = compiler.compile_with_warnings(input=source, format="pdf", sys_inputs={"doc": json.dumps(doc)})
                break
            except typst.TypstError as exc:
                converted = [n for n in maths if n.get("v")]
                refused = _refused_math(compiler, converted) if converted else []
                if not refused:
                    raise _template_error(exc, template, root) from None
                for node in refused:
                    del node["v"]
                log.warning("Typst refused %d converted math span(s), printed as TeX instead; the first: %s",
                            len(refused), clip(refused[0]["tex"], 200))
    for message in dict.fromkeys(_warning_text(w) for w in warnings):
        log.warning("Typst: %s", message)
    assert isinstance(pdf, bytes)
    return pdf.replace(_SUSPECTS, b"/MarkInfo<</Marked true>>".ljust(len(_SUSPECTS)), 1)


def _template_error(exc: typst.TypstError, template: Path, root: Path) -> RuntimeError:
    """Typst's error as one message: for a template of the user's, its file and Typst's diagnostic (with the
    file and line it points at, named as the user knows them), so that they can fix it."""
    if template == TEMPLATE:
        return RuntimeError(f"Typst could not typeset the notebook: {exc.message}")

    def named(text: str) -> str:  # the private root's files by their names in it, the main file by its path
        return re.sub(r"\S*" + re.escape(root.name) + "/", "", text).replace("__typst_py_bytes__.typ", str(template))
    where = named(str(getattr(exc, "diagnostic", "") or "")).strip()
    return RuntimeError(f"the Typst template {template} failed: {named(exc.message)}" + (f"\n{where}" if where else "") +
                        '\n(a template can read only what the export gives it: #import "/torq.typ" and doc.logo; see '
                        "docs/templates.md)")


def _warning_text(warning: Any) -> str:
    """A Typst warning as one line: its message and hints."""
    hints = "; ".join(getattr(warning, "hints", None) or [])
    return str(getattr(warning, "message", warning)) + (f" (hint: {hints})" if hints else "")


class TypstPDFExporter(Exporter):
    """nbconvert exporter: ``jupyter nbconvert --to typst-pdf notebook.ipynb`` makes a PDF, no LaTeX, no browser."""

    export_from_notebook = "PDF via Typst"
    output_mimetype = "application/pdf"

    paper = Unicode("a4", help="Typst paper name, e.g. a4 or us-letter.").tag(config=True)
    font_paths = List(Unicode(), help="Extra font folders, used beside the system's and Typst's bundled fonts.").tag(config=True)
    typst_template = Unicode("", help="Path of a Typst template to use instead of the bundled one.").tag(config=True)

    @default("file_extension")
    def _file_extension_default(self) -> str:
        return ".pdf"

    def from_notebook_node(  # type: ignore[override]  # a PDF exporter returns bytes, as nbconvert's own do
        self, nb: NotebookNode, resources: dict[str, Any] | None = None, **kw: Any
    ) -> tuple[bytes, dict[str, Any]]:
        nb_copy, resources = super().from_notebook_node(nb, resources, **kw)
        name = str(resources.get("metadata", {}).get("name") or "")
        template = Path(self.typst_template) if self.typst_template else TEMPLATE
        folder = str(resources.get("metadata", {}).get("path") or "")
        pdf = render_pdf(nb_copy, title=name, paper=self.paper, font_paths=tuple(self.font_paths), template=template,
                         base=Path(folder) if folder else None, log=self.log)
        resources["output_extension"] = ".pdf"
        return pdf, resources
