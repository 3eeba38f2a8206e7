"""A loopback stand-in for the web: one aiohttp server that speaks the real wire formats of the search
sources (SearXNG JSON, the MediaWiki action API, DuckDuckGo's HTML endpoint) over a set of article
pages, and serves those pages' HTML at the URLs its results point to.

Pages come from the shared corpus (../shared/corpus: html/<id>.html.gz + ground-truth.json) when it is
there, else from tests/fixtures/pages (same layout, eight small pages). Use it from any test::

    from fake_search import SearchServer, load_pages

    async def test_something():
        async with SearchServer(load_pages()) as server:
            source = SearXNG(server.searxng_url)   # or Wikipedia(server.wikipedia_endpoint), ...
            ...

or take the ready-made `search_server` fixture: `from fake_search import search_server  # noqa: F401`.

Behaviour switches are plain attributes, changeable while the server runs: `searxng_json` (False: 403
as an instance without JSON output), `searxng_page_limit` (pages past it answer 429, as SearXNG's
limiter may), `duckduckgo_mode` ("ok", "ratelimit" = HTTP 202, "anomaly" = the
bot-check page), `wiki_maxlag` (how many API requests to answer with a maxlag error first).
`foreign_results` lists URLs answered ahead of the ranked pages by SearXNG (on its first page) and DuckDuckGo,
as real engines may (file:, javascript:, hosts that fail IDNA), titled "foreign result 1", 2, ...
`delay` makes every answer wait that many seconds first. `requests` records every request (path, query,
headers) in arrival order; `peak_in_flight[path]` is the most requests to one path seen open at once.
"""

from __future__ import annotations

import asyncio
import gzip
import html
import json
import os
import re
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import lxml.html
import pytest
from aiohttp import web

FIXTURE_PAGES = Path(__file__).parent / "fixtures" / "pages"
#: The shared corpus beside the repository; TORQ_NB_CORPUS points elsewhere.
CORPUS = Path(os.environ.get("TORQ_NB_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus"))

T = TypeVar("T")
DuckDuckGoMode = Literal["ok", "ratelimit", "anomaly"]
_WORD = re.compile(r"\w\w+", re.UNICODE)


@dataclass(frozen=True)
class FakePage:
    """One article: its HTML as served, its ground-truth text, and where it originally lived."""

    id: str
    title: str
    html: str
    text: str
    original_url: str
    published: str | None = None


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


def corpus_available(folder: Path = CORPUS) -> bool:
    return (folder / "ground-truth.json").is_file() and (folder / "html").is_dir()


def default_folder() -> Path:
    """The page set used when none is named: the shared corpus if present, else the committed fixtures.
    Its html/ subfolder suits LocalFiles."""
    return CORPUS if corpus_available() else FIXTURE_PAGES


def load_pages(folder: Path | None = None, limit: int | None = None) -> list[FakePage]:
    """The pages of `folder` (default: the shared corpus if present, else the committed fixtures), sorted by id."""
    folder = folder if folder is not None else default_folder()
    truth: dict[str, dict[str, str]] = json.loads((folder / "ground-truth.json").read_text("utf-8"))
    pages = []
    for page_id in sorted(truth)[:limit]:
        plain, packed = folder / "html" / f"{page_id}.html", folder / "html" / f"{page_id}.html.gz"
        raw = gzip.decompress(packed.read_bytes()) if packed.exists() else plain.read_bytes()
        markup = raw.decode("utf-8")
        title, published = _title_and_date(markup)
        pages.append(
            FakePage(page_id, title or page_id, markup, truth[page_id]["articleBody"], truth[page_id]["url"], published)
        )
    return pages


def _title_and_date(markup: str) -> tuple[str, str | None]:
    root = lxml.html.document_fromstring(markup)
    titles = [" ".join(t.text_content().split()) for t in root.iter("title", "h1")]
    dates = root.xpath("//meta[@property='article:published_time']/@content")
    return next((t for t in titles if t), ""), (str(dates[0]) if dates else None)


def _terms(text: str) -> list[str]:
    return [word.lower() for word in _WORD.findall(text)]


class SearchServer:
    """The fake web on 127.0.0.1 (a free port); an async context manager that starts and stops it."""

    def __init__(self, pages: Sequence[FakePage], *, results_per_page: int = 10) -> None:
        self.pages = list(pages)
        self.results_per_page = results_per_page
        self.searxng_json = True
        self.searxng_page_limit: int | None = None
        self.duckduckgo_mode: DuckDuckGoMode = "ok"
        self.wiki_maxlag = 0
        self.foreign_results: list[str] = []
        self.delay = 0.0
        self.requests: list[RecordedRequest] = []
        self.peak_in_flight: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self.url = ""
        self._by_id = {page.id: page for page in self.pages}
        self._by_title = self._unique_titles()
        self._index = [(page, _terms(page.title), _terms(page.text)) for page in self.pages]
        self._runner: web.AppRunner | None = None

    # addresses ------------------------------------------------------------------------------------------------
    @property
    def searxng_url(self) -> str:
        return self.url

    @property
    def wikipedia_endpoint(self) -> str:
        return f"{self.url}/w/api.php"

    @property
    def duckduckgo_endpoint(self) -> str:
        return f"{self.url}/html/"

    def page_url(self, page: FakePage) -> str:
        return f"{self.url}/pages/{quote(page.id)}.html"

    def wiki_title(self, page: FakePage) -> str:
        """The page's article title on the fake wiki (titles made unique)."""
        return next(title for title, candidate in self._by_title.items() if candidate is page)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]

    # life cycle -----------------------------------------------------------------------------------------------
    async def __aenter__(self) -> SearchServer:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/search", self._searxng)
        app.router.add_get("/w/api.php", self._mediawiki)
        app.router.add_route("*", "/html/", self._duckduckgo)
        app.router.add_get("/pages/{id}.html", self._page)
        app.router.add_get("/wiki/{title:.+}", self._wiki_article)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # search -----------------------------------------------------------------------------------------------
    def ranked(self, query: str) -> list[FakePage]:
        """Pages containing any query term, by term frequency (title words count triple), then id."""
        wanted = set(_terms(query))
        scored = []
        for page, title_terms, text_terms in self._index:
            score = 3 * sum(term in wanted for term in title_terms) + sum(term in wanted for term in text_terms)
            if score:
                scored.append((-score, page.id, page))
        return [page for _, _, page in sorted(scored)]

    def _snippet(self, page: FakePage, query: str, open_tag: str, close_tag: str) -> str:
        """About 160 characters of the page's text around the first query term, terms marked, HTML-escaped."""
        wanted = set(_terms(query))
        words = page.text.split()
        first = next((i for i, w in enumerate(words) if set(_terms(w)) & wanted), 0)
        window = words[max(0, first - 8) : first + 18]
        return " ".join(
            f"{open_tag}{html.escape(w)}{close_tag}" if set(_terms(w)) & wanted else html.escape(w) for w in window
        )

    # handlers -------------------------------------------------------------------------------------------------
    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        query = dict(request.query)
        if request.method == "POST":
            query.update({key: str(value) for key, value in (await request.post()).items()})
        self.requests.append(RecordedRequest(request.method, request.path, query, dict(request.headers)))
        path = request.path
        self._in_flight[path] = self._in_flight.get(path, 0) + 1
        self.peak_in_flight[path] = max(self.peak_in_flight.get(path, 0), self._in_flight[path])
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            self._in_flight[path] -= 1

    async def _searxng(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        if request.query.get("format") != "json":
            return web.Response(
                text=f"<html><body>results for {html.escape(query)}</body></html>", content_type="text/html"
            )
        if not self.searxng_json:
            return web.Response(
                status=403, text="<html><body><h1>403 Forbidden</h1></body></html>", content_type="text/html"
            )
        pageno = int(request.query.get("pageno", "1"))
        if self.searxng_page_limit is not None and pageno > self.searxng_page_limit:
            return web.Response(status=429, text="Too Many Requests", content_type="text/plain")
        ranked = self.ranked(query)
        start = (pageno - 1) * self.results_per_page
        results = [
            {
                "url": self.page_url(page),
                "title": page.title,
                "content": html.unescape(self._snippet(page, query, "", "")),
                "engine": "fakeengine",
                "engines": ["fakeengine"],
                "positions": [start + n + 1],
                "parsed_url": ["http", self.url.removeprefix("http://"), f"/pages/{page.id}.html", "", "", ""],
                "template": "default.html",
                "category": "general",
                "score": round(1.0 / (start + n + 1), 6),
                "publishedDate": page.published,
            }
            for n, page in enumerate(ranked[start : start + self.results_per_page])
        ]
        if pageno == 1:
            results[:0] = [{"url": url, "title": title, "content": title, "engine": "fakeengine"}
                           for url, title in self._foreign()]
        body = {
            "query": query,
            "number_of_results": len(ranked),
            "results": results,
            "answers": [],
            "corrections": [],
            "infoboxes": [],
            "suggestions": [],
            "unresponsive_engines": [],
        }
        return web.json_response(body)

    async def _mediawiki(self, request: web.Request) -> web.Response:
        if self.wiki_maxlag > 0:
            self.wiki_maxlag -= 1
            error = {
                "code": "maxlag",
                "info": "Waiting for db1: 7 seconds lagged.",
                "host": "db1",
                "lag": 7,
                "type": "db",
            }
            return web.json_response({"error": error}, headers={"Retry-After": "5", "X-Database-Lag": "7"})
        q = request.query
        if q.get("action") != "query" or q.get("format") != "json":
            error = {"code": "badvalue", "info": 'Unrecognized value for parameter "action".'}
            return web.json_response({"error": error}, headers={"MediaWiki-API-Error": "badvalue"})
        if q.get("list") == "search":
            limit = int(q.get("srlimit", "10"))
            term = q.get("srsearch", "")
            if len(term) > 300:  # CirrusSearch's $wgCirrusSearchMaxFullTextQueryLength
                error = {"code": "request_too_long",
                         "info": f"Search request is longer than the maximum allowed length. ({len(term)} > 300)"}
                return web.json_response({"error": error}, headers={"MediaWiki-API-Error": "request_too_long"})
            ranked = self.ranked(term)
            found = [
                {
                    "ns": 0,
                    "title": self.wiki_title(page),
                    "pageid": n + 1,
                    "snippet": self._snippet(page, term, '<span class="searchmatch">', "</span>"),
                }
                for n, page in enumerate(ranked[:limit])
            ]
            body: dict[str, Any] = {
                "batchcomplete": True,
                "query": {"searchinfo": {"totalhits": len(ranked)}, "search": found},
            }
            if len(ranked) > limit:
                body["continue"] = {"sroffset": limit, "continue": "-||"}
            return web.json_response(body)
        if q.get("prop") == "extracts":
            title = q.get("titles", "")
            page = self._by_title.get(title)
            if page is None:
                return web.json_response(
                    {"batchcomplete": True, "query": {"pages": [{"ns": 0, "title": title, "missing": True}]}}
                )
            entry = {"pageid": self.pages.index(page) + 1, "ns": 0, "title": title, "extract": page.text}
            return web.json_response({"batchcomplete": True, "query": {"pages": [entry]}})
        return web.json_response({"batchcomplete": True, "query": {}})

    async def _duckduckgo(self, request: web.Request) -> web.Response:
        if self.duckduckgo_mode == "ratelimit":
            return web.Response(status=202, text=_DDG_ANOMALY.format(query=""), content_type="text/html")
        query = request.query.get("q") or str((await request.post()).get("q", ""))
        if self.duckduckgo_mode == "anomaly":
            return web.Response(text=_DDG_ANOMALY.format(query=html.escape(query)), content_type="text/html")
        ranked = self.ranked(query)
        blocks = [_DDG_AD] + [
            _DDG_RESULT.format(
                href=html.escape(f"//duckduckgo.com/l/?uddg={quote(self.page_url(page), safe='')}&rut=0f3e9a"),
                title=self._snippet_title(page, query),
                display=html.escape(self.page_url(page).removeprefix("http://")),
                snippet=self._snippet(page, query, "<b>", "</b>"),
            )
            for page in ranked[: self.results_per_page]
        ]
        blocks[1:1] = [
            _DDG_RESULT.format(href=html.escape(f"//duckduckgo.com/l/?uddg={quote(url, safe='')}&rut=0f3e9a"),
                               title=title, display=html.escape(url), snippet=title)
            for url, title in self._foreign()
        ]
        if not ranked and not self.foreign_results:
            blocks = ['<div class="no-results">No  results.</div>']
        page_html = _DDG_PAGE.format(query=html.escape(query), results="\n".join(blocks))
        return web.Response(text=page_html, content_type="text/html")

    def _foreign(self) -> list[tuple[str, str]]:
        return [(url, f"foreign result {n}") for n, url in enumerate(self.foreign_results, start=1)]

    def _snippet_title(self, page: FakePage, query: str) -> str:
        wanted = set(_terms(query))
        return " ".join(
            f"<b>{html.escape(w)}</b>" if set(_terms(w)) & wanted else html.escape(w) for w in page.title.split()
        )

    async def _page(self, request: web.Request) -> web.Response:
        page = self._by_id.get(request.match_info["id"])
        if page is None:
            raise web.HTTPNotFound(text="no such page")
        return web.Response(text=page.html, content_type="text/html", charset="utf-8")

    async def _wiki_article(self, request: web.Request) -> web.Response:
        page = self._by_title.get(request.match_info["title"].replace("_", " "))
        if page is None:
            raise web.HTTPNotFound(text="no such article")
        return web.Response(text=page.html, content_type="text/html", charset="utf-8")

    def _unique_titles(self) -> dict[str, FakePage]:
        titles: dict[str, FakePage] = {}
        for page in self.pages:
            title = page.title.replace("_", " ")
            titles[title if title not in titles else f"{title} ({page.id[:8]})"] = page
        return titles


@pytest.fixture
async def search_server() -> AsyncIterator[SearchServer]:
    """A running SearchServer over the corpus (or the fixture pages)."""
    async with SearchServer(load_pages()) as server:
        yield server


_DDG_PAGE = """<!DOCTYPE html>
<html lang="en-US"><head><meta charset="UTF-8"><title>{query} at DuckDuckGo</title>
<link rel="stylesheet" href="/dist/h.css" type="text/css"></head>
<body>
<div id="links" class="results">
{results}
</div>
<div class="nav-link"><form action="/html/" method="post"><input type="submit" class="btn btn--alt" value="Next">
<input type="hidden" name="q" value="{query}"><input type="hidden" name="s" value="10"><input type="hidden" name="dc" value="11">
<input type="hidden" name="vqd" value="4-1234567890"></form></div>
</body></html>"""

_DDG_RESULT = """<div class="result results_links results_links_deep web-result ">
  <div class="links_main links_deep result__body">
    <h2 class="result__title"><a rel="nofollow" class="result__a" href="{href}">{title}</a></h2>
    <div class="result__extras"><div class="result__extras__url">
      <a class="result__url" href="{href}">{display}</a></div></div>
    <a class="result__snippet" href="{href}">{snippet}</a>
    <div class="clear"></div>
  </div>
</div>"""

_DDG_AD = """<div class="result results_links results_links_deep result--ad ">
  <div class="links_main links_deep result__body">
    <h2 class="result__title"><a rel="nofollow" class="result__a"
      href="https://duckduckgo.com/y.js?ad_domain=shop.example&amp;ad_provider=bingv7aa&amp;u3=https%3A%2F%2Fshop.example">Buy <b>Everything</b> Now</a></h2>
    <a class="result__snippet" href="https://duckduckgo.com/y.js?ad_domain=shop.example">Sponsored &amp; discounted.</a>
  </div>
</div>"""

_DDG_ANOMALY = """<!DOCTYPE html>
<html><head><meta charset="UTF-8"><title>DuckDuckGo</title></head>
<body>
<form id="challenge-form" action="//duckduckgo.com/anomaly.js?sv=html&amp;cc=botnet&amp;st=1&amp;gk=d4cd0dabcf4caa22ad92fab40844c786&amp;p=0&amp;q={query}" method="POST">
<div class="anomaly-modal__title">Unfortunately, bots use DuckDuckGo too.</div>
<div class="anomaly-modal__description">Please complete the following challenge to confirm this search was made by a human.</div>
</form>
<script>DDG.deep.anomalyDetectionBlock({{"html": true}});</script>
</body></html>"""


@contextmanager
def serve_in_thread(server: AbstractAsyncContextManager[T], timeout: float = 30.0) -> Iterator[T]:
    """Run an async server (anything used as ``async with server``) on its own event loop in a daemon
    thread for the ``with`` block: a sync test, and the notebook kernels it drives, can reach it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="loopback-server", daemon=True)
    thread.start()
    try:
        entered = asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(timeout)
        try:
            yield entered
        finally:
            asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(timeout)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        loop.close()


def search_environment(server: SearchServer) -> dict[str, str]:
    """The variables that point torq_nb's default source at this server's SearXNG API (pages on loopback allowed)."""
    return {
        "TORQ_NB_SOURCE": "searxng",
        "TORQ_NB_SEARXNG_URL": server.searxng_url,
        "TORQ_NB_ALLOW_PRIVATE_NETWORKS": "1",
    }
