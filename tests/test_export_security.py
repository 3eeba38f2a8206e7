"""Page text never becomes markup or a fetch, in any rendering of any export; and it is escaped once.

Hostile titles, snippets, URLs, errors, summary sentences and topics are exported, then rendered by the
renderers a reader uses: cmarkgfm (GitHub's GFM, with autolinks and the tag filter) for the .md,
nbconvert's HTML (mistune) for the .ipynb report, the .html export and the notebook's results card
loaded in Chromium with a dialog and a request listener. Each hostile string must come out as the
very text it was, with no tag, attribute, dialog or request of its own, and without stray backslashes.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import cmarkgfm
import export_factory as factory
import nbformat
import polars as pl
import pytest
from cmarkgfm.cmark import Options
from hypothesis import given, settings
from hypothesis import strategies as st
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from torq_nb.export import export, to_html, to_markdown, to_notebook
from torq_nb.export.mdtree import markdown_tree
from torq_nb.export.style import ReportStyle
from torq_nb.export.text import md_expr, md_text
from torq_nb.results import _CARD_CSS

#: The HTML report's own script (sorting and filtering its tables): the one script it may hold.
REPORT_SCRIPT = (Path(__file__).parent.parent / "torq_nb/export/templates/torq_html/report.js").read_text(encoding="utf-8")

#: Text a hostile page can put in a title, snippet, error or summary sentence.
HOSTILE = [
    "see http://x.test/a<img src=x onerror=alert(1)//> now",
    "http://x.test/a\\<img src=x onerror=alert(2)>",
    "https://x.test/$5\\<svg onload=alert(3)>",
    "www.x.test/a<img src=x onerror=alert(4)>",
    "mail x@y.test<img src=x onerror=alert(5)> mailto:x@y.test<b>",
    "pixel <img src=http://tracker.test/pixel.gif> here",
    "![pixel](http://tracker.test/md.png) and [x](javascript:alert(6)) <javascript:alert(7)>",
    "<a href=\"javascript:alert(8)\">click</a> javascript:alert(9)",
    "<!-- hidden --> comment <script>alert(10)</script>",
    "<style>@import url(http://tracker.test/x.css)</style><iframe src=http://tracker.test/f></iframe>",
    "`code` ``two`` | pipe | $x^2$ $$y$$ *em* _em_ ~~s~~ # h &amp; &lt;b&gt; \\ \\$ 3 < 4 > 2",
    "&lt;img src=x onerror=alert(11)&gt; [1](#source-1) <http://x.test/auto>",
    "</script><script>alert(15)</script> </style><img src=x onerror=alert(16)> {{ 7*7 }} {% raw %}",
    'quote " and \' in "attributes" onmouseover="alert(17)" x=\'y\' \u2028line\u2029separators\u2028',
]
#: A URL field a hostile page can give.
HOSTILE_URLS = [
    'http://x.test/a"><img src=x onerror=alert(12)>',
    "javascript:alert(13)",
    "https://x.test/ok?q=<script>alert(14)</script>&b=1",
    "https://x.test/\u2028</script><script>alert(18)</script>\"'",
    "JaVaScRiPt:alert(19)",
    " javascript:alert(20)",
]
#: Tags the report's own Markdown and nbconvert's templates make; page text may add none of its own.
REPORT_TAGS = {"h1", "h2", "p", "ul", "li", "a", "strong", "br", "table", "thead", "tbody", "tr", "th", "td"}


def hostile_results() -> Any:
    rows = [factory.row(i + 1, title=text, snippet=text, error=text, status="error" if i % 2 else "ok")
            for i, text in enumerate(HOSTILE)]
    rows += [factory.row(len(rows) + i + 1, title=f"hostile url {i}", url=url) for i, url in enumerate(HOSTILE_URLS)]
    summary = "\n\n".join(f"{text} [{i + 1}]." for i, text in enumerate(HOSTILE))
    return factory.results(rows=rows, topic=HOSTILE[0], summary=summary)


class Scan(HTMLParser):
    """Tags, attributes and visible text of an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.skip += tag in ("style", "script")

    def handle_endtag(self, tag: str) -> None:
        self.skip -= tag in ("style", "script") and self.skip > 0

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)

    @property
    def text(self) -> str:
        return squash("".join(self.parts))


def scan(html: str) -> Scan:
    parser = Scan()
    parser.feed(html)
    parser.close()
    return parser


def squash(text: str) -> str:
    return " ".join(text.split())


def gfm(markdown: str) -> str:
    """GitHub's renderer: raw HTML allowed (so that any that gets through shows), autolinks, tag filter."""
    return cmarkgfm.markdown_to_html_with_extensions(
        markdown, options=Options.CMARK_OPT_UNSAFE, extensions=["table", "autolink", "tagfilter", "strikethrough"])


#: Links a renderer may make: the report's own (web pages, citations) and GFM's e-mail autolinks
#: (``x@y.test``, ``xmpp:x@y.test``: cmark-gfm finds them in the text itself, after every escape).
SAFE_HREF = re.compile(r"(https?://|#|mailto:|xmpp:)")
#: An address's scheme as a browser's URL parser finds it (after dropping leading C0 controls and spaces, and
#: tabs and line breaks anywhere); an address without one is relative: it loads nothing but this site's pages.
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def scheme_of(href: str) -> str | None:
    match = SCHEME.match(re.sub(r"^[\x00-\x20]+", "", re.sub(r"[\t\n\r]", "", href)))
    return match.group(0).lower() if match else None


def assert_inert(html: str, allowed: set[str]) -> Scan:
    """Only the allowed tags, no event handlers or sources, links only to the web or inside the page."""
    found = scan(html)
    for tag, attrs in found.tags:
        assert tag in allowed, (tag, attrs)
        assert not any(name.startswith("on") or name in ("src", "srcset") for name in attrs), (tag, attrs)
        assert re.fullmatch(r"(text-align: ?(left|right|center);?)?", attrs.get("style") or ""), (tag, attrs)
        href = attrs.get("href")
        assert href is None or SAFE_HREF.match(href) or scheme_of(href) is None, (tag, attrs)  # (cmark-gfm can make
        # a relative link of a run of e-mail addresses, "--mailto:x@y.test" among them: no scheme, nothing it loads)
    return found


def nbconvert_body(results: Any) -> str:
    """The body of nbconvert's lab HTML of the saved report notebook, without the template's own scripts
    (require.js, MathJax: those of a benign report), so that only what page text adds could run."""
    def body(res: Any) -> str:
        notebook = nbformat.reads(nbformat.writes(to_notebook(res)), as_version=4)
        page, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook)
        return re.search(r"<body[^>]*>(.*)</body>", page, flags=re.S).group(1)  # type: ignore[union-attr]
    template_scripts = set(re.findall(r"<script.*?</script>", body(factory.results(2)), flags=re.S))
    html = body(results)
    for script in template_scripts:
        html = html.replace(script, "")
    return html


def test_markdown_renders_inert_in_gfm() -> None:
    md = to_markdown(hostile_results())
    found = assert_inert(gfm(md), REPORT_TAGS)
    for text in HOSTILE:
        assert squash(text) in found.text  # the page's text, as it was: no character lost or added
    assert "tracker.test" not in " ".join(str(a.get("href")) for _, a in found.tags)


def test_report_notebook_renders_inert_in_nbconvert_html() -> None:
    found = assert_inert(nbconvert_body(hostile_results()), REPORT_TAGS | {"div", "main"})
    for text in HOSTILE:
        assert squash(text) in found.text


def test_each_markdown_cell_renders_inert_in_nbconvert_mistune() -> None:
    for cell in to_notebook(hostile_results()).cells:
        assert_inert(markdown2html_mistune(cell.source), REPORT_TAGS)


def test_summary_is_escaped_once_in_every_format(tmp_path: Path) -> None:
    summary = "Power costs $0.06/kWh at C:\\temp, see https://x.test/$5 or *this* [1]."
    results = factory.results(2, summary=summary)
    shown = "Power costs $0.06/kWh at C:\\temp, see https://x.test/$5 or *this* [1]."
    md = to_markdown(results)
    assert shown in scan(gfm(md)).text
    assert shown in scan(to_html(results)).text
    assert shown in scan(results._repr_html_()).text
    for cell in to_notebook(results).cells:
        if cell.source.startswith("## Summary"):
            assert shown in scan(markdown2html_mistune(cell.source)).text
    pdf = export(results, tmp_path / "r.pdf")
    text = _pdftext(pdf)
    assert "$0.06/kWh" in text and "\\$" not in text and "C:\\temp" in text


def _pdftext(path: Path) -> str:
    import shutil

    if shutil.which("pdftotext") is None:
        pytest.skip("needs poppler-utils (pdftotext)")
    return factory.pdf_text(path, "-raw")


def test_results_card_shows_page_text_as_text() -> None:
    results = hostile_results()
    card = results._repr_html_()
    found = assert_inert(card, {"div", "h3", "p", "small", "table", "thead", "tbody", "tr", "th", "td", "a", "code",
                                "style"})
    assert re.findall(r"<style>(.*?)</style>", card, flags=re.S) == [_CARD_CSS]  # its own layout, no page text
    for text in HOSTILE:
        assert squash(text) in found.text


def test_pdf_prints_hostile_text_literally(tmp_path: Path) -> None:
    text = " ".join(_pdftext(export(hostile_results(), tmp_path / "hostile.pdf")).split())
    for hostile in HOSTILE[:3]:
        assert squash(hostile) in text


#: Characters and pieces with meaning to some Markdown or HTML renderer.
_PIECES = st.sampled_from([*"ab :/.@<>&\\`*_[]()#|~$!=-+;'\"\t", "http://", "https://", "www.", "mailto:", "x@y.test",
                           "&lt;", "&#36;", "<img src=x>", "javascript:", "ftp://", "xmpp:", "$$", "<!--", "1. ", "- "])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=12).map("".join))
def test_any_text_renders_as_itself_in_every_markdown_renderer(value: str) -> None:
    inline = md_text(value)
    assert pl.select(md_expr(pl.lit(value, dtype=pl.String))).item() == inline  # the column form, as the tables use
    want = squash(f"x {value} y")
    for source, tags in ((f"x {inline} y", {"p", "a"}), (f"| h |\n|---|\n| x {inline} y |", REPORT_TAGS)):
        for render in (gfm, markdown2html_mistune):
            found = assert_inert(render(source), tags)
            assert found.text.endswith(want), (render, source)
        blocks, _, _ = markdown_tree(source)  # the PDF's parser
        assert squash(_tree_text(blocks)).endswith(want), (source, blocks)


def _tree_text(nodes: list[Any]) -> str:
    out = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, list):
            out.append(_tree_text(node))
        else:
            out.append(node.get("v", "") + _tree_text(node.get("c", [])) + _tree_text(node.get("head", []))
                       + _tree_text(node.get("rows", [])))
    return "".join(out)


# --- In a real browser: the .html export, the .md as GitHub would render it, nbconvert's HTML, the card.


def load(browser: Any, path: Path) -> tuple[list[str], list[str], Any]:
    """Open ``path`` in a fresh page; the dialogs it opened, the requests it made, and the page."""
    page = browser.new_page()
    dialogs: list[str] = []
    requests: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri(), wait_until="load")
    page.mouse.move(200, 200)
    page.wait_for_timeout(300)  # onerror/onload handlers of late elements
    return dialogs, requests, page


def _page(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'></head><body>{body}</body></html>",
                    encoding="utf-8")
    return path


@pytest.mark.browser
def test_every_html_rendering_is_inert_in_chromium(browser: Any, tmp_path: Path) -> None:
    results = hostile_results()
    documents = {
        "export.html": export(results, tmp_path / "export.html"),
        "styled.html": export(results, tmp_path / "styled.html", title=HOSTILE[8], author=HOSTILE[12]),
        "gfm.html": _page(tmp_path, "gfm.html", gfm(to_markdown(results))),
        "card.html": _page(tmp_path, "card.html", results._repr_html_()),
        "nbconvert.html": _page(tmp_path, "nbconvert.html", nbconvert_body(results)),
    }
    for name, path in documents.items():
        dialogs, requests, page = load(browser, path)
        assert dialogs == [], name
        assert requests == [path.as_uri()], name
        # The card's own stylesheet (a constant, no page text: checked above) is the one style in a body; the
        # report's own script (the package's file, no page text) is its one script.
        counts = page.evaluate("""([css, script]) => ({
            active: [...document.querySelectorAll('img,script,iframe,svg,object,embed,style:not(head style)')]
                .filter(e => !(e.tagName === 'STYLE' && e.textContent === css))
                .filter(e => !(e.tagName === 'SCRIPT' && e.textContent.trim() === script.trim())).length,
            handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
            js: [...document.querySelectorAll('a[href]')].filter(a => !/^(https?:|mailto:|xmpp:|#)/.test(a.getAttribute('href'))).length,
        })""", [_CARD_CSS, REPORT_SCRIPT])
        assert counts == {"active": 0, "handlers": 0, "js": 0}, (name, counts)
        text = squash(page.inner_text("body"))
        for hostile in HOSTILE:
            assert squash(hostile) in text, (name, hostile)
        page.close()


def test_summary_paragraphs_starting_with_block_syntax_stay_text() -> None:
    starts = ["- item", "+ item", "1. first", "2) second", "--- rule", "=== setext", "> quote", "    code",
              "```fence", "~~~fence", "| a | b |", "<div>block</div>", "[ref]: http://x.test/"]
    results = factory.results(2, summary="\n\n".join(f"{s} [1]." for s in starts))
    md = to_markdown(results)
    summary = md.split("## Summary", 1)[1].split("## Results", 1)[0]
    for render in (gfm, markdown2html_mistune):
        found = assert_inert(render(summary), {"p", "a"})
        for start in starts:
            assert squash(start) in found.text, (render, start)


def test_links_keep_the_exact_url_in_every_format(tmp_path: Path) -> None:
    url = "https://x.test/p?a=1&b=2&lt=3&c=4&copy=5"
    results = factory.results(rows=[factory.row(1, url=url), factory.row(2)])
    for html in (gfm(to_markdown(results)), to_html(results), results._repr_html_()):
        assert url in [attrs.get("href") for tag, attrs in scan(html).tags if tag == "a"]
    pdf = export(results, tmp_path / "links.pdf").read_bytes()
    assert b"/URI (" + url.encode() + b")" in pdf.replace(b"/URI(", b"/URI (")


def test_the_reports_script_never_parses_or_runs_text() -> None:
    """Sorting and filtering move rows and read textContent: nothing that turns text into markup or code."""
    code = re.sub(r"^\s*//.*$", "", REPORT_SCRIPT, flags=re.M)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(", "setTimeout(",
                 "setInterval(", "createContextualFragment", "DOMParser", "srcdoc", "fetch(", "XMLHttpRequest", "import("):
        assert sink not in code, sink


def test_style_values_are_text_in_markdown_and_html() -> None:
    results = factory.results(2)
    for value in HOSTILE:
        md = to_markdown(results, ReportStyle.of(title=value, author=value))
        found = assert_inert(gfm(md.split("## Summary")[0]), {"h1", "p", "ul", "li", "strong", "a"})
        assert found.text.count(squash(value)) == 2
        page = to_html(results, ReportStyle.of(title=value, author=value))
        head = page.split("<section>")[0]
        found = assert_inert(head, {"html", "head", "meta", "title", "style", "body", "main", "header", "h1", "p", "dl",
                                    "div", "dt", "dd", "time"})
        assert found.text.count(squash(value)) >= 2  # the heading and the author line (and the <title>)
