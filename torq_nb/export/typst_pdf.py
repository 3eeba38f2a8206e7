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
import re
import tempfile
import threading
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import typst
from nbconvert.exporters import Exporter
from nbconvert.filters import strip_ansi
from nbformat import NotebookNode
from traitlets import List, Unicode, default

from torq_nb.export.mdtree import Node, Tree, html_tables, markdown_tree
from torq_nb.export.text import CELL_CHARS, TITLE_CHARS, URL_CHARS, clip

TEMPLATE = Path(__file__).parent / "templates" / "typst" / "notebook.typ"
#: Preferred families, first match wins per glyph; Typst falls back further on its own.
BODY_FONTS = ("Libertinus Serif", "Noto Serif CJK SC", "Noto Serif CJK KR", "Noto Sans CJK SC", "DejaVu Sans")
MONO_FONTS = ("DejaVu Sans Mono", "Noto Sans Mono CJK SC", "Noto Sans CJK SC")

#: At most this many characters of one text, code cell or output reach Typst (a report's own
#: values are bounded more tightly when the report is built: ``torq_nb.export.text``).
TEXT_CHARS = 100_000
#: At most this many characters of one table cell reach Typst: narrow columns make tall rows.
TABLE_CELL_CHARS = 5 * CELL_CHARS
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

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def add(self, mime: str, data: Any) -> Node | None:
        """An image node for ``data`` (base64 for raster, text for SVG), or None if it is not a valid image."""
        if mime == "image/svg+xml":
            raw = ("".join(data) if isinstance(data, list) else str(data)).encode("utf-8")
            if b"<svg" not in raw[:4096]:
                return None
            return self._write(raw, ".svg", None)
        ext, magic = self._KINDS.get(mime, ("", b""))
        try:
            raw = base64.b64decode("".join(data) if isinstance(data, list) else data, validate=False)
        except (binascii.Error, ValueError, TypeError):
            return None
        if not ext or not raw.startswith(magic):
            return None
        width = int.from_bytes(raw[16:20], "big") * 0.75 if ext == ".png" and len(raw) > 24 else None
        return self._write(raw, ext, width)

    def _write(self, raw: bytes, ext: str, width: float | None) -> Node:
        self.count += 1
        name = f"img-{self.count}{ext}"
        (self.root / name).write_bytes(raw)
        return {"t": "image", "path": "/" + name, "w": width}


def _source(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _output(out: NotebookNode, images: _Images) -> list[Node]:
    """One cell output as nodes, preferring images, Markdown, HTML tables, then plain text."""
    kind = out.get("output_type")
    if kind == "stream":
        return [{"t": "output", "kind": "stderr" if out.get("name") == "stderr" else "stream",
                 "v": strip_ansi(_source(out.get("text"))).rstrip("\n")}]
    if kind == "error":
        trace = "\n".join(out.get("traceback") or [f"{out.get('ename')}: {out.get('evalue')}"])
        return [{"t": "output", "kind": "error", "v": strip_ansi(trace)}]
    data = out.get("data", {})
    for mime in ("image/png", "image/jpeg", "image/gif", "image/svg+xml"):
        if mime in data and (node := images.add(mime, data[mime])):
            return [node]
    if "text/markdown" in data:
        blocks, anchors, refs = markdown_tree(_source(data["text/markdown"]), images=None)
        for node in refs + anchors:  # outputs link only outward: an in-document target may not exist
            _unlink(node)
        return blocks
    if "text/html" in data and (tables := html_tables(_source(data["text/html"]))):
        return tables
    for mime in ("text/plain", "text/latex", "application/json"):
        if mime in data:
            value = data[mime] if mime != "application/json" else json.dumps(data[mime], indent=2)
            return [{"t": "output", "kind": "plain", "v": strip_ansi(_source(value)).rstrip("\n")}]
    return []


def _attachments(cell: NotebookNode, images: _Images) -> Any:
    """Resolves ``attachment:name`` image references of one Markdown cell."""
    def resolve(url: str) -> Node | None:
        if not url.startswith("attachment:"):
            return None
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


def _bound(nodes: list[Node]) -> None:
    """Clip, in place, every string of the tree that Typst would lay out; a link to an over-long URL
    becomes a plain span (its text kept). One pass over the nodes. (Over-long labels: ``_link_targets``.)"""
    for n in nodes:
        for key in ("v", "src"):
            if isinstance(value := n.get(key), str) and len(value) > TEXT_CHARS:
                n[key] = clip(value, TEXT_CHARS)
        if isinstance(lang := n.get("lang"), str) and len(lang) > 40:
            n["lang"] = ""
        kind = n.get("t")
        if kind == "link" and len(n["url"]) > URL_CHARS:
            _unlink(n)
        if kind == "table":
            for row in (n["head"], *n["rows"]):
                for i, cell in enumerate(row):
                    if isinstance(cell, str):
                        if len(cell) > TABLE_CELL_CHARS:
                            row[i] = clip(cell, TABLE_CELL_CHARS)
                    else:
                        _bound(cell)
            n["widths"] = [clip(w, TITLE_CHARS) if isinstance(w, str) else w for w in n["widths"]]
        elif kind == "list":
            for item in n["items"]:
                _bound(item)
        elif kind == "cell":
            _bound(n["outputs"])
        if isinstance(n.get("c"), list):
            _bound(n["c"])


def _unlink(node: Node) -> None:
    """An anchor or internal link as a plain span (its text, if any, kept)."""
    node["t"] = "span"
    node.setdefault("c", [])


def notebook_document(nb: NotebookNode, root: Path, *, title: str = "", paper: str = "a4",
                      fonts: typst.Fonts | None = None, trees: Mapping[int, Tree] | None = None) -> dict[str, Any]:
    """The JSON tree the template renders: title, metadata lines, and one node per cell part. ``trees``
    gives some Markdown cells' nodes by cell number (blocks, anchors, refs, as ``markdown_tree`` returns
    them), built by the caller from the data the cell's Markdown was written from; the others are parsed."""
    images = _Images(root)
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
            blocks.append({"t": "cell", "src": source, "lang": str(lang), "count": cell.get("execution_count"),
                           "outputs": outputs})
        elif source.strip():
            blocks.append({"t": "codeblock", "v": source, "lang": ""})
    _bound(blocks)
    _link_targets(blocks, anchors, refs)
    first = blocks[0] if blocks else {}
    nb_title = clip(str(nb.metadata.get("title") or title or "Notebook"), CELL_CHARS)
    meta = [["Authors", clip(", ".join(str(a.get("name", a)) if isinstance(a, dict) else str(a) for a in nb.metadata["authors"]),
                             CELL_CHARS)]] if isinstance(nb.metadata.get("authors"), list) else []
    available = set(fonts.families()) if fonts else set()
    return {
        "title": nb_title,
        "running_title": _running_title(nb_title),
        "show_title": not (first.get("t") == "h" and first.get("level") == 1),
        "meta": meta,
        "paper": paper,
        "fonts": [f for f in BODY_FONTS if f in available] or list(BODY_FONTS[:1]),
        "mono": [f for f in MONO_FONTS if f in available] or list(MONO_FONTS[:1]),
        "blocks": blocks,
    }


def _running_title(title: str) -> str:
    """The title as it heads every page after the first: one short line."""
    line = " ".join(title.split())
    return line if len(line) <= RUNNING_TITLE_CHARS else line[:RUNNING_TITLE_CHARS].rstrip() + "…"


def render_pdf(nb: NotebookNode, *, title: str = "", paper: str = "a4", font_paths: tuple[str, ...] = (),
               template: Path = TEMPLATE, trees: Mapping[int, Tree] | None = None) -> bytes:
    """Compile ``nb`` to PDF bytes with the Typst template (``trees``: see ``notebook_document``)."""
    fonts = _fonts(tuple(font_paths))
    with tempfile.TemporaryDirectory(prefix="torq-typst-") as tmp:
        root = Path(tmp)
        doc = notebook_document(nb, root, title=title, paper=paper, fonts=fonts, trees=trees)
        compiler = typst.Compiler(root=str(root), font_paths=fonts)
        try:
            pdf = compiler.compile(input=template.read_bytes(), format="pdf", sys_inputs={"doc": json.dumps(doc)})
        except typst.TypstError as exc:
            raise RuntimeError(f"Typst could not typeset the notebook: {exc.message}") from None
    assert isinstance(pdf, bytes)
    return pdf


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
        pdf = render_pdf(nb_copy, title=name, paper=self.paper, font_paths=tuple(self.font_paths), template=template)
        resources["output_extension"] = ".pdf"
        return pdf, resources
