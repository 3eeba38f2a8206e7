"""Markdown and HTML exports: parsed back, the table cells, links and citations are what the rows hold."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from typing import Any

import export_factory as factory
import mistune
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from torq_nb.export import ExportManager, to_html, to_markdown

parse = mistune.create_markdown(renderer=None, plugins=["table", "strikethrough", "url"])
HOSTILE = "a | b\nsecond line <script>alert(1)</script> $5 and $6 *not bold* _x_ [x](http://evil) &amp; \\ `c` ~~s~~ # h"


def cell_text(nodes: list[dict[str, Any]]) -> str:
    """The text a reader sees in a cell; <br> counts as a line break."""
    out = []
    for node in nodes:
        if node["type"] == "inline_html":
            out.append("\n" if re.fullmatch(r"<br\s*/?>", node["raw"]) else node["raw"])
        elif "children" in node:
            out.append(cell_text(node["children"]))
        else:  # mistune's tree leaves entities (&lt;) in text; a renderer shows them decoded
            out.append(html.unescape(node.get("raw", "")) if node["type"] == "text" else node.get("raw", ""))
    return "".join(out)


def tables(markdown: str) -> list[dict[str, Any]]:
    return [node for node in parse(markdown) if node["type"] == "table"]


def rows_of(table: dict[str, Any]) -> list[list[dict[str, Any]]]:
    body = next(part for part in table["children"] if part["type"] == "table_body")
    return [row["children"] for row in body["children"]]


def links(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for node in nodes:
        if node["type"] == "link":
            found.append(node)
        found += links(node.get("children", []))
    return found


def test_results_table_is_a_gfm_pipe_table_with_escaped_cells() -> None:
    rows = [factory.row(1, title="Title | with pipe", snippet=HOSTILE), factory.row(2)]
    md = ExportManager().export_to_markdown(factory.results(rows=rows))
    table = tables(md)[0]
    head = [cell_text(c["children"]) for c in table["children"][0]["children"]]
    assert head == ["#", "Title", "Domain", "Status", "Words", "Published", "Snippet"]
    first, second = rows_of(table)
    assert [cell_text(c["children"]) for c in first] == ["1", "Title | with pipe", "example.org", "ok", "25", "2024-01-02", HOSTILE]
    assert links(first[1]["children"])[0]["attrs"]["url"] == rows[0]["url"]
    assert len(second) == 7
    assert "<script>" not in md  # page text is escaped, never raw HTML


def test_summary_citations_link_to_the_numbered_source_list() -> None:
    md = to_markdown(factory.results(3, summary="Light becomes power [1]. Costs fell [3]. Unknown [9]."))
    summary = md.split("## Summary", 1)[1].split("##", 1)[0]
    targets = [link["attrs"]["url"] for link in links(parse(summary))]
    assert targets == ["#source-1", "#source-3"]
    paragraph = next(node for node in parse(summary) if node["type"] == "paragraph")
    assert "Unknown [9]." in cell_text(paragraph["children"])
    for rank in (1, 2, 3):
        assert f'<a id="source-{rank}"></a>**\\[{rank}\\]**' in md
        assert f"(<https://example.org/articles/{rank}/" in md


def test_failed_pages_are_listed_with_their_reasons() -> None:
    md = to_markdown(factory.results(4, fail_every=2))
    appendix = md.split("## Appendix: failed pages", 1)[1]
    cells = [[cell_text(c["children"]) for c in row] for row in rows_of(tables(appendix)[0])]
    assert [row[0] for row in cells] == ["2", "4"]
    assert all(row[2:] == ["404", "HTTP 404: not found"] for row in cells)


def test_non_web_links_are_not_links() -> None:
    md = to_markdown(factory.results(rows=[factory.row(1, url="javascript:alert(1)")]))
    assert all(not link["attrs"]["url"].startswith("javascript") for link in links(parse(md)))


def test_empty_results_say_so() -> None:
    md = to_markdown(factory.results(0, summary=""))
    assert "There were no results." in md
    assert tables(md) == []


def test_a_dataframe_with_some_columns_exports() -> None:
    df = pl.DataFrame({"title": ["Only a title"], "url": ["https://example.com/x"]})
    md = to_markdown(df)
    assert [cell_text(c["children"]) for c in rows_of(tables(md)[0])[0]] == ["Only a title"]


cell_strings = st.text(st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from("|\\`*_[]<>#~$&!\n\t"), max_size=40)


@settings(max_examples=150, deadline=None)
@given(title=cell_strings, snippet=cell_strings)
def test_any_text_survives_as_table_cells(title: str, snippet: str) -> None:
    md = to_markdown([{"rank": 1, "title": title, "snippet": snippet}])
    cells = [cell_text(c["children"]) for c in rows_of(tables(md)[0])[0]]
    # Titles are link text: their line breaks become spaces; snippets keep them as <br>. Whitespace
    # around a cell's text is not part of it (the parser trims it).
    assert cells[1].strip() == " ".join(title.replace("\r", "\n").split("\n")).strip()
    assert cells[2].strip() == snippet.replace("\r\n", "\n").replace("\r", "\n").strip()


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.scripts = 0
        self.ids: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.scripts += tag == "script"
        if tag in ("script", "img", "iframe") and a.get("src"):
            self.external.append(str(a["src"]))
        if tag == "link" and a.get("href"):
            self.external.append(str(a["href"]))
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))


def test_html_is_one_offline_file_with_escaped_page_text() -> None:
    rows = [factory.row(1, title="<img src=x onerror=alert(1)>", snippet=HOSTILE), factory.row(2)]
    page = to_html(factory.results(rows=rows, topic="<b>topic</b>"))
    scan = _Scan()
    scan.feed(page)
    assert scan.external == [] and scan.scripts == 0  # nothing to fetch, nothing to run
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<title>Research: &lt;b&gt;topic&lt;/b&gt;</title>" in page
    assert {"source-1", "source-2"} <= scan.ids
    assert "#source-1" in scan.hrefs and rows[0]["url"] in scan.hrefs
    assert "jp-RenderedMarkdown" in page and "<style" in page  # JupyterLab's styles are inlined
