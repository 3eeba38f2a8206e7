"""The HTML report as a reader meets it, in Chromium: small and offline, its tables sorted by a click and
filtered by typing (and plain tables without JavaScript), addresses and dates never broken mid-word, light
and dark, printable; the title, author, logo and a user's own template; a batch's report the same."""

from __future__ import annotations

import base64
import html
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import export_factory as factory
import polars as pl
import pytest

from torq_nb.export import export, to_html
from torq_nb.export.report import Section, html_document
from torq_nb.export.text import html_text
from torq_nb.research.batch import BatchResults, _Outcome
from torq_nb.results import ResearchResults

pytestmark = pytest.mark.browser

#: A 1×1 PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def twelve_rows() -> ResearchResults:
    """Twelve hits, so that numeric and text order differ (2 < 10), with words out of order and one failure."""
    rows = []
    for rank in range(1, 13):
        row = factory.row(rank, title=f"Page {chr(ord('a') + (rank * 5) % 12)} about solar{' heat' if rank % 3 == 0 else ''}",
                          status="error" if rank == 7 else "ok", error="HTTP 503: busy" if rank == 7 else None,
                          http_status=503 if rank == 7 else 200)
        row["word_count"] = None if rank == 7 else (rank * 37) % 100 + 1
        rows.append(row)
    rows[0]["domain"] = "127.0.0.1"
    rows[0]["url"] = "http://127.0.0.1:8080/search/results/photovoltaic-efficiency/northern-climates?q=solar+energy&page=2"
    return factory.results(rows=rows, summary="Panels turn light into power [1]. Heat is stored [3].")


def open_page(browser: Any, path: Path, *, width: int = 1200, scheme: str = "light", javascript: bool = True) -> tuple[Any, Any, list[str]]:
    """``path`` in a fresh context; the context, the page and every request it made."""
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme,
                                  java_script_enabled=javascript)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri(), wait_until="load")
    return context, page, requests


def column(page: Any, table: int, index: int, *, visible: bool = True) -> list[str]:
    """The text of one column of the ``table``-th table, top to bottom (only the rows shown)."""
    return list(page.evaluate("""([table, index, visible]) => [...document.querySelectorAll('main table')[table].tBodies[0].rows]
        .filter(row => !visible || !row.hidden).map(row => row.cells[index].textContent)""", [table, index, visible]))


def test_the_report_is_a_few_kilobytes_and_one_offline_file(tmp_path: Path) -> None:
    page = to_html(factory.results(7, fail_every=3))
    assert len(page.encode()) < 16_000  # was 272 KB (JupyterLab's CSS) for 7 rows
    assert not re.search(r"<link\b|\bsrc=|url\(|@import", page)  # no CDN, no font, nothing to fetch
    csp = html.unescape(re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page).group(1))  # type: ignore[union-attr]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp).group(1)  # type: ignore[union-attr]
    assert csp.startswith("default-src 'none';") and "unsafe" not in csp
    assert re.findall(r"<(script|style)\b([^>]*)>", page) == [("style", f' nonce="{nonce}"'), ("script", f' nonce="{nonce}"')]
    assert nonce not in to_html(factory.results(7, fail_every=3))  # a fresh nonce every time


def test_sort_by_a_click_numbers_as_numbers_and_filter_by_typing(browser: Any, tmp_path: Path) -> None:
    path = export(twelve_rows(), tmp_path / "r.html")
    context, page, requests = open_page(browser, path)
    ranks = [str(n) for n in range(1, 13)]
    assert column(page, 0, 0) == ranks
    page.get_by_role("button", name="#").first.click()  # already ascending by rank: the first click sorts ascending
    assert column(page, 0, 0) == ranks
    page.get_by_role("button", name="#").first.click()
    assert column(page, 0, 0) == ranks[::-1]  # 12, 11, 10, ..., 1: as numbers, not "9" > "12"
    assert page.locator("th", has_text="#").first.get_attribute("aria-sort") == "descending"
    page.get_by_role("button", name="Words").click()
    words = column(page, 0, 4)
    assert words[:-1] == sorted(words[:-1], key=int) and words[-1] == ""  # the failed page has none: last
    page.get_by_role("button", name="Title").click()
    titles = column(page, 0, 1)
    assert titles == sorted(titles, key=str.lower)
    box = page.get_by_role("searchbox").first
    box.fill("solar HEAT")  # every word, in any case
    shown = column(page, 0, 1)
    assert shown and all("heat" in title for title in shown) and len(shown) == 4
    assert page.locator(".filter").first.inner_text().strip() == "4 of 12 rows"
    box.fill("no such words")
    assert column(page, 0, 1) == []
    box.fill("")
    assert len(column(page, 0, 1)) == 12
    page.get_by_role("button", name="#").first.click()  # back to rank order, where only rank 7 failed
    box.fill("ok")
    assert column(page, 0, 0) == [r for r in ranks if r != "7"]
    stripes = page.locator("main table").first.locator("tbody tr:not([hidden])").evaluate_all(
        "rows => rows.map(r => getComputedStyle(r).backgroundColor)")
    assert stripes[0::2] == [stripes[0]] * 6 and stripes[1::2] == [stripes[1]] * 5 and stripes[0] != stripes[1], stripes
    box.fill("")
    page.get_by_role("link", name="[3]").click()  # a citation still lands on its source
    assert page.evaluate("location.hash") == "#source-3"
    assert requests == [path.as_uri()]
    context.close()


def test_without_javascript_the_tables_are_plain_html(browser: Any, tmp_path: Path) -> None:
    path = export(twelve_rows(), tmp_path / "r.html")
    context, page, _ = open_page(browser, path, javascript=False)
    assert page.locator(".filter").count() == 0 and page.locator("th button").count() == 0  # no dead controls
    assert column(page, 0, 0) == [str(n) for n in range(1, 13)]
    assert page.locator("#source-1").count() == 1
    context.close()


def _lines(page: Any, selector: str) -> dict[str, int]:
    """How many lines each element's text takes, by its text."""
    return dict(page.evaluate("""selector => [...document.querySelectorAll(selector)].map(e => {
        const range = document.createRange(); range.selectNodeContents(e);
        const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
        return [e.textContent, tops.size]; })""", selector))


@pytest.mark.parametrize("width", [1200, 380])
def test_addresses_and_dates_are_never_broken_mid_word(browser: Any, tmp_path: Path, width: int) -> None:
    path = export(twelve_rows(), tmp_path / "r.html")
    context, page, _ = open_page(browser, path, width=width)
    whole = _lines(page, "td.whole, td.num, time")
    assert whole["127.0.0.1"] == 1 and whole["25 November 2026, 12:00 UTC"] == 1 and whole["2024-01-02"] == 1
    assert {lines for text, lines in whole.items() if text} == {1}
    pieces = _lines(page, ".url a > span")  # a URL wraps only between its pieces
    assert pieces and set(pieces.values()) == {1} and "127.0.0.1:8080/" in pieces
    if width < 500:
        url_lines = _lines(page, ".sources .url")
        assert max(url_lines.values()) > 1  # it does wrap, at its slashes
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # the page itself never scrolls sideways
    context.close()


def test_a_long_unbroken_token_wraps_inside_its_column(browser: Any, tmp_path: Path) -> None:
    rows = [factory.row(i + 1) for i in range(3)]
    rows[1] = factory.row(2, title="x" * 300, snippet="y" * 250)
    context, page, _ = open_page(browser, export(factory.results(rows=rows), tmp_path / "r.html"), width=1280)
    right = page.evaluate("""() => Math.max(...[...document.querySelectorAll('main table')[0].tHead.rows[0].cells]
        .map(c => c.getBoundingClientRect().right))""")
    assert right <= 1280  # every column, the last ("Snippet") too, is on the page, not pushed off by the token
    context.close()


def test_light_dark_and_print(browser: Any, tmp_path: Path) -> None:
    path = export(twelve_rows(), tmp_path / "r.html")
    backgrounds = {}
    for scheme in ("light", "dark"):
        context, page, _ = open_page(browser, path, scheme=scheme)
        backgrounds[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
        if scheme == "dark":
            page.emulate_media(media="print")  # printing is light, without the filter boxes
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
            assert page.locator(".filter").first.is_hidden()
            pdf = page.pdf()
            assert pdf.startswith(b"%PDF")
        context.close()
    assert backgrounds["light"] == "rgb(255, 255, 255)" and backgrounds["dark"] != backgrounds["light"]


def test_title_author_and_logo_and_an_svg_logo_cannot_run(browser: Any, tmp_path: Path) -> None:
    logo = tmp_path / "logo.svg"
    logo.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20" onload="alert(1)">'
                    '<script>alert(2)</script><rect width="40" height="20" fill="teal"/></svg>')
    path = export(twelve_rows(), tmp_path / "r.html", title='Q3 <b>"review"</b>', author="Data team & friends", logo=logo)
    context, page, requests = open_page(browser, path)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.reload(wait_until="load")
    page.wait_for_timeout(200)
    assert page.locator("h1").inner_text() == 'Q3 <b>"review"</b>' and page.title() == 'Q3 <b>"review"</b>'
    assert page.locator(".author").inner_text() == "Data team & friends"
    src = page.locator("img.logo").get_attribute("src")
    assert src.startswith("data:image/svg+xml;base64,")
    assert page.locator("img.logo").evaluate("img => img.complete && img.naturalWidth") == 40  # shown
    assert dialogs == [] and {r for r in requests if not r.startswith("data:")} == {path.as_uri()}
    context.close()
    png = tmp_path / "logo.png"
    png.write_bytes(PNG)
    assert 'src="data:image/png;base64,' in export(twelve_rows(), tmp_path / "p.html", logo=png).read_text("utf-8")


def test_a_user_template_extends_the_default_blocks_and_autoescapes(tmp_path: Path) -> None:
    template = tmp_path / "brand.html.j2"
    template.write_text('{% extends "torq_html/index.html.j2" %}\n'
                        '{% block style %}.brand { color: teal; }{% endblock %}\n'
                        '{% block footer %}<footer class="brand">{{ title }} · {{ author }} · {{ sections | length }} '
                        'sections</footer>{% endblock %}\n', encoding="utf-8")
    results = factory.results(3, topic="<script>alert(1)</script>")
    page = export(results, tmp_path / "r.html", template=template, author="A & B").read_text("utf-8")
    assert '<footer class="brand">Research: &lt;script&gt;alert(1)&lt;/script&gt; · A &amp; B · 3 sections</footer>' in page
    assert ".brand { color: teal; }" in page.split("</style>")[0]  # inside the stylesheet the CSP allows
    assert "<script>alert(1)" not in page and "Made with torq_nb." not in page
    own = tmp_path / "own.html"
    own.write_text("<!doctype html><title>{{ title }}</title>{{ facts }}{% for s in sections %}{{ s }}{% endfor %}")
    page = export(results, tmp_path / "own-out.html", template=own).read_text("utf-8")
    assert page.startswith("<!doctype html><title>Research: &lt;script&gt;") and '<dl class="facts">' in page


def test_html_fragments_escape_as_jinja_does() -> None:
    from markupsafe import escape

    for text in ['<a href="x">', "it's & <b>", "</script>\u2028", ""]:
        assert html_text(text) == str(escape(text))
    assert "&lt;b&gt;" in html_document([Section(lambda: "", lambda: ""), Section(lambda: "", lambda: "")], "<b>")


def test_a_batch_report_is_the_same_html_with_the_same_style(browser: Any, tmp_path: Path) -> None:
    topics = ["solar heat", "wind <power>"]
    outcomes = {topics[0]: _Outcome("complete", topics[0], twelve_rows()),
                topics[1]: _Outcome("failed", topics[1], reason="search refused: HTTP 403")}
    batch = BatchResults(topics=topics, outcomes=outcomes, depth="standard", source="searxng",
                         progress={"started_at": "2026-12-02T03:17:41+00:00", "duration": 12.0})
    path = batch.export(tmp_path / "batch.html", title="Energy sweep", author="Ops")
    context, page, requests = open_page(browser, path)
    assert page.locator("h1").inner_text() == "Energy sweep" and page.locator(".author").inner_text() == "Ops"
    assert page.locator("time").inner_text() == "2 December 2026, 03:17 UTC"
    assert page.locator("h2", has_text="wind <power>").count() == 1
    assert page.locator("main table").count() == 3  # topics, results, failed pages: each sortable and filterable
    assert page.locator(".filter").count() == 3
    page.get_by_role("link", name="[3]").click()
    assert page.evaluate("location.hash") == "#t1-source-3"
    assert requests == [path.as_uri()]
    context.close()
    markdown = batch.export(tmp_path / "batch.md", title="Energy sweep", author="Ops").read_text("utf-8")
    assert markdown.startswith("# Energy sweep\n\nOps\n")
    with zipfile.ZipFile(batch.export(tmp_path / "batch.zip", title="Energy sweep")) as bundle:  # the same writers
        assert "<h1>Energy sweep</h1>" in bundle.read("batch.html").decode("utf-8")
        assert bundle.read("batch.csv").startswith(b"topic,")
    with pytest.raises(ValueError, match="unknown"):
        batch.export(tmp_path / "batch.docx")


@pytest.mark.parametrize("columns", [["title"], ["url"], ["rank", "status"], ["url", "domain", "word_count"], []])
def test_the_results_card_shows_any_subset_of_the_columns(columns: list[str]) -> None:
    df = factory.results(3).df.select(columns) if columns else pl.DataFrame()
    card = ResearchResults(topic="", df=df, summary="")._repr_html_()
    assert "<h3>Research results</h3>" in card and f"{df.height} hits" in card
    heads = re.findall(r"<th[^>]*>([^<]+)</th>", card)
    expected = {"rank": "#", "url": "title", "title": "title", "domain": "domain", "status": "status", "word_count": "words"}
    assert heads == [head for head in ("#", "title", "domain", "status", "words") if head in {expected[c] for c in columns}]
    if "url" in columns:
        assert card.count("href='https://example.org/articles/") == 3


def test_a_broken_template_says_where_and_what_to_read(tmp_path: Path) -> None:
    results = factory.results(2)
    template = tmp_path / "t.html.j2"
    template.write_text("<p>{{ nope }}</p>")
    with pytest.raises(ValueError, match=r"t\.html\.j2 could not be rendered: 'nope' is undefined.*docs/templates\.md"):
        export(results, tmp_path / "a.html", template=template)
    template.write_text("<p>\n{% block %}</p>")
    with pytest.raises(ValueError, match=r"t\.html\.j2 \(line 2\)"):
        export(results, tmp_path / "b.html", template=template)
    template.write_text("<p>{{ title }}</p>")  # fixed: the same session sees the new file
    os.utime(template, (1e9, 2e9))
    assert export(results, tmp_path / "c.html", template=template).read_text("utf-8") == "<p>Research: Solar energy</p>"
