"""The run store: re-runs read from a real SQLite file, revalidate with conditional requests, survive damage."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import multiprocessing
import pickle
import random
import re
import sqlite3
import time
import warnings
from pathlib import Path

import polars as pl
import pytest
from aiohttp import web
from fake_search import SearchServer, load_pages, serve_in_thread

import torq_nb
from torq_nb.research.models import Hit
from torq_nb.research.results import SCHEMA, load_run
from torq_nb.research.sources import DuckDuckGo, LocalFiles, SearXNG, Source, SourceError, Wikipedia
from torq_nb.research.store import (
    RunStore,
    StoredPage,
    StoreError,
    StoreWarning,
    default_store_path,
    runs,
    source_identity,
)

PAGES = load_pages()
#: Columns that describe this fetch rather than the page: they may differ between a run and its re-run.
FETCH_COLUMNS = ("cached", "fetched_at", "elapsed_ms")


class ListedHits(Source):
    """Hits given up front (a plug-in's shape): aims a run at the validating server's pages."""

    name = "listed"

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls

    async def search(self, query, limit, fetcher):
        return [Hit(title=f"hit {i}", url=url, source=self.name) for i, url in enumerate(self.urls[:limit])]


class ValidatingServer:
    """Pages that carry validators, as real servers send them: /etag/<n> an ETag, /dated/<n> a Last-Modified.
    A matching If-None-Match or If-Modified-Since gets 304. ``version`` changes every body (and its ETag).
    /slow/<n> is a /dated/ page that answers only once ``hold`` is set."""

    LAST_MODIFIED = "Tue, 01 Dec 2026 10:00:00 GMT"

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.version = 1
        self.url = ""

    def body(self, n: int) -> str:
        page = PAGES[n % len(PAGES)]
        if self.version == 1:
            return page.html
        word = next(w for w in page.text.split() if w.isalpha() and len(w) >= 7)
        return re.sub(rf"\b{word}\b", "Revisededition", page.html)  # a word of the article itself changes

    async def _page(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.headers)))
        kind, n = request.match_info["kind"], int(request.match_info["n"])
        if kind == "slow":  # answers once ``hold`` is set
            await self.hold.wait()
        body = self.body(n)
        if kind == "etag":
            etag = f'"{hashlib.sha256(body.encode()).hexdigest()[:16]}"'
            if request.headers.get("If-None-Match") == etag:
                return web.Response(status=304, headers={"ETag": etag})
            return web.Response(text=body, content_type="text/html", headers={"ETag": etag})
        if request.headers.get("If-Modified-Since") == self.LAST_MODIFIED and self.version == 1:
            return web.Response(status=304)
        return web.Response(text=body, content_type="text/html", headers={"Last-Modified": self.LAST_MODIFIED})

    def urls(self) -> list[str]:
        return [f"{self.url}/etag/0", f"{self.url}/etag/1", f"{self.url}/dated/2"]

    async def __aenter__(self) -> ValidatingServer:
        self.hold = asyncio.Event()
        app = web.Application()
        app.router.add_get("/{kind}/{n}", self._page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._runner.cleanup()


def same_rows(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    return a.drop(*FETCH_COLUMNS).equals(b.drop(*FETCH_COLUMNS))


async def test_second_run_is_read_from_the_store_without_a_request(tmp_path):
    store = tmp_path / "store.sqlite"
    async with SearchServer(PAGES) as server:
        source = SearXNG(server.searxng_url)
        first = await torq_nb.aresearch("solar power water", source=source, allow_private_networks=True,
                                        store=store, display=False)
        requests = len(server.requests)
        second = await torq_nb.aresearch("solar power water", source=source, allow_private_networks=True,
                                         store=store, display=False)
        assert len(server.requests) == requests  # neither the search nor any page was asked for again
    assert first.df.schema == pl.Schema(SCHEMA) == second.df.schema
    assert first.df.height > 0 and first.df["status"].to_list() == ["ok"] * first.df.height
    assert first.df["cached"].to_list() == [False] * first.df.height
    assert second.df["cached"].to_list() == [True] * second.df.height
    assert same_rows(first.df, second.df)
    # A row from the store describes the fetch that got the page: the same time and duration.
    assert second.df["fetched_at"].equals(first.df["fetched_at"])
    assert second.summary == first.summary and "[1]" in second.summary


async def test_a_wikipedia_re_run_reads_its_search_and_extracts_from_the_store(tmp_path):
    store = tmp_path / "store.sqlite"
    async with SearchServer(PAGES) as server:
        source = Wikipedia(server.wikipedia_endpoint, maxlag_wait=0)
        server.wiki_maxlag = 1  # the API's first answer is a lag error (HTTP 200): waited out, and never kept
        first = await torq_nb.aresearch("solar power water", source=source, store=store, display=False)
        requests = len(server.requests)
        second = await torq_nb.aresearch("solar power water", source=source, store=store, display=False)
        assert len(server.requests) == requests
    assert first.df.height > 0 and set(first.df["status"]) == {"ok"}
    assert set(second.df["cached"]) == {True} and same_rows(first.df, second.df)
    assert second.summary == first.summary


async def test_a_failed_search_is_not_kept(tmp_path):
    store = tmp_path / "store.sqlite"
    async with SearchServer(PAGES) as server:
        source = DuckDuckGo(server.duckduckgo_endpoint)
        server.duckduckgo_mode = "anomaly"  # the bot check, answered as a 200 page
        with pytest.raises(SourceError):
            await torq_nb.aresearch("solar power water", source=source, depth="quick", store=store, display=False)
        server.duckduckgo_mode = "ok"
        results = await torq_nb.aresearch("solar power water", source=source, depth="quick", store=store,
                                          display=False)
    assert results.df.height > 0 and set(results.df["cached"]) == {False}


async def test_quick_depth_rows_are_cached_when_the_search_is(tmp_path):
    async with SearchServer(PAGES) as server:
        source = SearXNG(server.searxng_url)
        searched = []
        for expected in (False, True):
            results = await torq_nb.aresearch("solar power water", depth="quick", source=source,
                                              store=tmp_path / "s.sqlite", display=False)
            assert results.df.height > 0 and set(results.df["cached"]) == {expected}
            searched.append(len(server.requests_to("/search")))
        assert searched[0] >= 1 and searched[1] == searched[0]  # the re-run did not search


async def test_stale_pages_are_revalidated_and_a_304_serves_the_stored_body(tmp_path):
    store = tmp_path / "store.sqlite"
    async with ValidatingServer() as server:
        source = ListedHits(server.urls())
        first = await torq_nb.aresearch("anything", source=source, allow_private_networks=True, store=store,
                                        display=False)
        assert len(server.requests) == 3
        # max_age=0: every stored page is stale, so each is asked for again with its validators.
        second = await torq_nb.aresearch("anything", source=source, allow_private_networks=True, store=store,
                                         max_age=0, display=False)
        revalidations = server.requests[3:]
    assert first.df["status"].to_list() == ["ok"] * 3
    sent = {path: headers for path, headers in revalidations}
    assert sent["/etag/0"]["If-None-Match"].startswith('"') and "If-Modified-Since" not in sent["/etag/0"]
    assert sent["/dated/2"]["If-Modified-Since"] == ValidatingServer.LAST_MODIFIED
    assert second.df["cached"].to_list() == [True] * 3  # every answer was a 304: the bodies came from the store
    assert same_rows(first.df, second.df) and second.summary == first.summary
    assert (second.df["fetched_at"] > first.df["fetched_at"]).all()  # revalidated now


async def test_a_changed_page_is_fetched_anew_and_kept(tmp_path):
    store = tmp_path / "store.sqlite"
    async with ValidatingServer() as server:
        source = ListedHits(server.urls())
        await torq_nb.aresearch("anything", source=source, allow_private_networks=True, store=store, display=False)
        server.version = 2  # new bodies: the ETags no longer match, Last-Modified is answered in full
        changed = await torq_nb.aresearch("anything", source=source, allow_private_networks=True, store=store,
                                          max_age=0, display=False)
        again = await torq_nb.aresearch("anything", source=source, allow_private_networks=True, store=store,
                                        display=False)
        assert len(server.requests) == 6  # the last run asked for nothing: the new bodies were fresh in the store
    assert changed.df["cached"].to_list() == [False] * 3
    assert all("Revisededition" in text for text in changed.df["content"].to_list())
    assert again.df["cached"].to_list() == [True] * 3 and same_rows(changed.df, again.df)


async def test_a_run_that_stopped_resumes_fetching_only_what_it_lacks(tmp_path):
    store = tmp_path / "store.sqlite"
    async with ValidatingServer() as server:
        source = ListedHits([*server.urls(), f"{server.url}/slow/3", f"{server.url}/slow/4"])
        run = asyncio.ensure_future(torq_nb.aresearch("anything", source=source, allow_private_networks=True,
                                                      store=store, display=False))
        for _ in range(600):  # until the three quick pages are kept (the slow ones are held)
            await asyncio.sleep(0.05)
            if _count(store, "pages") == 3:
                break
        run.cancel()  # the kernel stopped, the laptop closed
        with pytest.raises(asyncio.CancelledError):
            await run
        server.hold.set()
        before = len(server.requests)
        resumed = await torq_nb.aresearch("anything", source=source, allow_private_networks=True, store=store,
                                          display=False)
        asked = sorted(path for path, _ in server.requests[before:])
    assert asked == ["/slow/3", "/slow/4"]
    assert resumed.df["cached"].to_list() == [True, True, True, False, False]
    assert set(resumed.df["status"]) == {"ok"}


def _count(path: Path, table: str) -> int:
    """Rows in ``table``, 0 while the store is not made yet."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


async def test_refresh_fetches_everything_again_without_validators(tmp_path):
    store = tmp_path / "store.sqlite"
    async with ValidatingServer() as server:
        source = ListedHits(server.urls())
        await torq_nb.aresearch("anything", source=source, allow_private_networks=True, store=store, display=False)
        refreshed = await torq_nb.aresearch("anything", source=source, allow_private_networks=True, store=store,
                                            refresh=True, display=False)
        again = server.requests[3:]
    assert len(again) == 3
    assert not any({"If-None-Match", "If-Modified-Since"} & headers.keys() for _, headers in again)
    assert refreshed.df["cached"].to_list() == [False] * 3


class CountingSynthesizer:
    """A synthesizer (an LLM's shape) that says how often it was asked."""

    def __init__(self, model: str = "m1") -> None:
        self.model = model
        self.calls = 0

    async def synthesize(self, topic, sources):
        self.calls += 1
        return f"Summary {self.calls} of {len(sources)} sources by {self.model} [1]."


async def test_the_summary_of_the_same_texts_is_not_written_again(tmp_path):
    store = tmp_path / "store.sqlite"
    writer = CountingSynthesizer()
    async with ValidatingServer() as server:
        options = {"source": ListedHits(server.urls()), "allow_private_networks": True, "store": store,
                   "display": False}
        first = await torq_nb.aresearch("anything", synthesizer=writer, **options)
        second = await torq_nb.aresearch("anything", synthesizer=writer, **options)
        assert writer.calls == 1 and second.summary == first.summary == "Summary 1 of 3 sources by m1 [1]."
        other = await torq_nb.aresearch("anything", synthesizer=CountingSynthesizer("m2"), **options)
        assert other.summary == "Summary 1 of 3 sources by m2 [1]."  # another model's summary is its own
        await torq_nb.aresearch("anything", synthesizer=writer, refresh=True, **options)
        assert writer.calls == 2


async def test_a_page_kept_from_a_private_address_is_not_served_to_a_run_that_refuses_them(tmp_path):
    store = tmp_path / "store.sqlite"
    async with SearchServer(PAGES) as server:
        source = SearXNG(server.searxng_url)
        await torq_nb.aresearch("solar power water", source=source, allow_private_networks=True, store=store,
                                display=False)
        refused = await torq_nb.aresearch("solar power water", source=source, allow_private_networks=False,
                                          store=store, display=False)
    assert refused.df.height > 0 and set(refused.df["status"]) == {"error"}
    assert all("allow_private_networks" in error for error in refused.df["error"])


def test_research_from_a_background_job_thread_uses_the_store(tmp_path):
    """research() runs on a ResearchJob's own thread and event loop: the store works from there too."""
    store = RunStore(tmp_path / "store.sqlite")
    with serve_in_thread(SearchServer(PAGES)) as server:
        options = {"source": "searxng", "base_url": server.searxng_url, "allow_private_networks": True,
                   "store": store, "display": False}
        first = torq_nb.research("honeybee colony losses", **options)
        requests = len(server.requests)
        second = torq_nb.research("honeybee colony losses", **options)
        assert len(server.requests) == requests
    assert set(second.df["cached"]) == {True} and same_rows(first.df, second.df)
    assert runs(store)["run_id"].to_list() == [second.operation_id, first.operation_id]


async def test_runs_lists_past_runs_and_load_run_gives_them_back(tmp_path):
    store = tmp_path / "store.sqlite"
    async with SearchServer(PAGES) as server:
        results = await torq_nb.aresearch("solar power water", source=SearXNG(server.searxng_url),
                                          allow_private_networks=True, store=store, display=False)
    listed = runs(store)
    assert listed.columns == ["topic", "depth", "source", "when", "pages", "duration", "run_id"]
    row = listed.row(0, named=True)
    assert (row["topic"], row["depth"], row["source"], row["run_id"]) == (
        "solar power water", "standard", "searxng", results.operation_id)
    assert row["pages"] == results.df.height and row["duration"] == pytest.approx(results.progress.duration)
    back = load_run(results.operation_id, store=store)
    assert back.df.equals(results.df) and back.summary == results.summary
    assert (back.topic, back.depth, back.source) == (results.topic, results.depth, results.source)
    assert back.progress == results.progress and back.metadata["pages"] == results.metadata["pages"]
    # The same function reads a run saved as JSON, and an unknown id says where it looked.
    saved = load_run(results.export(tmp_path / "run.json"))
    assert saved.topic == results.topic and saved.df.height == results.df.height
    with pytest.raises(FileNotFoundError, match=r"torq_nb\.runs\(\) lists"):
        load_run("0123abcd", store=store)


def test_the_command_line_exports_a_stored_run_by_its_id(tmp_path, monkeypatch):
    from torq_nb.cli import main

    monkeypatch.setenv("TORQ_NB_STORE", str(tmp_path / "store.sqlite"))
    with serve_in_thread(SearchServer(PAGES)) as server:
        results = torq_nb.research("solar power water", source="searxng", base_url=server.searxng_url,
                                   allow_private_networks=True, display=False)
    assert main(["export", results.operation_id, str(tmp_path / "again.md")]) == 0
    assert "# Research: solar power water" in (tmp_path / "again.md").read_text(encoding="utf-8")


async def test_store_none_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORQ_NB_STORE", str(tmp_path / "default.sqlite"))
    async with SearchServer(PAGES) as server:
        source = SearXNG(server.searxng_url)
        for _ in range(2):
            results = await torq_nb.aresearch("solar power water", source=source, allow_private_networks=True,
                                              store=None, display=False)
            assert set(results.df["cached"]) == {False}
    assert not (tmp_path / "default.sqlite").exists()


def test_a_new_store_is_readable_by_its_user_alone(tmp_path):
    store = RunStore(tmp_path / "store.sqlite")
    store.save_search("s", "q", 1, [])
    for name in ("store.sqlite", "store.sqlite-wal", "store.sqlite-shm"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name


def test_default_store_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TORQ_NB_STORE", str(tmp_path / "mine.sqlite"))
    assert default_store_path() == tmp_path / "mine.sqlite"
    monkeypatch.setenv("TORQ_NB_STORE", "off")
    assert default_store_path() is None
    monkeypatch.delenv("TORQ_NB_STORE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_store_path() == tmp_path / "cache" / "torq_nb" / "store.sqlite"


def _write_pages(path: str, writer: int, count: int, start: multiprocessing.synchronize.Event) -> None:
    store = RunStore(path)
    start.wait()
    for n in range(count):
        store.save_page(StoredPage(f"https://example.org/{writer}/{n}", None, 200, "text/html", "text " * 200,
                                   None, None, time.time(), 1.0, (), True))
        store.save_search("s", f"query {writer} {n}", 10, [Hit("t", f"https://example.org/{writer}/{n}")])


def test_two_processes_write_one_store_at_once(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Event()
    writers = [spawn.Process(target=_write_pages, args=(path, writer, 100, start)) for writer in range(2)]
    for process in writers:
        process.start()
    start.set()
    for process in writers:
        process.join(120)
    assert [process.exitcode for process in writers] == [0, 0]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM pages").fetchone()[0] == 200
        assert conn.execute("SELECT count(*) FROM searches").fetchone()[0] == 200
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_corrupt_store_is_a_clear_error_and_never_a_lost_run(tmp_path):
    path = tmp_path / "store.sqlite"
    path.write_bytes(b"this is not a database, just garbage bytes " * 100)
    with pytest.raises(StoreError, match=r"(?s)store\.sqlite is damaged.*Delete the file.*TORQ_NB_STORE"):
        runs(path)
    async with SearchServer(PAGES) as server:
        for _ in range(2):  # every run says so, not only the first
            with pytest.warns(StoreWarning, match=r"(?s)store\.sqlite is damaged.*results are returned") as said:
                results = await torq_nb.aresearch("solar power water", source=SearXNG(server.searxng_url),
                                                  allow_private_networks=True, store=path, display=False)
            assert len(said) == 1
            assert results.df.height > 0 and set(results.df["status"]) == {"ok"} and results.summary


async def test_a_locked_store_is_a_clear_error_and_never_a_lost_run(tmp_path):
    path = tmp_path / "store.sqlite"
    store = RunStore(path, timeout=0.2)
    store.save_search("s", "q", 1, [])
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a long write
    try:
        with pytest.raises(StoreError, match=r"(?s)store\.sqlite is locked.*TORQ_NB_STORE"):
            store.save_search("s", "q", 2, [])
        assert runs(store).height == 0  # readers do not wait for a writer (WAL)
        async with SearchServer(PAGES) as server:
            with pytest.warns(StoreWarning, match="is locked"):
                results = await torq_nb.aresearch("solar power water", source=SearXNG(server.searxng_url),
                                                  allow_private_networks=True, store=store, display=False)
        assert results.df.height > 0 and set(results.df["status"]) == {"ok"}
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()


def _page(n: int) -> StoredPage:
    text = f"page {n} " + base64.b64encode(random.Random(n).randbytes(6000)).decode()  # does not compress away
    return StoredPage(f"https://example.org/{n}", None, 200, "text/html", text, None, None, time.time(), 1.0, (), True)


def test_the_size_limit_prunes_the_oldest_first(tmp_path):
    store = RunStore(tmp_path / "store.sqlite", max_bytes=60_000)
    for n in range(40):
        store.save_page(_page(n))
        store.prune()
        assert store.size() <= 60_000
    assert store.page("https://example.org/39") is not None
    assert store.page("https://example.org/0") is None
    kept = [n for n in range(40) if store.page(f"https://example.org/{n}") is not None]
    assert kept == list(range(kept[0], 40))  # a contiguous run of the newest
    assert (tmp_path / "store.sqlite").stat().st_size < 400_000  # freed pages go back to the file system


def test_the_age_limit_prunes_what_is_older(tmp_path):
    store = RunStore(tmp_path / "store.sqlite")  # retention: 30 days
    for n in range(4):
        store.save_page(_page(n))
    with sqlite3.connect(tmp_path / "store.sqlite") as conn:
        conn.execute("UPDATE pages SET stored_at = stored_at - 31 * 86400 WHERE url IN (?, ?)",
                     ("https://example.org/0", "https://example.org/1"))
    assert store.prune() == 2
    assert [store.page(f"https://example.org/{n}") is not None for n in range(4)] == [False, False, True, True]


def test_a_store_travels_to_another_process_by_its_path(tmp_path):
    store = RunStore(tmp_path / "store.sqlite", max_bytes=1_000_000, timeout=3)
    store.save_search("s", "q", 1, [Hit("t", "https://example.org/")])
    copy = pickle.loads(pickle.dumps(store))
    assert (copy.path, copy.max_bytes, copy.timeout) == (store.path, 1_000_000, 3)
    assert copy.search("s", "q", 1)[0] == [Hit("t", "https://example.org/")]


def test_sources_with_other_settings_do_not_share_search_answers():
    assert source_identity(ListedHits(["https://a.example/"])) != source_identity(ListedHits(["https://b.example/"]))
    assert source_identity(SearXNG("http://127.0.0.1:1")) != source_identity(SearXNG("http://127.0.0.1:2"))
    assert source_identity(SearXNG("http://127.0.0.1:1")) == source_identity(SearXNG("http://127.0.0.1:1"))
    assert source_identity(LocalFiles(".")) is None  # files on this disk are searched afresh


def test_bad_store_arguments_are_refused_at_the_call():
    with pytest.raises(TypeError, match="store must be a path, a RunStore or None"):
        torq_nb.research("x", source="local", path=".", store=42)
    with pytest.raises(ValueError, match="max_age"):
        torq_nb.research("x", source="local", path=".", max_age=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="refresh"):
            torq_nb.research("x", source="local", path=".", refresh="yes")


def test_a_run_in_the_default_store_lands_in_the_test_sessions_folder(tmp_path):
    """The suite never writes the user's own store: TORQ_NB_STORE points at a temporary folder."""
    path = default_store_path()
    assert path is not None and Path.home() / ".cache" not in path.parents
