"""TeX math (as notebooks write it: MathJax's dialect) to Typst math source, through ``tex2typst``.

The result is only ever evaluated by the template with ``eval(src, mode: "math")``: math markup, no
code. In math mode Typst resolves names in its math scope only (``read``, ``eval``, ``sys`` and ``import``
are unknown there: checked with typst 0.15), so code needs a ``#``; ``safe_typst_math`` refuses any
output with a ``#`` outside a string, except a few plain values. Neither a notebook's TeX nor a converter
bug can so reach ``#import "@preview/..."`` (Typst would download the package: seen) or ``#read``; and
code that did run would still read only inside the compile's root, a private folder holding the
notebook's images and nothing else (Typst refuses paths that leave it: seen). What does not convert is
printed as its TeX source.

tex2typst, measured on 117 real spans (benchmarks/README.md, "Notebooks to PDF"), converts MathJax's
environments and most commands; the rewrites below cover what it lacks and notebooks use: labels and
tags, equation-like environments, size and colour commands, text-mode commands and operator names.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

#: A span longer than this is printed as its source (conversion cost grows with it).
MATH_CHARS = 4_000

#: Environments that only say "display this": their body is the math (rows split by ``\\``).
_PLAIN_ENVS = ("equation", "gather", "multline", "displaymath", "math", "split", "eqnarray", "flalign")
#: Operator names tex2typst does not know; Typst typesets ``op("name")`` upright, ``limits`` below in display.
_OPERATORS = ("arg", "deg", "dim", "hom", "ker", "sinh", "cosh", "tanh", "coth", "arcsin", "arccos", "arctan",
              "exp", "lg")
_LIMIT_OPERATORS = ("max", "min", "sup", "inf", "det", "Pr", "gcd", "limsup", "liminf")
_SIMPLE = {
    r"\lvert": r"\vert", r"\rvert": r"\vert", r"\lVert": r"\Vert", r"\rVert": r"\Vert", r"\square": r"\Box",
    r"\!": "", r"\limits": "", r"\nolimits": "", r"\nonumber": "", r"\notag": "", r"\displaystyle": "",
    r"\textstyle": "", r"\scriptstyle": "",
}
#: Commands of one or two arguments rewritten to something tex2typst knows (``@1``, ``@2``: the arguments).
_ONE_ARG = {
    "textbf": r"\mathbf{\text{@1}}", "textit": r"\mathit{\text{@1}}", "emph": r"\mathit{\text{@1}}",
    "texttt": r"\mathtt{\text{@1}}", "textrm": r"\text{@1}", "mbox": r"\text{@1}", "textsf": r"\mathsf{\text{@1}}",
    "boxed": "{@1}", "phantom": "", "hspace": r"\quad", "label": "", "color": "", "xrightarrow": r"\overset{@1}{\longrightarrow}",
    "xleftarrow": r"\overset{@1}{\longleftarrow}",
}
_TWO_ARG = {"stackrel": r"\overset{@1}{@2}", "textcolor": "{@2}"}
_SIZE = re.compile(r"\\[Bb]igg?[lrm]?(?![A-Za-z])")
_NAME = re.compile(r"\\([A-Za-z]+)\*?")
_BEGIN = re.compile(r"\\(begin|end)\{(" + "|".join(_PLAIN_ENVS) + r")\*?\}(\{[^{}]*\})?")
_ALIGN_ALIAS = re.compile(r"\\(begin|end)\{(align|alignat|aligned|alignedat)\*?\}(\{\d+\})?")
_TAG = re.compile(r"\\tag\*?\{([^{}]*)\}")
_DEF = re.compile(r"\\(?:re)?newcommand\*?\s*\{?\s*(\\[A-Za-z]+)\s*\}?\s*(?:\[(\d)\])?\s*|\\def\s*(\\[A-Za-z]+)\s*")
#: Names tex2typst 0.1 writes that Typst (0.12 to 0.15) does not know, and Typst's own.
_RENAMED = {"alef": "aleph", "times.circle": "times.o", "plus.circle": "plus.o", "minus.circle": "minus.o",
            "dot.circle": "dot.o"}
_RENAMED_NAME = re.compile(r'(?<![A-Za-z."])(' + "|".join(re.escape(k) for k in _RENAMED) + r')(?![A-Za-z.])')
#: Plain values that may follow ``#`` in converter output (``mat(delim: #none)``, ``op(..., limits: #true)``).
_VALUES = re.compile(r"#(none|true|false|center|left|right)(?![\w.(\[{-])")


def _group(s: str, i: int) -> tuple[str, int] | None:
    """The braced group starting at ``s[i]`` (after spaces): its body and the index past it."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s) or s[i] != "{":
        return None
    depth = 0
    for j in range(i, len(s)):
        if s[j] == "\\":
            continue
        if s[j] == "{" and (j == 0 or s[j - 1] != "\\"):
            depth += 1
        elif s[j] == "}" and s[j - 1] != "\\":
            depth -= 1
            if depth == 0:
                return s[i + 1:j], j + 1
    return None


def definitions(tex: str) -> tuple[dict[str, str], str]:
    """The argument-less ``\\newcommand``/``\\renewcommand``/``\\def`` definitions in ``tex`` (MathJax keeps
    them for the whole page), and the TeX with them removed. A definition with arguments stays (the
    span then prints as its source)."""
    macros: dict[str, str] = {}
    out, pos = [], 0
    for m in _DEF.finditer(tex):
        if m.start() < pos or m.group(2):
            continue
        body = _group(tex, m.end())
        if body is None:
            continue
        macros[m.group(1) or m.group(3)] = body[0]
        out.append(tex[pos:m.start()])
        pos = body[1]
    out.append(tex[pos:])
    return macros, "".join(out)


def _rewrite(tex: str) -> tuple[str, str]:
    """MathJax-only commands rewritten for tex2typst; returns the TeX and the equation's tag, if any."""
    tag = ""
    if m := _TAG.search(tex):
        tag = m.group(1)
        tex = _TAG.sub("", tex)
    tex = _BEGIN.sub("", tex)
    tex = _ALIGN_ALIAS.sub(lambda m: "\\" + m.group(1) + "{aligned}", tex)
    tex = _SIZE.sub("", tex)
    out: list[str] = []
    i = 0
    while (m := _NAME.search(tex, i)) is not None:
        out.append(tex[i:m.start()])
        name, i = m.group(1), m.end()
        if m.group(0) in _SIMPLE and not m.group(0).endswith("*"):
            out.append(_SIMPLE[m.group(0)])
        elif name in _OPERATORS:
            out.append(r"\operatorname{" + name + "}")
        elif name in _LIMIT_OPERATORS:
            out.append(r"\operatorname*{" + name + "}")
        elif name in _ONE_ARG and (g := _group(tex, i)):
            out.append(_ONE_ARG[name].replace("@1", g[0]))
            i = g[1]
        elif name in _TWO_ARG and (a := _group(tex, i)) and (b := _group(tex, a[1])):
            out.append(_TWO_ARG[name].replace("@1", a[0]).replace("@2", b[0]))
            i = b[1]
        else:
            out.append(m.group(0))
    out.append(tex[i:])
    return "".join(out).strip(), tag


def safe_typst_math(src: str) -> bool:
    """Whether ``src`` stays in math markup: no ``#`` (code) outside string literals but plain values."""
    in_string = False
    i = 0
    while i < len(src):
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            in_string = not in_string
        elif c == "#" and not in_string and not _VALUES.match(src, i):
            return False
        i += 1
    return not in_string


@lru_cache(maxsize=4096)
def _convert(tex: str, macros: tuple[tuple[str, str], ...]) -> tuple[str, str] | None:
    import tex2typst  # ~10 ms, and ~50 ms for its JavaScript engine's first call: only for notebooks with math

    body, tag = _rewrite(tex)
    if not body:
        return "", tag
    try:
        src = tex2typst.tex2typst(body, non_strict=False, custom_tex_macros=dict(macros) or None)
    except Exception:  # tex2typst raises a bare RuntimeError (or worse) for any TeX it does not know
        return None
    src = _RENAMED_NAME.sub(lambda m: _RENAMED[m.group(1)], src)
    return (src, tag) if safe_typst_math(src) else None


def to_typst(tex: str, macros: dict[str, str] | None = None) -> tuple[str, str] | None:
    """Typst math source for the TeX ``tex`` and its ``\\tag`` (or ""); None if it does not convert safely.
    ``macros``: the notebook's own definitions (``definitions``)."""
    if len(tex) > MATH_CHARS or not tex.strip():
        return None
    expanded = {name: _rewrite(body)[0] for name, body in (macros or {}).items()}
    return _convert(tex, tuple(sorted(expanded.items())))


def math_node(tex: str, block: bool, macros: dict[str, str] | None = None) -> dict[str, Any]:
    """A math node: ``v`` the Typst source (the template evaluates it as math) or, when it does not
    convert, no ``v`` and the template prints ``tex`` as code."""
    node: dict[str, Any] = {"t": "math", "tex": tex, "block": block}
    if (done := to_typst(tex, macros)) is not None:
        node["v"], node["tag"] = done
    return node
