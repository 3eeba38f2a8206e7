"""Outside text on its way into a document: escaped once, for the format being written, and bounded.

Page text (titles, snippets, URLs, errors, the summary's sentences, the topic) reaches every export
as plain text. Each writer escapes it here, exactly once, where it writes its format:

- Markdown (the report notebook, hence the .md, the .html and the PDF): ``md_text`` and friends, or
  the column expression ``md_expr``. ``&``, ``<`` and ``>`` become entities, so no renderer ever sees
  a tag; other Markdown punctuation gets a backslash; and the ``:`` of ``://`` and the ``.`` of
  ``www.`` are escaped, so that GFM autolinks cannot start in page text (an autolink swallows a
  backslash next to it, which would show as ``\\$`` or, before entities, let ``<img ...>`` through).
- HTML (the .html report, the results card): ``html_text`` and its column form ``html_expr``, which write
  exactly what Jinja's autoescape writes (``&``, ``<``, ``>``, ``"`` and ``'`` as entities), so the report's
  template and its prebuilt fragments agree; ``summary_html`` for the card.
- Typst needs no escaping: text goes in as JSON data through ``sys_inputs``; a long unbroken run (a URL, a
  hash, a 300-character token) gets break opportunities (``breakable``), as CSS's ``overflow-wrap: anywhere``
  gives the HTML report, so that it wraps at its column's edge instead of running past the page.

Documents lay text out, so each value is first bounded (``clip``/``clip_expr``, cutting at a word
boundary): a 1 MB title would cost a layout engine gigabytes. The tables (CSV, JSON, Parquet) keep every
value in full. A search snippet is a fragment of its page and reads as one (``fragment_expr``).
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

#: At most this many characters of one title, heading or label reach a document.
TITLE_CHARS = 300
#: At most this many characters of one table cell, metadata value or list item reach a document.
CELL_CHARS = 2_000
#: At most this many characters of the summary reach a document.
SUMMARY_CHARS = 50_000
#: A URL longer than this is shown (clipped) but not linked: Typst refuses links over 8,000 bytes.
URL_CHARS = 2_048

_ENTITIES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))
#: HTML text and attribute values: markupsafe's (Jinja's autoescape) entities, ``&`` first.
_HTML_ENTITIES = (*_ENTITIES, ('"', "&#34;"), ("'", "&#39;"))
#: The partial word (and the space before it) that a cut at a fixed length leaves at the end; a cut keeps
#: at least all but this many characters, so text without spaces (CJK, a long token) is cut where it stands.
_PARTIAL_WORD = r"\s+\S{0,40}$"
#: A snippet that ends like a sentence (punctuation, then closing quotes or brackets).
_SENTENCE_END = r"[.!?…。！？][\"'”’»)\]]*$"
#: A snippet that starts in the middle of a sentence: its first word is in lower case ("iPhone" is not).
_MID_SENTENCE = r"^\p{Ll}[\p{Ll}'’-]*(?:[\s,;:]|$)"
#: Markdown punctuation that gets a backslash (``<``, ``>`` and ``&`` are entities instead).
_MD_PUNCT = r"([\\`*_\[\]#|~$!])"
#: Autolink starts in GFM: a scheme's ``://`` and ``www.``; their ``:`` or ``.`` is escaped.
_WWW = r"(?i)(www)\."
#: At the start of a paragraph these would begin a list, a thematic break or an ordered list.
_BLOCK_START = re.compile(r"^([-+=])|^(\d+)([.)])")
_CITATION = re.compile(r"\[(\d+)\]")
#: A run of this many characters with no break opportunity gets one every ``_BREAK_EVERY`` characters.
_LONG_WORD = re.compile(r"[^\s\u200b]{40,}")
_BREAK_EVERY = 6


def breakable(value: str) -> str:
    """``value`` with a zero-width space every few characters of any very long unbroken run (a URL, a
    hash, a row of digits), so that Typst wraps it at the text's edge instead of cutting it there."""
    if len(value) < 40 or not _LONG_WORD.search(value):
        return value
    return _LONG_WORD.sub(lambda m: "\u200b".join(m.group(0)[i:i + _BREAK_EVERY]
                                                  for i in range(0, len(m.group(0)), _BREAK_EVERY)), value)


def truncation_mark(length: int) -> str:
    """What follows the kept part of a clipped text: says that it was cut and how long it was."""
    return f"… [truncated from {length:,} characters]"


def clip(value: str, limit: int) -> str:
    """``value`` if it has at most ``limit`` characters, else at most its first ``limit``, cut at a word
    boundary where there is one near, and the truncation mark."""
    if len(value) <= limit:
        return value
    return re.sub(_PARTIAL_WORD, "", value[:limit + 1])[:limit] + truncation_mark(len(value))


def clip_expr(col: pl.Expr, limit: int) -> pl.Expr:
    """``clip`` over a String column (null stays null)."""
    length = col.str.len_chars()
    grouped = length.cast(pl.String).str.reverse().str.replace_all(r"(\d{3})", "$1,").str.reverse().str.strip_chars_start(",")
    mark = pl.lit("… [truncated from ") + grouped + pl.lit(" characters]")  # as truncation_mark: 1,048,576
    kept = col.str.slice(0, limit + 1).str.replace(_PARTIAL_WORD, "").str.slice(0, limit)
    return pl.when(length > limit).then(kept + mark).otherwise(col)


def fragment_expr(col: pl.Expr) -> pl.Expr:
    """Search snippets over a String column, each shown as the fragment it is, as search pages show them:
    "…" where the engine cut it before the end of a sentence (a trailing "..." becomes "…"), and "…" before
    it when it starts mid-sentence. Null and blank stay as they are."""
    text = col.str.strip_chars().str.replace(r"\s*\.\.\.$", "…")
    ended = pl.when(text.str.contains(_SENTENCE_END)).then(text).otherwise(text + pl.lit("…"))
    started = pl.when(text.str.contains(_MID_SENTENCE)).then(pl.lit("…") + ended).otherwise(ended)
    return pl.when(text.str.len_chars() > 0).then(started).otherwise(col)


def md_expr(col: pl.Expr) -> pl.Expr:
    """A String column as inline Markdown that every renderer (GFM, mistune, the PDF's) shows literally."""
    for char, entity in _ENTITIES:
        col = col.str.replace_all(char, entity, literal=True)
    col = col.str.replace_all(_MD_PUNCT, r"\$1").str.replace_all("://", r"\://", literal=True)
    return col.str.replace_all(_WWW, r"$1\.")


def md_text(value: Any) -> str:
    """``value`` as inline Markdown that renders literally: the scalar form of ``md_expr``.

    Line breaks are kept; callers that write one line replace them (a table cell uses ``<br>``).
    """
    text = str(value)
    for char, entity in _ENTITIES:
        text = text.replace(char, entity)
    text = re.sub(_MD_PUNCT, r"\\\1", text).replace("://", r"\://")
    return re.sub(_WWW, r"\1\\.", text)


def md_block_start(markdown: str) -> str:
    """A line of escaped Markdown (``md_text``) made safe to start a paragraph: a leading ``-``, ``+``,
    ``=`` or ``1.``/``1)`` (a list, a thematic break) gets a backslash too."""
    return _BLOCK_START.sub(lambda m: "\\" + m.group(1) if m.group(1) else m.group(2) + "\\" + m.group(3), markdown)


def summary_paragraphs(summary: str) -> list[list[str | int]]:
    """The summary's paragraphs (split at blank lines), each a list of text pieces and citation numbers."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", summary.replace("\r\n", "\n")) if p.strip()]
    return [[int(part) if i % 2 else part for i, part in enumerate(_CITATION.split(p)) if part] for p in paragraphs]


def html_text(value: Any) -> str:
    """``value`` as HTML text (or a quoted attribute value): ``&``, ``<``, ``>`` and quotes as entities."""
    text = str(value)
    for char, entity in _HTML_ENTITIES:
        text = text.replace(char, entity)
    return text


def html_expr(col: pl.Expr) -> pl.Expr:
    """``html_text`` over a String column (null stays null): how the HTML report's tables escape page text."""
    for char, entity in _HTML_ENTITIES:
        col = col.str.replace_all(char, entity, literal=True)
    return col


def summary_html(summary: str) -> str:
    """The plain-text summary as HTML paragraphs of escaped text, its ``[n]`` citations kept as text."""
    return "".join(
        "<p>" + "".join(f"[{piece}]" if isinstance(piece, int) else html_text(piece) for piece in paragraph) + "</p>"
        for paragraph in summary_paragraphs(clip(summary, SUMMARY_CHARS)))
