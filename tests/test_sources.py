"""Search sources against loopback servers that speak each service's real wire format, through the real
Fetcher; LocalFiles against real folders (the fixture pages, temporary files and, when present, the corpus)."""

from __future__ import annotations

import asyncio
import gzip
import html
import importlib
import os
import textwrap
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import pytest
from fake_search import CORPUS, FIXTURE_PAGES, SearchServer, corpus_available, load_pages
from hypothesis import given
from hypothesis import strategies as st

from torq_nb.research.fetch import Fetcher, FetchPolicy
from torq_nb.research.models import Hit
from torq_nb.research.sources import (
    DuckDuckGo,
    LocalFiles,
    SearXNG,
    Source,
    SourceError,
    Wikipedia,
    available_sources,
    canonical_url,
    html_to_text,
    resolve_source,
    unique_hits,
)
from torq_nb.research.sources.base import xml_safe

FIXTURES = load_pages(FIXTURE_PAGES)
BY_ID = {page.id: page for page in FIXTURES}


@pytest.fixture
async def server() -> AsyncIterator[SearchServer]:
    async with SearchServer(FIXTURES) as running:
        yield running


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(FetchPolicy(allow_private_networks=True, retries=0)) as opened:
        yield opened


def assert_plain(hits: list[Hit]) -> None:
    for hit in hits:
        for text in (hit.title, hit.snippet):
            assert "<" not in text and "&quot;" not in text and "&amp;" not in text, text


# Wikipedia ------------------------------------------------------------------------------------------------------


async def test_wikipedia_hits_are_plain_article_links(server: SearchServer, fetcher: Fetcher) -> None:
    wiki = Wikipedia(server.wikipedia_endpoint)
    hits = await wiki.search("varroa mite honeybee colonies", 5, fetcher)

    bees = BY_ID["honeybee-colony-losses"]
    assert hits[0].title == server.wiki_title(bees)
    assert hits[0].url == f"{server.url}/wiki/" + quote(server.wiki_title(bees).replace(" ", "_"))
    assert "honeybee" in hits[0].snippet and hits[0].snippet in " ".join(bees.text.split())  # spans stripped
    assert all(hit.source == "wikipedia" for hit in hits)
    assert_plain(hits)
    request = server.requests_to("/w/api.php")[0]
    assert request.query["list"] == "search" and request.query["srsearch"] == "varroa mite honeybee colonies"
    assert request.query["maxlag"] == "5" and request.query["formatversion"] == "2"
    assert request.headers["User-Agent"].startswith("torq_nb/")  # descriptive, as Wikimedia requires


async def test_wikipedia_user_agent_can_carry_contact_details(server: SearchServer, fetcher: Fetcher) -> None:
    wiki = Wikipedia(server.wikipedia_endpoint, user_agent="LabNotebook/1.0 (ada@example.org) torq_nb")
    await wiki.search("bees", 1, fetcher)
    assert server.requests_to("/w/api.php")[0].headers["User-Agent"] == "LabNotebook/1.0 (ada@example.org) torq_nb"


async def test_wikipedia_fetch_is_the_plain_text_extract(server: SearchServer, fetcher: Fetcher) -> None:
    wiki = Wikipedia(server.wikipedia_endpoint)
    [hit] = await wiki.search("aqueduct castellum", 1, fetcher)

    page = await wiki.fetch(hit, fetcher)

    assert page.status == "ok" and page.content_type == "text/plain"
    assert page.text == BY_ID["roman-aqueducts"].text
    extract_request = server.requests_to("/w/api.php")[-1]
    assert extract_request.query["prop"] == "extracts" and extract_request.query["explaintext"] == "1"
    assert extract_request.query["exsectionformat"] == "plain" and extract_request.query["maxlag"] == "5"


async def test_wikipedia_missing_article_is_an_error_page_not_an_exception(
    server: SearchServer, fetcher: Fetcher
) -> None:
    wiki = Wikipedia(server.wikipedia_endpoint)
    page = await wiki.fetch(Hit(title="No such thing", url=wiki.article_url("No such thing")), fetcher)
    assert page.status == "error" and "No such thing" in (page.error or "")


async def test_wikipedia_sends_one_request_at_a_time(server: SearchServer, fetcher: Fetcher) -> None:
    wiki = Wikipedia(server.wikipedia_endpoint)
    hits = await wiki.search("the und", 8, fetcher)
    server.delay = 0.02

    pages = await asyncio.gather(*(wiki.fetch(hit, fetcher) for hit in hits))

    assert len(hits) == 8 and all(page.status == "ok" for page in pages)
    assert server.peak_in_flight["/w/api.php"] == 1


async def test_wikipedia_waits_out_replication_lag(server: SearchServer, fetcher: Fetcher) -> None:
    wiki = Wikipedia(server.wikipedia_endpoint, maxlag_wait=0.01)
    server.wiki_maxlag = 2
    hits = await wiki.search("sourdough", 3, fetcher)
    assert hits and len(server.requests_to("/w/api.php")) == 3

    server.wiki_maxlag = 10
    with pytest.raises(SourceError, match="maxlag"):
        await wiki.search("sourdough", 3, fetcher)


async def test_wikipedia_search_failure_names_the_source_and_status(server: SearchServer, fetcher: Fetcher) -> None:
    wiki = Wikipedia(f"{server.url}/nowhere/api.php")
    with pytest.raises(SourceError, match=r"Wikipedia: search failed \(HTTP 404"):
        await wiki.search("anything", 3, fetcher)


@pytest.mark.parametrize("wait", [float("nan"), float("inf"), -1, None, "5"])
def test_wikipedia_maxlag_wait_must_be_seconds(wait: object) -> None:
    with pytest.raises((TypeError, ValueError), match=r"Wikipedia: maxlag_wait must be a finite number of seconds, "
                                                      r"0 or more, got .*; for example Wikipedia\(maxlag_wait=5\)"):
        Wikipedia("http://127.0.0.1:9/w/api.php", maxlag_wait=wait)  # type: ignore[arg-type]


def test_wikipedia_language_edition_and_article_urls() -> None:
    german = Wikipedia(lang="de")
    assert german.endpoint == "https://de.wikipedia.org/w/api.php"
    assert german.article_url("Pont du Gard") == "https://de.wikipedia.org/wiki/Pont_du_Gard"
    assert german.article_url("Größe (Physik)") == "https://de.wikipedia.org/wiki/Gr%C3%B6%C3%9Fe_(Physik)"
    hit = Hit(title="ignored", url=german.article_url("Größe (Physik)"))
    assert german.title_of(hit) == "Größe (Physik)"
    with pytest.raises(ValueError, match="not both"):
        Wikipedia("http://127.0.0.1:9/w/api.php", lang="de")


# SearXNG --------------------------------------------------------------------------------------------------------


async def test_searxng_hits_carry_scores_and_dates(server: SearchServer, fetcher: Fetcher) -> None:
    hits = await SearXNG(server.searxng_url).search("solar batteries grid storage", 4, fetcher)

    solar = BY_ID["grid-batteries-solar"]
    assert hits[0].url == server.page_url(solar)
    assert hits[0].title == solar.title
    assert hits[0].published is not None and hits[0].published.isoformat() == "2024-03-14"
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert all(hit.source == "searxng" and hit.content is None for hit in hits)
    assert_plain(hits)
    assert server.requests_to("/search")[0].query["format"] == "json"


async def test_searxng_passes_language_and_categories(server: SearchServer, fetcher: Fetcher) -> None:
    await SearXNG(server.searxng_url, language="de", categories="news").search("Windkraft", 3, fetcher)
    query = server.requests_to("/search")[0].query
    assert query["language"] == "de" and query["categories"] == "news" and query["q"] == "Windkraft"


async def test_searxng_pages_through_results_up_to_the_limit(fetcher: Fetcher) -> None:
    async with SearchServer(FIXTURES, results_per_page=3) as small_pages:
        hits = await SearXNG(small_pages.searxng_url).search("the", 7, fetcher)
        asked = [request.query["pageno"] for request in small_pages.requests_to("/search")]

    assert len(hits) == 7 and len({hit.url for hit in hits}) == 7
    assert asked == ["1", "2", "3"]


async def test_searxng_keeps_earlier_pages_when_a_later_one_fails(
    fetcher: Fetcher, caplog: pytest.LogCaptureFixture
) -> None:
    async with SearchServer(FIXTURES, results_per_page=3) as limited:
        limited.searxng_page_limit = 1
        hits = await SearXNG(limited.searxng_url).search("the", 7, fetcher)
        limited.searxng_page_limit = 0
        with pytest.raises(SourceError, match="rate-limiting"):
            await SearXNG(limited.searxng_url).search("the", 7, fetcher)
    assert len(hits) == 3 and "HTTP 429" in caplog.text


async def test_searxng_without_json_output_says_how_to_enable_it(server: SearchServer, fetcher: Fetcher) -> None:
    server.searxng_json = False
    with pytest.raises(SourceError) as raised:
        await SearXNG(server.searxng_url).search("bees", 5, fetcher)
    message = str(raised.value)
    assert "JSON output is disabled" in message and "403" in message
    assert "settings.yml" in message and "formats: [html, json]" in message


async def test_searxng_at_a_wrong_address_names_the_status(server: SearchServer, fetcher: Fetcher) -> None:
    with pytest.raises(SourceError, match=r"SearXNG at .*/wrong: the search failed \(HTTP 404"):
        await SearXNG(f"{server.url}/wrong").search("bees", 5, fetcher)


def test_searxng_needs_an_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORQ_NB_SEARXNG_URL", raising=False)
    with pytest.raises(ValueError, match="TORQ_NB_SEARXNG_URL"):
        SearXNG()
    monkeypatch.setenv("TORQ_NB_SEARXNG_URL", "http://127.0.0.1:8888")
    with pytest.raises(ValueError, match="source='searxng'"):  # a source built by hand is what its arguments say
        SearXNG()


NOT_WEB_PAGES = ["file:///etc/passwd", "javascript:alert(1)", "ftp://files.test/report.txt", "data:text/html,<b>hi</b>"]


@pytest.mark.parametrize("engine", ["searxng", "duckduckgo"])
async def test_results_that_are_not_web_pages_stay_hits_and_fetch_as_refusals(
    server: SearchServer, fetcher: Fetcher, engine: str
) -> None:
    """A result an engine hands back is a hit even when it is no http(s) page: the fetch refuses it, with the
    reason, so it ends as an error row instead of vanishing."""
    server.foreign_results = NOT_WEB_PAGES
    source = SearXNG(server.searxng_url) if engine == "searxng" else DuckDuckGo(server.duckduckgo_endpoint)
    hits = await source.search("bees", 10, fetcher)
    foreign = [hit for hit in hits if hit.title.startswith("foreign result")]
    assert [hit.url for hit in foreign] == NOT_WEB_PAGES
    assert len(hits) > len(foreign)  # the ordinary results are still there
    for hit in foreign:
        page = await source.fetch(hit, fetcher)
        scheme = hit.url.split(":", 1)[0]
        assert page.status == "error" and page.error.startswith(f"refused: only http and https URLs are fetched, not {scheme}")


# DuckDuckGo -----------------------------------------------------------------------------------------------------


async def test_duckduckgo_decodes_redirect_links_and_skips_ads(server: SearchServer, fetcher: Fetcher) -> None:
    hits = await DuckDuckGo(server.duckduckgo_endpoint).search("deep sea mining nodules", 5, fetcher)

    mining = BY_ID["deep-sea-mining"]
    assert hits[0].url == server.page_url(mining)
    assert hits[0].title == mining.title
    assert "nodules" in hits[0].snippet
    assert all(hit.url.startswith(server.url + "/pages/") for hit in hits)  # no ad, no duckduckgo.com link
    assert_plain(hits)


async def test_duckduckgo_hits_are_fetched_as_untrusted_urls(server: SearchServer) -> None:
    """The search endpoint is trusted; the result URLs are not: on loopback they are refused unless allowed."""
    async with Fetcher(FetchPolicy(allow_private_networks=False, retries=0)) as strict:
        source = DuckDuckGo(server.duckduckgo_endpoint)
        hits = await source.search("marathon heart", 2, strict)
        refused = await source.fetch(hits[0], strict)
    async with Fetcher(FetchPolicy(allow_private_networks=True, retries=0)) as lenient:
        fetched = await source.fetch(hits[0], lenient)

    assert refused.status == "error" and refused.error
    assert fetched.status == "ok" and fetched.text == BY_ID["marathon-training"].html


@pytest.mark.parametrize(("mode", "how"), [("ratelimit", "HTTP 202"), ("anomaly", "anomaly")])
async def test_duckduckgo_rate_limit_pages_are_reported(
    server: SearchServer, fetcher: Fetcher, mode: str, how: str
) -> None:
    server.duckduckgo_mode = mode  # type: ignore[assignment]
    with pytest.raises(SourceError) as raised:
        await DuckDuckGo(server.duckduckgo_endpoint).search("bees", 5, fetcher)
    message = str(raised.value)
    assert "DuckDuckGo rate-limited" in message and how in message
    assert "Retry" in message and "another source" in message


async def test_duckduckgo_result_about_anomalies_is_not_a_block(fetcher: Fetcher) -> None:
    article = replace(
        BY_ID["python-asyncio-event-loop"],
        id="anomaly-detection",
        title="Anomaly detection for server metrics",
        text="Anomaly detection flags unusual latency. DDG.deep.anomalyDetectionBlock is not code here.",
    )
    async with SearchServer([article]) as one_page:
        hits = await DuckDuckGo(one_page.duckduckgo_endpoint).search("anomaly detection", 5, fetcher)
    assert [hit.title for hit in hits] == ["Anomaly detection for server metrics"]


async def test_duckduckgo_searches_go_one_at_a_time(server: SearchServer, fetcher: Fetcher) -> None:
    source = DuckDuckGo(server.duckduckgo_endpoint)
    server.delay = 0.02
    batches = await asyncio.gather(*(source.search(query, 3, fetcher) for query in ("bees", "solar", "bread")))
    assert all(batches) and server.peak_in_flight["/html/"] == 1


def test_a_source_can_be_reused_in_a_new_event_loop() -> None:
    """Notebooks run research in more than one event loop; a source's request lock must not outlive its loop."""
    source = DuckDuckGo()

    async def contended_searches() -> list[list[Hit]]:
        async with SearchServer(FIXTURES) as running, Fetcher(FetchPolicy(allow_private_networks=True)) as fetcher:
            source.endpoint = running.duckduckgo_endpoint
            return await asyncio.gather(*(source.search(query, 2, fetcher) for query in ("bees", "solar")))

    assert all(asyncio.run(contended_searches()))
    assert all(asyncio.run(contended_searches()))


async def test_duckduckgo_no_results_is_an_empty_list(server: SearchServer, fetcher: Fetcher) -> None:
    assert await DuckDuckGo(server.duckduckgo_endpoint).search("zzyzx qwertyuiop", 5, fetcher) == []


# LocalFiles -----------------------------------------------------------------------------------------------------


async def test_local_files_rank_fixture_pages_without_network() -> None:
    source = LocalFiles(FIXTURE_PAGES)
    never_opened = Fetcher()  # any HTTP request through it would raise

    hits = await source.search("varroa mite in honeybee colonies", 3, never_opened)

    bees_file = FIXTURE_PAGES / "html" / "honeybee-colony-losses.html"
    top = hits[0]
    assert top.url == bees_file.as_uri() and top.source == "local"
    assert top.title == "Why beekeepers lost a third of their colonies last winter – The Field Notebook"
    assert top.content == bees_file.read_text("utf-8") and top.content_type == "text/html"
    assert "varroa mite" in top.snippet and top.score is not None and top.score > 0
    assert [hit.score for hit in hits] == sorted((hit.score or 0 for hit in hits), reverse=True)
    assert_plain(hits)


async def test_local_files_find_the_german_page() -> None:
    hits = await LocalFiles(FIXTURE_PAGES).search("Windkraft Stromnetze Energiewende", 2, Fetcher())
    assert hits[0].url.endswith("/energiewende.html")
    assert "Windkraft" in hits[0].title


async def test_local_files_read_markdown_text_and_gzip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "tides.md").write_text(
        "Intro line.\n\n# Tides and the **Moon**\n\nThe [Moon](https://example.org) pulls the *oceans*, "
        "raising two tidal bulges.\n\n- spring tides\n- neap tides\n",
        "utf-8",
    )
    (tmp_path / "glaciers_report.txt").write_text("Glaciers retreat as\nsummers warm.\n\nAnother paragraph.", "utf-8")
    (tmp_path / "volcano.html.gz").write_bytes(
        gzip.compress(
            b"<html><head><title>Volcanic ash</title></head><body><p>Ash clouds ground planes.</p></body></html>"
        )
    )
    (tmp_path / "comets.md.gz").write_bytes(gzip.compress(b"# Comets\n\nComet tails point away from the Sun."))
    (tmp_path / "damaged.txt.gz").write_bytes(gzip.compress(b"moon pulls oceans " * 50)[:40])
    (tmp_path / "ignored.json").write_text('{"tides": "moon"}', "utf-8")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "tides.txt").write_text("tides tides tides moon", "utf-8")
    source = LocalFiles(tmp_path)

    tides = await source.search("moon pulls oceans", 5, Fetcher())
    glaciers = await source.search("glaciers summers", 5, Fetcher())
    ash = await source.search("volcanic ash", 5, Fetcher())
    comets = await source.search("comet tails", 5, Fetcher())

    assert [hit.title for hit in tides] == ["Tides and the Moon"]
    assert tides[0].snippet == "The Moon pulls the oceans, raising two tidal bulges."
    assert tides[0].content_type == "text/markdown" and tides[0].content is not None and "**Moon**" in tides[0].content
    assert glaciers[0].title == "glaciers report" and glaciers[0].content_type == "text/plain"
    assert glaciers[0].snippet == "Glaciers retreat as summers warm."
    assert ash[0].title == "Volcanic ash" and ash[0].content is not None and "<p>Ash clouds" in ash[0].content
    assert comets[0].title == "Comets" and comets[0].content_type == "text/markdown"
    assert "damaged.txt.gz" in caplog.text  # skipped, logged, and the rest still searchable


async def test_local_files_are_decoded_as_web_pages_are(tmp_path: Path) -> None:
    """One decoder for pages and files (fetch.decode_text): a <meta charset> alone decides, a BOM wins and goes."""
    (tmp_path / "menu.html").write_bytes(
        '<html><head><meta charset="koi8-r"><title>Меню</title></head><body><p>Борщ со сметаной.</p></body></html>'
        .encode("koi8-r")
    )
    (tmp_path / "wide.txt").write_bytes("Hummingbirds hover, “wings” a blur.".encode("utf-16"))  # BOM, then UTF-16
    (tmp_path / "marked.md").write_bytes("\ufeff# Kestrels\n\nKestrels hover over fields.".encode("utf-8"))
    source = LocalFiles(tmp_path)

    menu = await source.search("борщ", 5, Fetcher())
    wide = await source.search("hummingbirds", 5, Fetcher())
    marked = await source.search("kestrels", 5, Fetcher())

    assert menu[0].title == "Меню" and menu[0].content is not None and "Борщ со сметаной." in menu[0].content
    assert wide[0].content == "Hummingbirds hover, “wings” a blur."
    assert marked[0].title == "Kestrels" and marked[0].content is not None and not marked[0].content.startswith("\ufeff")


async def test_local_files_index_follows_file_changes(tmp_path: Path) -> None:
    first = tmp_path / "a.txt"
    first.write_text("Penguins huddle for warmth.", "utf-8")
    (tmp_path / "b.txt").write_text("Camels store fat in their humps.", "utf-8")
    source = LocalFiles(tmp_path)
    assert [hit.url for hit in await source.search("penguins", 5, Fetcher())] == [first.as_uri()]
    assert source.index() is source.index()  # unchanged folder: the cached index

    first.write_text("Albatrosses glide for hours without flapping.", "utf-8")
    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 5_000_000_000))
    (tmp_path / "c.txt").write_text("More penguins in Antarctica.", "utf-8")

    penguins = await source.search("penguins", 5, Fetcher())
    albatross = await source.search("albatrosses", 5, Fetcher())
    assert [hit.url for hit in penguins] == [(tmp_path / "c.txt").as_uri()]
    assert [hit.url for hit in albatross] == [first.as_uri()]

    first.unlink()
    assert await source.search("albatrosses", 5, Fetcher()) == []


async def test_local_files_folder_problems_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        await LocalFiles(tmp_path / "missing").search("x", 5, Fetcher())
    with pytest.raises(SourceError, match=r"no \.html, \.htm, \.md or \.txt files"):
        await LocalFiles(tmp_path).search("x", 5, Fetcher())
    monkeypatch.delenv("TORQ_NB_LOCAL_PATH", raising=False)
    with pytest.raises(ValueError, match="TORQ_NB_LOCAL_PATH"):
        LocalFiles()


async def test_local_files_fetch_reads_only_its_own_folder(tmp_path: Path) -> None:
    inside = tmp_path / "docs"
    inside.mkdir()
    (inside / "note.txt").write_text("Owls hunt at night.", "utf-8")
    (tmp_path / "secret.txt").write_text("not yours", "utf-8")
    source = LocalFiles(inside)
    [hit] = await source.search("owls", 5, Fetcher())

    page = await source.fetch(replace(hit, content=None), Fetcher())
    outside = await source.fetch(Hit(title="x", url=(inside / ".." / "secret.txt").as_uri()), Fetcher())

    assert page.status == "ok" and page.text == "Owls hunt at night." and page.content_type == "text/plain"
    assert outside.status == "error" and outside.text is None


def _folder_with_escapes(root: Path) -> Path:
    """docs/ with one real note, and links (and a FIFO) that lead out of it or to no regular file."""
    docs, sibling = root / "docs", root / "sibling"
    docs.mkdir()
    sibling.mkdir()
    (docs / "note.txt").write_text("Owls hunt at night; the passwd file lists the accounts of root.", "utf-8")
    (sibling / "secret.md").write_text("# Sibling secret\n\nOwls passwd root: the sibling folder's secret.", "utf-8")
    (docs / "passwd.txt").symlink_to("/etc/passwd")
    (docs / "environ.txt").symlink_to("/proc/self/environ")
    (docs / "sibling-secret.md").symlink_to(sibling / "secret.md")
    (docs / "relative-escape.md").symlink_to(Path("..") / "sibling" / "secret.md")
    (docs / "sibling-folder").symlink_to(sibling, target_is_directory=True)
    (docs / "same-note.txt").symlink_to("note.txt")  # inside the folder: the note itself, not a second copy
    os.mkfifo(docs / "pipe.txt")  # reading it would block forever
    (docs / "loop.txt").symlink_to("loop.txt")
    (docs / "ping.md").symlink_to("pong.md")
    (docs / "pong.md").symlink_to("ping.md")
    return docs


def _assert_only_inside(hits: list[Hit], docs: Path) -> None:
    for hit in hits:
        path = Path(hit.url.removeprefix("file://"))
        assert path.resolve().is_relative_to(docs) and path.is_file() and not path.is_symlink(), hit.url
        assert "root:x:0" not in (hit.content or "") and "folder's secret" not in (hit.content or "")


async def test_local_files_never_read_outside_their_folder(tmp_path: Path) -> None:
    docs = _folder_with_escapes(tmp_path)
    source = LocalFiles(docs)

    hits = await source.search("owls passwd root secret sibling environ", 10, Fetcher())

    _assert_only_inside(hits, docs)
    assert [hit.url for hit in hits] == [(docs / "note.txt").as_uri()]
    for escape in ("passwd.txt", "environ.txt", "sibling-secret.md", "relative-escape.md", "pipe.txt",
                   "sibling-folder/secret.md", "loop.txt", "ping.md"):
        page = await source.fetch(Hit(title="x", url=(docs / escape).as_uri()), Fetcher())
        assert page.status == "error" and page.text is None, escape
        assert "root:x:0" not in page.error and "folder's secret" not in page.error


async def test_a_file_swapped_for_a_link_after_indexing_is_not_read(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    note = docs / "note.txt"
    note.write_text("Owls hunt at night; the passwd file lists accounts.", "utf-8")
    (docs / "other.txt").write_text("Owls nest in barns.", "utf-8")
    source = LocalFiles(docs)
    [hit, _] = await source.search("owls passwd", 5, Fetcher())

    note.unlink()
    note.symlink_to("/etc/passwd")
    page = await source.fetch(replace(hit, content=None), Fetcher())
    hits = await source.search("owls passwd root", 5, Fetcher())

    assert page.status == "error" and "outside" in page.error and page.text is None
    assert [found.url for found in hits] == [(docs / "other.txt").as_uri()]


@pytest.mark.skipif(os.name != "posix", reason="the link-proof walk needs O_NOFOLLOW and dir_fd (POSIX)")
def test_a_link_swapped_in_between_the_check_and_the_open_is_refused(tmp_path: Path) -> None:
    """The resolved path was inside when it was checked; by the open a file and a folder on it are links."""
    from torq_nb.research.sources.local import open_inside

    class CheckedBeforeTheSwap(type(tmp_path)):  # type: ignore[misc]
        def resolve(self, strict: bool = False) -> Path:
            return self

    docs, sibling = tmp_path / "docs", tmp_path / "sibling"
    docs.mkdir()
    sibling.mkdir()
    (sibling / "secret.txt").write_text("the sibling folder's secret", "utf-8")
    (docs / "note.txt").symlink_to("/etc/passwd")
    (docs / "sub").symlink_to(sibling, target_is_directory=True)
    for swapped in (docs / "note.txt", docs / "sub" / "secret.txt"):
        with pytest.raises((OSError, ValueError), match="changed since it was checked"):
            open_inside(docs, CheckedBeforeTheSwap(swapped))


async def test_local_files_with_names_that_are_not_utf8(tmp_path: Path) -> None:
    """A name in a legacy encoding (Latin-1 bytes) is shown with U+FFFD; its URL keeps the bytes and reads back."""
    folder = os.fsencode(tmp_path)
    with open(os.path.join(folder, b"caf\xe9 notes.md"), "wb") as stream:  # no heading: the name is the title
        stream.write(b"Espresso beans are roasted before grinding.")
    os.mkdir(os.path.join(folder, b"r\xe9sum\xe9s"))
    with open(os.path.join(folder, b"r\xe9sum\xe9s", b"\xff.txt"), "wb") as stream:
        stream.write(b"Espresso machines need descaling.")
    source = LocalFiles(os.fsdecode(folder))

    hits = await source.search("espresso", 5, Fetcher())

    assert {"/".join(hit.url.rsplit("/", 2)[-2:]) for hit in hits} == {
        f"{tmp_path.name}/caf%E9%20notes.md", "r%E9sum%E9s/%FF.txt"}
    by_name = {hit.url.rsplit("/", 1)[-1]: hit for hit in hits}
    assert by_name["caf%E9%20notes.md"].title == "caf\ufffd notes"
    for hit in hits:
        for text in (hit.title, hit.snippet, hit.content or ""):
            text.encode("utf-8")  # no lone surrogates: every field can be written anywhere
        page = await source.fetch(replace(hit, content=None), Fetcher())
        assert page.status == "ok" and page.text == hit.content


@pytest.mark.skipif(not corpus_available(), reason="the shared corpus is not present")
async def test_local_files_find_corpus_pages_by_their_own_words() -> None:
    """Each page's opening words, as a query, bring that page into the top three."""
    source = LocalFiles(CORPUS / "html")
    pages = load_pages(CORPUS)[::18]
    found = 0
    for page in pages:
        query = " ".join(page.text.split()[:12])
        hits = await source.search(query, 3, Fetcher())
        found += any(hit.url.endswith(f"/{page.id}.html.gz") for hit in hits)
        assert_plain(hits)
    assert found >= len(pages) - 1


# shared helpers ------------------------------------------------------------------------------------------------


def test_snippet_markup_becomes_plain_text() -> None:
    fragment = (
        'The <span class="searchmatch">Moon</span> &quot;pulls&quot; tides &amp; <b>oceans</b><script>x()</script> too'
    )
    assert html_to_text(fragment) == 'The Moon "pulls" tides & oceans too'
    assert html_to_text("") == "" and html_to_text("   ") == ""


@given(st.text())
def test_any_escaped_text_comes_back_as_itself(text: str) -> None:
    assert html_to_text(html.escape(text)) == " ".join(xml_safe(text).split())
    assert html_to_text(text).strip() == html_to_text(text)  # any input at all: text, never an exception


async def test_control_characters_in_results_do_not_break_a_search(fetcher: Fetcher) -> None:
    article = replace(
        BY_ID["sourdough-starter"], title="Sourdough\x00 starter\x1b guide", text="Feed\x07 the starter daily."
    )
    async with SearchServer([article]) as odd:
        ddg = await DuckDuckGo(odd.duckduckgo_endpoint).search("starter", 3, fetcher)
        wiki = await Wikipedia(odd.wikipedia_endpoint).search("starter", 3, fetcher)
    assert ddg[0].title == wiki[0].title == "Sourdough starter guide"


def test_hits_are_deduplicated_by_canonical_url() -> None:
    hits = [
        Hit(title="a", url="https://Example.org/page/#top"),
        Hit(title="b", url="https://example.org:443/page"),
        Hit(title="c", url="https://example.org/other"),
        Hit(title="d", url="https://example.org/third"),
    ]
    assert [hit.title for hit in unique_hits(hits, 2)] == ["a", "c"]
    assert canonical_url("HTTP://Example.org:80/x/?q=1#f") == "http://example.org/x?q=1"


# choosing a source ---------------------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for variable in (
        "TORQ_NB_SOURCE",
        "TORQ_NB_WIKIPEDIA_URL",
        "TORQ_NB_SEARXNG_URL",
        "TORQ_NB_DUCKDUCKGO_URL",
        "TORQ_NB_LOCAL_PATH",
    ):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_resolve_by_object_and_name(clean_env: pytest.MonkeyPatch) -> None:
    mine = SearXNG("http://127.0.0.1:8888")
    assert resolve_source(mine) is mine
    with pytest.raises(ValueError, match="only when a source is chosen by name"):
        resolve_source(mine, categories="news")

    default = resolve_source()
    assert isinstance(default, Wikipedia) and default.endpoint == "https://en.wikipedia.org/w/api.php"
    named = resolve_source("SearXNG", base_url="http://127.0.0.1:8888")
    assert isinstance(named, SearXNG) and named.base_url == "http://127.0.0.1:8888"
    assert isinstance(resolve_source("local", path=FIXTURE_PAGES), LocalFiles)
    assert {"wikipedia", "searxng", "duckduckgo", "local"} <= set(available_sources())


def test_wrong_options_say_what_the_source_takes(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError, match=r"Source 'wikipedia' takes \(endpoint.*unexpected keyword argument 'base_url'"):
        resolve_source("wikipedia", base_url="http://127.0.0.1:8888")


def test_a_misspelt_option_names_the_source_its_options_and_the_closest(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError, match=r"Source 'searxng' takes \(base_url, categories, language\); base_url= is "
                                        r"where it searches: .*'base_ur'\. Did you mean base_url=\?"):
        resolve_source("searxng", base_ur="http://127.0.0.1:8888")
    with pytest.raises(TypeError, match=r"Source 'local' takes \(path\).*'folder'\.$"):
        resolve_source("local", folder=FIXTURE_PAGES)


def test_unknown_source_lists_the_available_ones(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"Unknown source 'bing'\. Available sources: .*duckduckgo.*wikipedia"):
        resolve_source("bing")
    with pytest.raises(ValueError, match=r"Unknown source 'wikipdia'\. Did you mean 'wikipedia'\?"):
        resolve_source("wikipdia")


def test_every_source_is_registered_once_as_an_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    sources = importlib.import_module("torq_nb.research.sources")  # torq_nb.research is also a function

    for name in ("wikipedia", "searxng", "duckduckgo", "local"):
        cls = sources.source_class(name)
        assert cls.name == name and cls.location is not None and cls.location.option in cls.options()
    monkeypatch.setattr(sources, "entry_points", lambda group: [])  # as if torq_nb were not installed
    assert available_sources() == []
    with pytest.raises(ValueError, match=r"no sources are installed.*pip install -e \."):
        resolve_source("wikipedia")


def test_the_location_comes_from_its_variable_only_when_not_given(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TORQ_NB_SEARXNG_URL", "http://127.0.0.1:1111")
    assert resolve_source("searxng").base_url == "http://127.0.0.1:1111"
    assert resolve_source("searxng", base_url="http://127.0.0.1:2222").base_url == "http://127.0.0.1:2222"
    clean_env.setenv("TORQ_NB_WIKIPEDIA_URL", "http://127.0.0.1:3333/w/api.php")
    with pytest.raises(ValueError, match="not both"):  # lang= and an endpoint from the environment
        resolve_source("wikipedia", lang="de")


async def test_environment_points_a_notebook_elsewhere(
    clean_env: pytest.MonkeyPatch, server: SearchServer, fetcher: Fetcher
) -> None:
    clean_env.setenv("TORQ_NB_SOURCE", "duckduckgo")
    clean_env.setenv("TORQ_NB_DUCKDUCKGO_URL", server.duckduckgo_endpoint)
    clean_env.setenv("TORQ_NB_WIKIPEDIA_URL", server.wikipedia_endpoint)
    clean_env.setenv("TORQ_NB_SEARXNG_URL", server.searxng_url)
    clean_env.setenv("TORQ_NB_LOCAL_PATH", str(FIXTURE_PAGES))

    chosen = resolve_source()
    hits = await chosen.search("sourdough starter", 1, fetcher)

    assert isinstance(chosen, DuckDuckGo) and hits[0].url == server.page_url(BY_ID["sourdough-starter"])
    assert (await resolve_source("wikipedia").search("sourdough", 1, fetcher))[0].url.startswith(server.url)
    assert (await resolve_source("searxng").search("sourdough", 1, fetcher))[0].url.startswith(server.url)
    assert (await resolve_source("local").search("sourdough", 1, fetcher))[0].url.startswith("file://")


PLUGIN = """
from torq_nb.research.models import Hit
from torq_nb.research.sources import Location, Source

class EchoSource(Source):
    \"\"\"Echoes the query: `times` hits titled `prefix`: query, upper-cased with `shout`.\"\"\"

    name = "echo"
    location = Location("prefix", "TORQ_NB_ECHO_PREFIX", "what each title starts with", metavar="TEXT")

    def __init__(self, prefix: str = "echo", *, times: int = 1, shout: bool = False) -> None:
        self.prefix, self.times, self.shout = prefix, times, shout

    async def search(self, query, limit, fetcher):
        title = f"{self.prefix}: {query}"
        return [Hit(title=title.upper() if self.shout else title, url=f"https://example.org/{n}", source=self.name,
                    snippet=f"echo {n}", content=f"The echo of {query}, number {n}.") for n in range(self.times)]

NotASource = object
"""


def write_plugin(folder: Path, module: str, entries: dict[str, str]) -> Path:
    """A real installed distribution (a .dist-info with entry_points.txt) in `folder`, as pip would leave it in
    site-packages: on sys.path (or PYTHONPATH), importlib.metadata finds its entry points."""
    (folder / f"{module}.py").write_text(textwrap.dedent(PLUGIN), "utf-8")
    info = folder / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n", "utf-8")
    lines = "".join(f"{name} = {module}:{target}\n" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[torq_nb.sources]\n{lines}", "utf-8")
    return folder


def install_plugin(folder: Path, monkeypatch: pytest.MonkeyPatch, module: str, entries: dict[str, str]) -> None:
    monkeypatch.syspath_prepend(str(write_plugin(folder, module, entries)))


async def test_plugins_are_found_through_entry_points(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path, clean_env, "torq_echo_plugin", {"echo": "EchoSource", "broken": "NotASource"})

    assert {"echo", "broken", "wikipedia"} <= set(available_sources())
    echo = resolve_source("echo", prefix="heard")
    assert isinstance(echo, Source)
    assert [hit.title for hit in await echo.search("bees", 1, Fetcher())] == ["heard: bees"]
    clean_env.setenv("TORQ_NB_SOURCE", "echo")
    assert type(resolve_source()).__name__ == "EchoSource"
    clean_env.setenv("TORQ_NB_ECHO_PREFIX", "from the environment")  # its declared variable, read for it
    assert resolve_source().prefix == "from the environment"  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=r"Source 'echo' takes \(prefix, times, shout\).*Did you mean times=\?"):
        resolve_source(tims=2)
    with pytest.raises(TypeError, match=r"'broken'.*not a subclass"):
        resolve_source("broken")
