"""Notebooks nobody here wrote, and fixtures of what real notebooks hold, to PDF through typst-pdf: read back
with poppler (pdftotext, pdfimages, pdffonts, pdftoppm) for what a reader sees: math typeset, images at
their size, long lines whole, ANSI colours, HTML and DataFrames laid out, raw cells by format."""

from __future__ import annotations

import itertools
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from export_factory import pdf_text
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from torq_nb.export import TypstPDFExporter, typst_pdf
from torq_nb.export.texmath import safe_typst_math, to_typst
from torq_nb.export.typst_pdf import notebook_document, render_pdf

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"
OTHERS = FIXTURES / "others"
LONG_LINE = "".join(f"{i:03d}" for i in range(100))  # as in fixtures/notebooks/build.py


def run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def pdftext(path: Path) -> str:
    return pdf_text(path, "-raw")


def images(path: Path) -> list[dict[str, str]]:
    """pdfimages -list rows (soft masks left out)."""
    lines = run("pdfimages", "-list", str(path)).splitlines()
    heads = lines[0].split()
    return [r for r in (dict(zip(heads, line.split(), strict=False)) for line in lines[2:]) if r["type"] != "smask"]


def fonts(path: Path) -> str:
    return run("pdffonts", str(path))


def words(path: Path, page: int = 1) -> list[tuple[float, float, float, float, str]]:
    """Every word of a page with its box (xMin, yMin, xMax, yMax) in points, from pdftotext -bbox."""
    out = run("pdftotext", "-f", str(page), "-l", str(page), "-bbox", str(path), "-")
    pattern = r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>'
    return [(float(a), float(b), float(c), float(d), w) for a, b, c, d, w in re.findall(pattern, out)]


def colour_of(pdf: Path, page: int, box: tuple[float, float, float, float]) -> tuple[int, int, int]:
    """The mean colour of the inked (non-white, non-grey-background) pixels in a box of a page rendered at 144 dpi."""
    ppm = subprocess.run(["pdftoppm", "-r", "144", "-f", str(page), "-l", str(page), "-singlefile", str(pdf)],
                         capture_output=True, check=True).stdout
    header, width, _height, _, pixels = ppm.split(maxsplit=4)
    assert header == b"P6"
    w = int(width)
    x0, y0, x1, y1 = (round(v * 2) for v in box)
    inked = [pixels[(y * w + x) * 3:(y * w + x) * 3 + 3] for y in range(y0, y1) for x in range(x0, x1)]
    inked = [p for p in inked if max(p) - min(p) > 40 or max(p) < 120]  # coloured or dark, not paper
    assert inked, "no ink in the box"
    return tuple(sum(p[i] for p in inked) // len(inked) for i in range(3))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def cli_pdfs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two fixture notebooks through ``jupyter nbconvert --to typst-pdf``, with its log."""
    out = tmp_path_factory.mktemp("cli")
    pdfs = {}
    for name in ("markdown", "outputs"):
        done = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "typst-pdf", str(FIXTURES / f"{name}.ipynb"),
                               "--output-dir", str(out)], capture_output=True, text=True, check=True)
        assert "Typst:" not in done.stderr, done.stderr  # no Typst warning (they are logged: see below)
        pdfs[name] = out / f"{name}.pdf"
    return pdfs


def test_markdown_math_is_typeset_not_printed_as_source(cli_pdfs: dict[str, Path]) -> None:
    pdf = cli_pdfs["markdown"]
    text = pdftext(pdf)
    assert "NewCMMath" in fonts(pdf)  # Typst's math font: math was typeset
    for source in ("$", "\\alpha", "\\frac", "\\begin{align}", "\\int", "\\newcommand", "\\tag"):
        assert source not in text.replace("\\unknownmacro{q}", "").replace("a price of $5", ""), source
    assert "a price of $5 stays text" in text  # an escaped dollar is a dollar
    assert "𝛼2" in text and "𝛾2" in text and "(99.4)" in text  # math italic Greek, and the equation's \tag
    assert "ℝ" in text  # \R from the notebook's own \newcommand
    assert "\\unknownmacro{q}" in text  # what does not convert prints as its TeX, the export does not fail


def test_markdown_images_appear_at_their_size_and_remote_ones_say_so(cli_pdfs: dict[str, Path]) -> None:
    pdf = cli_pdfs["markdown"]
    found = images(pdf)
    # The attachment, the relative path and the <img> tag: a 160 x 90 px PNG each; natural size is 96 ppi
    # (a CSS pixel as 0.75 pt); the <img width="100"> is drawn 100 px wide, 160 / (100 * 0.75 / 72) = 154 ppi.
    assert [(r["width"], r["height"]) for r in found] == [("160", "90")] * 3
    assert [r["x-ppi"] for r in found] == ["96", "96", "154"]
    text = pdftext(pdf)
    assert "[image: remote logo] (not fetched)" in text
    assert "[image: outside]" in text  # ../../../pyproject.toml is outside the notebook's folder: refused


def test_html_in_markdown_and_raw_cells_by_format(cli_pdfs: dict[str, Path]) -> None:
    pdf = cli_pdfs["markdown"]
    text = pdftext(pdf)
    lines = text.splitlines()
    assert "An HTML heading" in lines and "HTML details" in lines and "Hidden text" in lines  # not run together
    heading = next(w for w in words(pdf) if w[4] == "heading")
    body = next(w for w in words(pdf) if w[4] == "Hidden")
    assert heading[3] - heading[1] > (body[3] - body[1]) * 1.2  # <h2> is set as a heading, larger than body text
    assert "Warning: an alert box with" in text
    assert "#set page(width: 1pt)" in text  # a raw Typst cell is shown, never compiled
    assert run("pdfinfo", str(pdf)).count("595.276 x 841.89") == 1  # A4: the raw cell changed nothing
    assert "raw markdown rendered" in text and "*raw markdown*" not in text
    assert ".. note:: raw reST as code" in text
    assert "𝐸 = 𝑚𝑐2" in text  # the raw LaTeX cell's equation is typeset (math italic)


def test_long_lines_wrap_whole_and_ansi_colours_show(cli_pdfs: dict[str, Path]) -> None:
    pdf = cli_pdfs["outputs"]
    text = pdftext(pdf).replace("\n", "")
    assert text.count(LONG_LINE) == 2  # in the code and in its output: all 300 characters, not cut at the edge
    assert max(w[2] for w in words(pdf)) < 595.276 - 56  # nothing runs past the right margin (2 cm)
    assert "\x1b" not in text and "[0;31m" not in text and "[31m" not in text.replace("\\x1b[31m", "")
    def last(word: str) -> tuple[float, float, float, float, str]:  # the output's, below the code's
        return max((w for w in words(pdf) if w[4] == word), key=lambda w: w[1])
    red, green, plain = last("red"), last("green"), last("plain")
    r, g, b = colour_of(pdf, 1, red[:4])
    assert r > g + 60 and r > b + 60  # JupyterLab's ANSI red
    r, g, b = colour_of(pdf, 1, green[:4])
    assert g > r + 60 and g > b + 30
    r, g, b = colour_of(pdf, 1, plain[:4])
    assert max(r, g, b) < 100  # plain stays black
    assert "ZeroDivisionError: division by zero" in text


def test_rich_outputs_prefer_html_latex_and_images_over_plain_text(cli_pdfs: dict[str, Path]) -> None:
    pdf = cli_pdfs["outputs"]
    text = pdftext(pdf)
    assert "HTML heading" in text and "An HTML() paragraph." in text
    assert "IPython.core.display" not in text  # not the objects' text/plain reprs
    assert "NewCMMath" in fonts(pdf)  # SymPy's and Latex()'s text/latex typeset
    assert "\\displaystyle" not in text and text.count("\\frac{\\pi^2}") == 1  # in the code only
    html_png = [r for r in images(pdf) if r["enc"] == "image"]  # HTML's <img width="50">, from the notebook's folder
    assert [(r["width"], r["x-ppi"]) for r in html_png] == [("160", "307")]
    jpeg = [r for r in images(pdf) if r["enc"] == "jpeg"]
    assert [(r["width"], r["x-ppi"]) for r in jpeg] == [("160", "96")]  # natural size, not the text's width
    assert re.search(r"\+DejaVuSans\s", fonts(pdf))  # the SVG's "sans-serif" text: a sans font, not the body's serif
    assert "Sans SVG label" in text  # SVG text in a sans-serif font, as it asks


def test_wide_dataframe_fits_without_overprinting_and_numbers_align_right(cli_pdfs: dict[str, Path]) -> None:
    pdf = cli_pdfs["outputs"]
    found = next(ws for ws in (words(pdf, page) for page in (1, 2, 3)) if sum(w[4] == "label" for w in ws) >= 12)
    label = [w for w in found if w[4] == "label"]
    assert len(label) >= 12  # every header label, wrapped within its column
    top = min(w[1] for w in label) - 30
    bottom = max(w[3] for w in found if w[4] == "-11.00")
    page_words = [w for w in found if top < w[1] < bottom]  # the table's band on its page
    lines: dict[int, list[tuple[float, float, float, float, str]]] = {}
    for w in page_words:
        lines.setdefault(round(w[1]), []).append(w)
    for line in lines.values():
        line.sort()
        for a, b in itertools.pairwise(line):
            assert a[2] <= b[0] + 0.5, f"{a[4]!r} overprints {b[4]!r}"
    assert max(w[2] for w in page_words) < 595.276 - 56
    column = [w for w in page_words if w[4] in ("1000.50", "-1.00")]
    assert len(column) == 2 and abs(column[0][2] - column[1][2]) < 0.5  # right edges aligned
    assert abs(column[0][0] - column[1][0]) > 3


def test_pdfinfo_reads_the_pdf_without_complaint(cli_pdfs: dict[str, Path]) -> None:
    for pdf in cli_pdfs.values():
        done = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
        assert done.stderr == ""  # was "Syntax Error: Suspects object is wrong type (boolean)"
        assert "Tagged:          yes" in done.stdout  # still a tagged (accessible) PDF


def test_prompt_stays_with_its_code_at_a_page_foot(tmp_path: Path) -> None:
    # Page 1 filled to every height around its foot (paragraphs, then a code block of 1-5 lines); the old
    # template left "[7]" alone at page 1's foot for (40, 0) while its code went to page 2.
    moved = 0
    for paragraphs in range(38, 44):
        for lines in range(1, 6):
            md = "\n\n".join(f"Line {i}." for i in range(paragraphs)) + "\n\n```\n" + "c\n" * lines + "```"
            nb = new_notebook(cells=[new_markdown_cell(md), new_code_cell("x = 1\ny = 2", execution_count=7)])
            pdf = tmp_path / "p.pdf"
            pdf.write_bytes(render_pdf(nb))
            first = run("pdftotext", "-f", "1", "-l", "1", str(pdf), "-")
            assert ("[7]" in first) == ("x = 1" in first), (paragraphs, lines)
            moved += "[7]" not in first
    assert 0 < moved < 30  # the cell went to page 2 in some of them: the page foot was reached


def test_in_process_export_matches_the_cli(cli_pdfs: dict[str, Path], tmp_path: Path) -> None:
    for name, cli_pdf in cli_pdfs.items():
        pdf, _ = TypstPDFExporter().from_filename(str(FIXTURES / f"{name}.ipynb"))
        path = tmp_path / f"{name}.pdf"
        path.write_bytes(pdf)
        assert pdftext(path) == pdftext(cli_pdf)
        assert len(images(path)) == len(images(cli_pdf))


def test_the_template_gets_ansi_runs_and_math_as_data(tmp_path: Path) -> None:
    nb = nbformat.read(FIXTURES / "outputs.ipynb", as_version=4)
    doc = notebook_document(nb, tmp_path)
    coloured = next(o for b in doc["blocks"] if b["t"] == "cell" for o in b["outputs"] if "runs" in o)
    assert coloured["runs"][0] == ["red text", "#e75c58", None, False]
    assert ["bold green", "#00a250", None, True] in coloured["runs"]
    maths = [o for b in doc["blocks"] if b["t"] == "cell" for o in b["outputs"] if o["t"] == "math"]
    assert len(maths) == 2 and all(m["v"] and m["block"] for m in maths)


def test_math_typst_refuses_is_printed_as_tex_and_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A converter's mistake (here forced: Typst source with an unclosed call) fails the compile; the span is
    # found (by halving), printed as its TeX, and the export goes on.
    real = typst_pdf.to_typst
    monkeypatch.setattr(typst_pdf, "to_typst", lambda tex, macros=None: ("frac(1,", "") if "oplus" in tex else real(tex, macros))
    nb = new_notebook(cells=[new_markdown_cell("Circled $a \\oplus b$ and fine $x^2$.")])
    records: list[logging.LogRecord] = []
    log = logging.getLogger("test.math")
    log.addHandler(type("H", (logging.Handler,), {"emit": lambda self, r: records.append(r)})())
    path = tmp_path / "m.pdf"
    path.write_bytes(render_pdf(nb, log=log))
    text = pdftext(path)
    assert "a \\oplus b" in text and "𝑥2" in text
    assert any("refused 1 converted math span" in r.getMessage() for r in records)


def test_typst_warnings_are_logged_not_discarded(tmp_path: Path) -> None:
    template = tmp_path / "t.typ"
    template.write_text('#set text(font: "No Such Font Family")\nHello')
    records: list[logging.LogRecord] = []
    log = logging.getLogger("test.warnings")
    log.addHandler(type("H", (logging.Handler,), {"emit": lambda self, r: records.append(r)})())
    render_pdf(new_notebook(), template=template, log=log)
    assert any("unknown font family" in r.getMessage() for r in records)


HOSTILE_MATH = [
    '\\text{#import "@preview/cetz:0.2.2": *}', '#read("/etc/passwd")', '\\#read("/etc/passwd")',
    '\\text{"} #read("/etc/passwd") \\text{"}', '\\operatorname{#eval("1")}', '\\mathrm{\\#}\\, x',
]


@pytest.mark.parametrize("tex", HOSTILE_MATH)
def test_math_never_becomes_typst_code(tex: str, tmp_path: Path) -> None:
    done = to_typst(tex)
    assert done is None or safe_typst_math(done[0])
    nb = new_notebook(cells=[new_markdown_cell(f"Math: ${tex}$ end.")])
    path = tmp_path / "h.pdf"
    path.write_bytes(render_pdf(nb))  # offline: an import would fail the export, a read would print the file
    text = pdftext(path)
    assert "root:x:0:0" not in text and "end." in text


def test_safe_typst_math_allows_plain_values_only() -> None:
    assert safe_typst_math('mat(delim: #none, 1, 2)') and safe_typst_math('op("max", limits: #true)_x')
    assert safe_typst_math('"a #b" x') and safe_typst_math("\\# x")
    for code in ('#import "@preview/x:0.1.0"', "#none.map(x => x)", '#read("x")', "x #h(1em)", '"open #read("x")'):
        assert not safe_typst_math(code), code


def _others() -> list[Path]:
    return sorted(OTHERS.glob("*/*.ipynb"))


@pytest.mark.parametrize("path", _others(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_notebooks_written_by_others_convert_with_text_math_and_images(path: Path, tmp_path: Path) -> None:
    pdf, _ = TypstPDFExporter().from_filename(str(path))
    out = tmp_path / "out.pdf"
    out.write_bytes(pdf)
    nb = nbformat.read(path, as_version=4)
    text = " ".join(pdftext(out).split())
    # The first words of every Markdown heading are printed.
    for cell in nb.cells:
        if cell.cell_type == "markdown" and (m := re.match(r"#+ +([A-Za-z][\w ]{3,30}?)\W", cell.source)):
            assert m.group(1).strip() in text, m.group(1)
    expected = EXPECTED[f"{path.parent.name}/{path.stem}"]
    assert len(images(out)) == expected["images"]
    assert ("NewCMMath" in fonts(out)) == expected["math"]
    for phrase in expected.get("text", []):
        assert phrase in text, phrase


#: What each notebook must show: its images (pdfimages rows), whether it has math, phrases of its text.
EXPECTED: dict[str, dict[str, object]] = {
    "nbsphinx/markdown-cells": {"images": 4, "math": True, "text": [
        "Inline equations like e𝑖𝜋 = −1", "[image: Python logo (remote)] (not fetched)", "Note"]},
    "nbsphinx/code-cells": {"images": 0, "math": False, "text": ["Special Display Formats", "ANSI Colors"]},
    "nbsphinx/raw-cells": {"images": 2, "math": False, "text": ["Raw Cells"]},
    "nbconvert/notebook1": {"images": 0, "math": True, "text": []},  # its text/latex typeset, not its PNGs of it
    "nbconvert/notebook3_with_errors": {"images": 0, "math": False, "text": ["deliberately throws an exception"]},
    "nbconvert/notebook4_jpeg": {"images": 1, "math": False, "text": []},
    "nbconvert/markdown_display_priority": {"images": 1, "math": False, "text": []},
    "nbconvert/notebook5_embed_images": {"images": 3, "math": False, "text": []},
}


def test_expected_covers_every_notebook_of_others() -> None:
    assert {f"{p.parent.name}/{p.stem}" for p in _others()} == set(EXPECTED)
    assert json.loads((OTHERS / "nbsphinx" / "markdown-cells.ipynb").read_text())["nbformat"] == 4


def test_stream_output_without_colour_is_one_plain_block(tmp_path: Path) -> None:
    nb = new_notebook(cells=[new_code_cell("print(1)", outputs=[new_output("stream", name="stdout", text="1\n")])])
    doc = notebook_document(nb, tmp_path)
    assert doc["blocks"][0]["outputs"] == [{"t": "output", "kind": "stream", "v": "1"}]


def test_markdown_images_are_read_only_inside_the_notebook_folder(tmp_path: Path) -> None:
    folder = tmp_path / "nb"
    (folder / "img").mkdir(parents=True)
    picture = (FIXTURES / "images" / "relative.png").read_bytes()
    (tmp_path / "outside.png").write_bytes(picture)
    (folder / "img" / "inside.png").write_bytes(picture)
    (folder / "img" / "link.png").symlink_to(tmp_path / "outside.png")  # a link leading out of the folder
    (folder / "img" / "notes.png").write_text("not an image")
    cells = [new_markdown_cell(f"![{alt}]({url})") for alt, url in (
        ("inside", "img/inside.png"), ("spaced", "img/inside.png?x=1#y"), ("parent", "../outside.png"),
        ("absolute", str(tmp_path / "outside.png")), ("link", "img/link.png"), ("fake", "img/notes.png"),
        ("missing", "img/none.png"), ("file url", f"file://{tmp_path / 'outside.png'}"))]
    (tmp_path / "root").mkdir()
    doc = notebook_document(new_notebook(cells=cells), tmp_path / "root", base=folder)
    shown = [n["c"][0] for n in doc["blocks"]]
    assert [n["t"] for n in shown[:2]] == ["image", "image"]
    assert [n.get("v") for n in shown[2:]] == [f"[image: {alt}]" for alt in
                                                ("parent", "absolute", "link", "fake", "missing", "file url")]


def test_polars_and_pandas_html_tables_right_align_their_number_columns(tmp_path: Path) -> None:
    import pandas as pd
    import polars as pl
    from IPython.core.formatters import DisplayFormatter

    outputs = [new_output("execute_result", data=DisplayFormatter().format(frame)[0], execution_count=1) for frame in
               (pl.DataFrame({"a": [1, 2], "name": ["x", "y"], "f": [1.5, None]}),
                pd.DataFrame({"a": [1, 2], "name": ["x", "y"], "f": [1.5, None]}))]
    doc = notebook_document(new_notebook(cells=[new_code_cell("x", outputs=outputs)]), tmp_path)
    tables = [o for o in doc["blocks"][0]["outputs"] if o["t"] == "table"]
    assert [t["align"] for t in tables] == [["right", "left", "right"], ["right", "right", "left", "right"]]
    texts = [o for o in doc["blocks"][0]["outputs"] if o["t"] == "p"]
    assert texts and "shape: (2, 3)" in json.dumps(texts)  # Polars' shape line is kept, as text
