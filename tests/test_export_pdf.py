"""PDF exports read back with poppler: text, links, fonts, page size, long tables, and the nbconvert CLI."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import export_factory as factory
import nbformat
import polars as pl
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from torq_nb.export import ExportManager, TypstPDFExporter, export, to_notebook, to_pdf

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")

HOSTILE = ['#read("/etc/passwd")', "]#set page(width: 1pt)", "$x^2$ @source-1 <lbl> *bold* `raw` \\ // not a comment"]


def pdftext(path: Path, *args: str) -> str:
    return factory.pdf_text(path, "-raw", *args)


def joined(text: str) -> str:
    """The text with line breaks removed, so that wrapped URLs read as one string."""
    return text.replace("\n", "")


def pdfinfo(path: Path) -> dict[str, str]:
    out = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


def link_uris(path: Path) -> list[str]:
    return [m.decode() for m in re.findall(rb"/URI ?\(([^)]*)\)", path.read_bytes())]


@pytest.fixture
def report_pdf(tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    rows = [
        factory.row(1, title="Café crème and naïve façades — Ångström"),
        factory.row(2, title="한국어 제목과 中文标题"),
        factory.row(3, title=HOSTILE[0]),
        factory.row(4, title=HOSTILE[1], snippet=HOSTILE[2]),
        factory.row(5, url="https://example.org/" + "segment/" * 20 + "end?query=" + "q" * 60),
        factory.row(6, status="error", error="HTTP 503 | upstream <timeout>", http_status=503),
    ]
    results = factory.results(rows=rows, topic=HOSTILE[0], summary="Accents print [1]. CJK prints [2].")
    path = ExportManager().export_to_pdf(results, tmp_path / "report.pdf")
    return path, rows


def test_pdf_has_title_metadata_and_page_numbers(report_pdf: tuple[Path, list[dict[str, object]]]) -> None:
    path, _ = report_pdf
    text = pdftext(path)
    assert text.startswith(f"Research: {HOSTILE[0]}")
    for field in ("Topic:", "Depth: standard", "Source: wikipedia", "Date: 25 November 2026, 12:00 UTC", "Duration: 4.2 s",
                  "6 results: 5 fetched, 1 failed"):
        assert field in text
    pages = int(pdfinfo(path)["Pages"])
    assert f"1 / {pages}" in text


def test_hostile_text_prints_literally_and_page_size_is_untouched(report_pdf: tuple[Path, list[dict[str, object]]]) -> None:
    path, _ = report_pdf
    text = joined(pdftext(path))
    for hostile in HOSTILE:
        assert hostile.replace(" ", "") in text.replace(" ", "")
    assert "root:x:0:0" not in text
    assert pdfinfo(path)["Page size"].strip().startswith("595.276 x 841.89")  # A4, not 1pt wide


def test_every_url_is_printed_and_clickable(report_pdf: tuple[Path, list[dict[str, object]]]) -> None:
    path, rows = report_pdf
    text = joined(pdftext(path))
    uris = link_uris(path)
    for row in rows:
        assert row["url"] in uris  # every title links to its page
    for row in rows[:2] + rows[5:]:  # the cited sources' and the failed page's addresses are printed too
        assert row["url"] in text
    assert b"/GoTo" in path.read_bytes() or b"/Dest" in path.read_bytes()  # [n] citations jump to the source list


def test_accents_and_cjk_print_with_real_fonts(report_pdf: tuple[Path, list[dict[str, object]]]) -> None:
    path, _ = report_pdf
    text = pdftext(path)
    assert "Café crème and naïve façades — Ångström" in text
    if not list(Path("/usr/share/fonts").rglob("NotoSerifCJK*")) and not list(Path("/usr/share/fonts").rglob("NotoSansCJK*")):
        pytest.skip("needs fonts-noto-cjk")
    assert "한국어 제목과 中文标题" in text
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    assert "CJK" in fonts  # the glyphs come from a CJK font, not .notdef boxes


def test_long_table_breaks_across_pages_with_its_header_repeated(tmp_path: Path) -> None:
    path = export(factory.results(300), tmp_path / "long.pdf")
    pages = int(pdfinfo(path)["Pages"])
    assert pages >= 4
    for page in (2, 3):
        text = pdftext(path, "-f", str(page), "-l", str(page))
        assert re.search(r"#\s*Title\s*Domain\s*Status\s*Words\s*Published\s*Snippet", text), text[:300]


def test_empty_results_make_a_pdf_that_says_so(tmp_path: Path) -> None:
    path = export(factory.results(0, summary=""), tmp_path / "empty.pdf")
    assert "There were no results." in pdftext(path)


def _png(width: int, height: int) -> bytes:
    raw = b"".join(b"\x00" + b"\x20\x60\xa0" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def any_notebook() -> nbformat.NotebookNode:
    """A notebook that is not a report: Markdown, code, a stream, an error, an image and an HTML table."""
    nb = new_notebook(metadata={"language_info": {"name": "python"}})
    png = base64.b64encode(_png(200, 80)).decode()
    nb.cells = [
        new_markdown_cell("# Plain notebook\n\nText with *emphasis*, `code`, a [link](https://example.net/page) and a "
                          "[jump](#Later-section).\n\n| k | v |\n|---|---|\n| alpha | 1 |"),
        new_code_cell("print('hello')", execution_count=1,
                      outputs=[new_output("stream", name="stdout", text="hello from stdout\n")]),
        new_code_cell("df", execution_count=2, outputs=[new_output(
            "execute_result", execution_count=2,
            data={"text/plain": "frame", "text/html": "<table><tr><th>col_a</th><th>col_b</th></tr>"
                  "<tr><td>cell-1</td><td>&lt;script&gt;</td></tr></table>"})]),
        new_code_cell("plot()", execution_count=3, outputs=[new_output("display_data", data={"image/png": png})]),
        new_code_cell("1/0", execution_count=4, outputs=[new_output(
            "error", ename="ZeroDivisionError", evalue="division by zero",
            traceback=["\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"])]),
        new_markdown_cell("## Later section\n\n<div>raw <b>html</b> <script>alert(1)</script></div>"),
    ]
    return nb


def test_exporter_renders_any_notebook() -> None:
    pdf, resources = TypstPDFExporter().from_notebook_node(any_notebook())
    assert resources["output_extension"] == ".pdf"
    assert pdf.startswith(b"%PDF")
    assert b"/Subtype /Image" in pdf or b"/Subtype/Image" in pdf


def test_nbconvert_cli_makes_a_pdf_from_any_notebook(tmp_path: Path) -> None:
    source = tmp_path / "any.ipynb"
    nbformat.write(any_notebook(), source)
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "typst-pdf", str(source)],
                   check=True, capture_output=True, timeout=120)
    text = pdftext(tmp_path / "any.pdf")
    for expected in ("Plain notebook", "print('hello')", "hello from stdout", "col_a", "cell-1", "<script>",
                     "ZeroDivisionError: division by zero", "Later section", "raw html", "alpha"):
        assert expected in text
    assert "\x1b" not in text and "[0;31m" not in text
    assert "alert(1)" not in text  # script bodies in Markdown HTML are not content
    assert "https://example.net/page" in link_uris(tmp_path / "any.pdf")


def test_missing_tools_of_other_engines_are_named() -> None:
    if shutil.which("xelatex") is None:
        with pytest.raises(RuntimeError, match="xelatex"):
            to_pdf(factory.results(2), engine="latex")
    with pytest.raises(ValueError, match="typst"):
        to_pdf(factory.results(2), engine="prince")  # type: ignore[arg-type]


def test_webpdf_engine_works_or_says_what_to_install() -> None:
    try:
        pdf = to_pdf(factory.results(2), engine="webpdf")
    except RuntimeError as exc:
        assert "playwright install chromium" in str(exc)
    else:
        assert pdf.startswith(b"%PDF")


def test_broken_links_duplicate_anchors_and_bad_images_still_make_a_pdf(tmp_path: Path) -> None:
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell('<a id="dup"></a> <a id="dup"></a> [to dup](#dup) [nowhere](#missing) [head](#Head) '
                          "[js](javascript:alert(1))\n\n# Head\n\n![remote](https://example.org/x.png)"),
        new_code_cell("x", execution_count=1, outputs=[
            new_output("display_data", data={"text/markdown": "[inner](#Head) <a id='Head'></a>"}),
            new_output("display_data", data={"image/png": "bm90IGEgcG5n", "text/plain": "fallback text"}),
        ]),
    ]
    pdf, _ = TypstPDFExporter().from_notebook_node(nb)
    path = tmp_path / "edge.pdf"
    path.write_bytes(pdf)
    text = pdftext(path)
    for expected in ("to dup", "nowhere", "head", "js", "[image: remote]", "inner", "fallback text"):
        assert expected in text
    assert link_uris(path) == ["https://example.org/x.png"]  # javascript: is no link


def test_report_notebook_edited_after_export_prints_the_edit(tmp_path: Path) -> None:
    nb = to_notebook(factory.results(3))
    results_cell = next(c for c in nb.cells if c.source.startswith("## Results"))
    assert all(not cell.metadata for cell in nb.cells)  # no tree travels in the notebook: its PDF parses the Markdown
    results_cell.source = results_cell.source.replace("Result number 2", "Edited by hand")
    pdf, _ = TypstPDFExporter().from_notebook_node(nb)
    path = tmp_path / "edited.pdf"
    path.write_bytes(pdf)
    text = pdftext(path)
    assert "Edited by hand" in text
    assert "Result number 1" in text and "Result number 3" in text


def test_forged_tree_in_cell_metadata_is_ignored(tmp_path: Path) -> None:
    nb = new_notebook()
    source = "Only this text."
    forged = [{"t": "p", "c": [{"t": "link", "url": "javascript:alert(1)", "c": [{"t": "text", "v": "forged"}]}]}]
    nb.cells = [new_markdown_cell(source, metadata={"torq_nb": {"typst_tree": json.dumps(forged)}})]  # as older reports had
    pdf, _ = TypstPDFExporter().from_notebook_node(nb)
    path = tmp_path / "forged.pdf"
    path.write_bytes(pdf)
    assert "Only this text." in pdftext(path)
    assert "forged" not in pdftext(path)
    assert link_uris(path) == []


#: Exports a 1 MB topic, or rows whose every text field (and the summary) is 1 MB, to PDF in a child
#: process, which prints its peak RSS. The address space is capped, so a regression fails instead of
#: taking the machine's memory.
_BIG_EXPORT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))
sys.path.insert(0, sys.argv[3])
import export_factory as factory
from torq_nb.export import export
kind, out, n = sys.argv[1], sys.argv[2], 1_000_000
text = ("lorem ipsum dolor sit amet " * (n // 27 + 1))[:n]
if kind == "topic":
    results = factory.results(60, topic=text)
else:
    url = "https://example.org/" + "a" * n
    rows = [factory.row(1, title=text, snippet=text, url=url, error=text, status="error"),
            factory.row(2, title="x" * n, snippet="y" * n), factory.row(3)]
    rows[0]["domain"] = text
    results = factory.results(rows=rows, topic="big fields", summary=text + " [1].")
export(results, out)
export(results, out.replace(".pdf", ".csv"))
# This process's own peak (VmHWM): getrusage's maxrss keeps the forking parent's size across exec.
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) // 1024)
"""


@pytest.mark.parametrize("kind", ["topic", "fields"])
def test_megabyte_texts_make_a_bounded_pdf_and_full_tables(tmp_path: Path, kind: str) -> None:
    pdf = tmp_path / f"{kind}.pdf"
    child = subprocess.run([sys.executable, "-c", _BIG_EXPORT, kind, str(pdf), str(Path(__file__).parent)],
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-2000:]
    peak_mb = int(child.stdout.split()[-1])
    assert peak_mb < 500, f"exporting took {peak_mb} MB"
    assert pdf.read_bytes().startswith(b"%PDF-") and int(pdfinfo(pdf)["Pages"]) >= 1
    text = joined(pdftext(pdf))
    assert "…[truncatedfrom1,000,000characters]" in text.replace(" ", "")  # marked (a line may break at a space)
    if kind == "topic":
        assert text.startswith("Research: lorem ipsum")
        running = pdftext(pdf, "-f", "2", "-l", "2").splitlines()[0]  # the page header: one short line
        assert running.startswith("Research: lorem ipsum") and running.endswith("…") and len(running) < 100
    else:
        assert "https://example.org/aaaa" in text and not any("aaaa" in uri for uri in link_uris(pdf))  # shown, not linked
        assert "example.org/articles/3/" in " ".join(link_uris(pdf))
    if kind == "fields":
        table = pl.read_csv(pdf.with_suffix(".csv"))  # the table keeps every value in full
        assert table["title"].str.len_chars().max() == 1_000_000
        assert table["url"].str.len_chars().max() == len("https://example.org/") + 1_000_000


def test_any_notebook_with_megabyte_cells_and_a_long_link_makes_a_pdf(tmp_path: Path) -> None:
    text = "word " * 200_000
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("[a link too long for a PDF](https://x.test/" + "a" * 20_000 + ") and " + text),
        new_markdown_cell("| a | b |\n|---|---|\n| " + text + " | " + "z" * 1_000_000 + " |"),
        new_code_cell(text, execution_count=1, outputs=[new_output("stream", name="stdout", text=text)]),
    ]
    pdf, _ = TypstPDFExporter().from_notebook_node(nb)
    path = tmp_path / "big.pdf"
    path.write_bytes(pdf)
    out = pdftext(path)
    assert "a link too long for a PDF" in out and link_uris(path) == []
    assert "…[truncatedfrom1,000,000characters]" in joined(out).replace(" ", "")


BRANDED_TITLE = 'Lab #read("/etc/passwd") $x^2$ ] report'
BRANDED_AUTHOR = "Ada #Lovelace $y$ ]"


def docs_template(tmp_path: Path) -> Path:
    """The example template of docs/templates.md's "PDF (Typst)" section, as a file."""
    text = (Path(__file__).parent.parent / "docs" / "templates.md").read_text(encoding="utf-8")
    section = text.split("## PDF (Typst)", 1)[1].split("\n## ", 1)[0]
    examples = re.findall(r"```typst\n(.*?)```", section, re.DOTALL)
    path = tmp_path / "brand.typ"
    path.write_text(examples[-1], encoding="utf-8")
    return path


def pdfimages(path: Path) -> list[list[str]]:
    out = subprocess.run(["pdfimages", "-list", str(path)], capture_output=True, text=True, check=True).stdout
    return [line.split() for line in out.splitlines()[2:]]


def test_title_author_and_logo_brand_the_pdf_and_print_literally(tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    logo.write_bytes(_png(120, 40))
    path = export(factory.results(80), tmp_path / "branded.pdf", title=BRANDED_TITLE, author=BRANDED_AUTHOR, logo=logo)
    info = pdfinfo(path)
    assert info["Title"].strip() == BRANDED_TITLE and info["Author"].strip() == BRANDED_AUTHOR
    first = pdftext(path, "-f", "1", "-l", "1")
    assert first.startswith(f"{BRANDED_TITLE}\n{BRANDED_AUTHOR}\n") and "Research:" not in first
    assert pdftext(path, "-f", "2", "-l", "2").startswith(BRANDED_TITLE)  # the running header
    assert "root:x:0:0" not in pdftext(path)
    images = pdfimages(path)
    assert [(row[0], row[3], row[4]) for row in images] == [("1", "120", "40")]  # the logo, on page 1


def test_svg_logo_is_drawn(tmp_path: Path) -> None:
    logo = tmp_path / "logo.svg"
    logo.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="90" height="30"><text x="2" y="20" '
                    'font-family="sans-serif">LOGO-SVG</text></svg>')
    path = export(factory.results(3), tmp_path / "svg.pdf", logo=logo)
    assert "LOGO-SVG" in pdftext(path, "-f", "1", "-l", "1")


def test_the_documented_template_restyles_the_pdf(tmp_path: Path) -> None:
    logo = tmp_path / "logo.jpg"
    outputs = nbformat.read(Path(__file__).parent / "fixtures" / "notebooks" / "outputs.ipynb", as_version=4)
    logo.write_bytes(base64.b64decode(next(o["data"]["image/jpeg"] for cell in outputs.cells for o in cell.get("outputs", [])
                                           if "image/jpeg" in o.get("data", {}))))
    path = export(factory.results(80), tmp_path / "styled.pdf", title=BRANDED_TITLE, author=BRANDED_AUTHOR, logo=logo,
                  template=docs_template(tmp_path))
    info = pdfinfo(path)
    assert info["Title"].strip() == BRANDED_TITLE and info["Author"].strip() == BRANDED_AUTHOR
    second = pdftext(path, "-f", "2", "-l", "2")
    assert second.startswith(f"Example Lab · {BRANDED_TITLE} internal") and "Example Lab · page 2" in second
    assert [row[0] for row in pdfimages(path)] == ["1"]
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    assert "DejaVuSans" in fonts and "Libertinus" not in fonts.split("DejaVuSansMono")[0].replace("DejaVuSans-", "")


def test_a_batch_pdf_takes_the_same_style(tmp_path: Path) -> None:
    from torq_nb.research.batch import BatchResults, _Outcome

    topics = ["solar heat", "wind power"]
    batch = BatchResults(topics=topics, outcomes={t: _Outcome("complete", t, factory.results(30)) for t in topics},
                         depth="standard", source="searxng")
    logo = tmp_path / "logo.png"
    logo.write_bytes(_png(120, 40))
    template = docs_template(tmp_path)
    path = batch.export(tmp_path / "batch.pdf", title=BRANDED_TITLE, author=BRANDED_AUTHOR, logo=logo, template=template)
    info = pdfinfo(path)
    assert info["Title"].strip() == BRANDED_TITLE and info["Author"].strip() == BRANDED_AUTHOR
    assert pdftext(path, "-f", "2", "-l", "2").startswith(f"Example Lab · {BRANDED_TITLE} internal")
    assert [(row[0], row[3], row[4]) for row in pdfimages(path)] == [("1", "120", "40")]
    with pytest.raises(ValueError, match="brand.typ is a PDF template, but this is a html export"):
        batch.export(tmp_path / "batch.html", template=template)
    assert not (tmp_path / "batch.html").exists()


def test_nbconvert_takes_the_same_template(tmp_path: Path) -> None:
    source = tmp_path / "any.ipynb"
    nbformat.write(any_notebook(), source)
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "typst-pdf",
                    f"--TypstPDFExporter.typst_template={docs_template(tmp_path)}", str(source)],
                   check=True, capture_output=True, timeout=120)
    text = pdftext(tmp_path / "any.pdf")
    assert "Example Lab · page 1" in text and "hello from stdout" in text


@pytest.mark.parametrize(("source", "message"), [
    ('#import "/torq.typ": report\n#show: report.with(colour: red)\n', "unexpected argument: colour"),
    ('#import "/torq.typ": report\n#show: report.with(\n', "unclosed delimiter"),
    ('#import "brand-colours.typ": *\n', "file not found"),
])
def test_a_broken_template_names_its_file_and_typsts_message(tmp_path: Path, source: str, message: str) -> None:
    template = tmp_path / "mine.typ"
    template.write_text(source)
    with pytest.raises(RuntimeError) as caught:
        export(factory.results(2), tmp_path / "broken.pdf", template=template)
    text = str(caught.value)
    assert str(template) in text and message in text, text
    assert f"{template}:2" in text or message == "file not found", text  # the line Typst points at
    assert "torq-typst-" not in text  # no temporary folder: the names the user knows
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert not (tmp_path / "broken.pdf").exists()


def test_a_long_table_is_set_in_parts_at_the_top_and_whole_inside_a_cell(tmp_path: Path) -> None:
    rows = 2_100  # over the template's run-rows (1,250): a top-level table is split in two, one in a cell's output is not
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("| key | value |\n|---|---:|\n" + "\n".join(f"| top-{i} | {i} |" for i in range(rows))),
        new_code_cell("df", execution_count=1, outputs=[new_output("execute_result", execution_count=1, data={
            "text/plain": "frame", "text/html": "<table><tr><th>name</th></tr>" +
            "".join(f"<tr><td>inner-{i}</td></tr>" for i in range(rows)) + "</table>"})]),
    ]
    pdf, _ = TypstPDFExporter().from_notebook_node(nb)
    path = tmp_path / "long.pdf"
    path.write_bytes(pdf)
    text = pdftext(path)
    assert all(f"top-{i} {i}" in text for i in range(rows)) and all(f"inner-{i}\n" in text for i in range(rows))
    pages = [pdftext(path, "-f", str(p), "-l", str(p)) for p in range(1, int(pdfinfo(path)["Pages"]) + 1)]
    second_part = next(i for i, page in enumerate(pages) if "top-1050 " in page)  # equal parts
    lines = pages[second_part].lstrip().splitlines()  # the running title, the table's header, then the part's first row
    assert lines[1].startswith("key value") and lines[2].startswith("top-1050 "), lines[:3]
    assert "top-1049 " in pages[second_part - 1] and "inner-" not in pages[second_part - 1]


def test_a_long_unbroken_token_wraps_inside_the_page(tmp_path: Path) -> None:
    rows = [factory.row(1, title="Tab\tstart " + "x" * 300, snippet="y" * 250)]
    path = export(factory.results(rows=rows), tmp_path / "long.pdf")
    bbox = pdftext(path, "-bbox")
    width = float(re.search(r'<page width="([0-9.]+)"', bbox).group(1))  # type: ignore[union-attr]
    words = re.findall(r'xMax="([0-9.]+)"[^>]*>([^<]*)<', bbox)
    assert words and max(float(x) for x, _ in words) < width - 20  # nothing runs into the right margin
    text = pdftext(path)
    assert "Tab start " + "x" * 30 in text and "x" * 200 in text.replace("\n", "")  # all of it, a tab as a space
