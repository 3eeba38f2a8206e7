"""The report's two PDF paths are one: the nodes the report gives its own PDF are what parsing its Markdown gives.

``export(results, "r.pdf")`` hands Typst the tables and the source list as nodes built from the table model
(``report.Table``); ``jupyter nbconvert --to typst-pdf`` of the saved ``.ipynb`` parses the Markdown cells
that the same model wrote. Both must print the same text, page by page, with the same links.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import export_factory as factory
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torq_nb.export import export
from torq_nb.export.mdtree import markdown_tree
from torq_nb.export.report import report_sections

#: Text with a URL, markup, line breaks and edge whitespace in every field that reaches a table or the list.
TRICKY = [
    "see https://x.test/a and www.y.test/b, mail bob@z.test <b>bold</b> *em* | pipe \\ back $5 &amp;",
    "  padded both ends\t",
    "two\nlines\r\nand a third\rhere",
    "\n starts with a break and ends with one \n",
    "한국어 제목과 中文标题 — Ångström",
    "`code` [1](#source-1) <http://x.test/auto> ![i](http://x.test/i.png)",
    "",
]
URLS = ["https://x.test/a b&c|d<e>\"f`$g", "javascript:alert(1)", "", "http://[::1]:8/ok?q=1&b=2#frag",
        "https://例え.test/パス?q=値", "ftp://files.test/a.txt", "mailto:someone@x.test"]


def tricky_results(n: int = 0) -> Any:
    rows = []
    for i, text in enumerate(TRICKY * 2):
        rank = len(rows) + 1
        failed = i % 3 == 2
        rows.append(factory.row(rank, title=text, snippet=TRICKY[(i + 1) % len(TRICKY)], url=URLS[i % len(URLS)],
                                status="error" if failed else "ok", error=text if failed else None,
                                http_status=503 if failed else 200))
        rows[-1]["domain"] = TRICKY[(i + 2) % len(TRICKY)]
    rows += [factory.row(len(rows) + 1 + i) for i in range(n)]
    return factory.results(rows=rows, topic="Parity: https://x.test/topic", summary="First [1]. Second [2]. Gone [99].")


def assert_sections_parse_to_their_nodes(results: Any, **options: Any) -> int:
    checked = 0
    for section in report_sections(results, **options):
        if section.tree is not None:
            assert markdown_tree(section.markdown) == section.tree(), section.markdown[:200]
            checked += 1
    return checked


def test_every_built_table_and_source_list_is_what_its_markdown_parses_to() -> None:
    assert assert_sections_parse_to_their_nodes(tricky_results()) == 3  # results, sources, failed pages
    assert assert_sections_parse_to_their_nodes(tricky_results(), level=3, prefix="t2-") == 3  # as in a batch
    assert assert_sections_parse_to_their_nodes(factory.results(300, fail_every=7)) == 3


_PIECES = st.sampled_from([*"ab :/.@<>&\\`*_[]()#|~$!=-+;'\"", " ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\x1f",
                           "http://", "www.", "x@y.test", "&lt;", "<br>", "$$", "1. ", "- ", "한", "\u200b"])
_TEXT = st.lists(_PIECES, max_size=10).map("".join)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_TEXT, _TEXT, _TEXT, _TEXT, st.sampled_from([*URLS, "https://x.test/" + "é " * 3])),
                min_size=1, max_size=4))
def test_any_row_text_builds_the_nodes_its_markdown_parses_to(fields: list[tuple[str, str, str, str, str]]) -> None:
    rows = []
    for i, (title, snippet, domain, error, url) in enumerate(fields, start=1):
        rows.append(factory.row(i, title=title, snippet=snippet, url=url, error=error or None,
                                status="error" if error else "ok"))
        rows[-1]["domain"] = domain
    assert_sections_parse_to_their_nodes(factory.results(rows=rows))


def _pages(path: Path) -> list[str]:
    count = int(re.search(r"Pages:\s+(\d+)", subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True,
                                                              check=True).stdout).group(1))
    return [subprocess.run(["pdftotext", "-layout", "-f", str(p), "-l", str(p), str(path), "-"], capture_output=True,
                           text=True, check=True).stdout for p in range(1, count + 1)]


def _links(path: Path) -> tuple[list[str], int]:
    """The web links in the order they stand, and how many in-document jumps (citations to sources)."""
    raw = path.read_bytes()
    return [m.decode("latin-1") for m in re.findall(rb"/URI ?\(((?:[^()\\]|\\.)*)\)", raw)], len(re.findall(rb"/Dest\b", raw))


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils")
def test_the_reports_pdf_and_nbconvert_of_its_saved_notebook_print_the_same(tmp_path: Path) -> None:
    results = tricky_results(60)  # several pages
    direct = export(results, tmp_path / "direct.pdf")
    saved = export(results, tmp_path / "report.ipynb")
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "typst-pdf", str(saved)], check=True,
                   capture_output=True, timeout=300)
    converted = tmp_path / "report.pdf"
    pages = _pages(direct)
    assert len(pages) >= 3
    # nbconvert names the document after the file: only the running page header may differ (the title is the same).
    assert [p.replace("report", "") for p in _pages(converted)] == [p.replace("report", "") for p in pages]
    links, jumps = _links(direct)
    assert _links(converted) == (links, jumps)
    assert "https://x.test/a%20b&c%7Cd%3Ce%3E%22f%60%24g" in links and jumps >= 2
    assert not any(uri.startswith("javascript") for uri in links)
    assert "https://x.test/a" not in links  # a URL inside page text stays text in both
