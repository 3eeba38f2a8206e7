"""The Markdown export parsed back: the table cells, links and citations are what the rows hold."""

from __future__ import annotations

import html
import re
from typing import Any

import cmarkgfm
import export_factory as factory
import mistune
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from torq_nb.export import ExportManager, to_markdown
from torq_nb.export.report import human_date
from torq_nb.export.style import ReportStyle
from torq_nb.research.synthesize import NO_SOURCES

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
    # The snippet starts mid-sentence and ends without a full stop: it reads as the fragment it is.
    assert [cell_text(c["children"]) for c in first] == ["1", "Title | with pipe", "example.org", "ok", "25", "2024-01-02",
                                                         f"…{HOSTILE}…"]
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
    for rank in (1, 3):  # the cited sources, and only those
        assert f'<a id="source-{rank}"></a>**\\[{rank}\\]**' in md
    sources = md.split("## Sources", 1)[1]
    assert "articles/1/" in sources and "articles/3/" in sources and "articles/2/" not in sources


def test_nothing_cited_means_no_source_list() -> None:
    md = to_markdown(factory.results(3, summary="A summary that cites nothing."))
    assert "## Sources" not in md and "source-" not in md
    assert "## Results" in md  # every hit is still a row


def test_snippets_read_as_fragments_and_long_values_are_cut_at_a_word() -> None:
    snippets = ["the radiant energy from the Sun, which can be harnessed using solar thermal",
                "Solar power is the conversion of sunlight into electricity.", "Sun power ...", "iPhone cells", ""]
    rows = [factory.row(i + 1, snippet=snippet) for i, snippet in enumerate(snippets)]
    rows.append(factory.row(6, snippet="word " * 1000))
    cells = [cell_text(row[6]["children"]) for row in rows_of(tables(to_markdown(factory.results(rows=rows)))[0])]
    assert cells[:5] == ["…the radiant energy from the Sun, which can be harnessed using solar thermal…",
                         "Solar power is the conversion of sunlight into electricity.", "Sun power…", "iPhone cells…", ""]
    # Cut at a word, and said so (the count is of the text as shown, its fragment marks included).
    assert cells[5].startswith("…word word") and re.search(r" word… \[truncated from 5,001 characters\]$", cells[5])


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
    expected = snippet.replace("\r\n", "\n").replace("\r", "\n").strip()
    assert _unmarked(cells[2].strip(), expected) in (expected, expected.removesuffix("...").rstrip())


def _unmarked(shown: str, original: str) -> str:
    """A shown snippet without the "…" the report adds before or after it (a fragment's marks)."""
    if shown.startswith("…") and not original.startswith("…"):
        shown = shown[1:]
    if shown.endswith("…") and not original.endswith("…"):
        shown = shown[:-1]
    return shown


def test_a_report_of_failed_pages_says_none_was_read() -> None:
    failed = factory.results(rows=[factory.row(1, status="error", error="HTTP 500", http_status=500)], summary=NO_SOURCES)
    assert NO_SOURCES.split(",")[0] in to_markdown(failed)


def test_dates_read_as_a_person_writes_them() -> None:
    assert human_date("2026-12-02T03:17:41.585Z") == "2 December 2026, 03:17 UTC"
    assert human_date("2026-12-02T04:17:00+01:00") == "2 December 2026, 03:17 UTC"
    assert human_date("2026-12-02T03:17:00") == "2 December 2026, 03:17"  # no zone given: none claimed
    assert human_date("2026-12-02") == "2 December 2026"
    assert human_date("last Tuesday") == "last Tuesday"
    assert "- **Date:** 25 November 2026, 12:00 UTC" in to_markdown(factory.results(2))


def test_title_and_author_render_in_gfm() -> None:
    md = to_markdown(factory.results(2), ReportStyle.of(title="Q3 *solar* <review>", author="Data team | 2026"))
    page = cmarkgfm.github_flavored_markdown_to_html(md)
    assert re.search(r"<h1>Q3 \*solar\* &lt;review&gt;</h1>\s*<p>Data team \| 2026</p>", page), page[:300]
