"""A whole research run against loopback servers: every hit a row, faults as rows, cancellation, entry points."""

from __future__ import annotations

import asyncio
import html
import importlib
import inspect
import pydoc
import re
import warnings

import cmarkgfm
import polars as pl
import pytest
from fake_search import SearchServer, load_pages
from web_faults import FaultServer

import torq_nb
from torq_nb.export.manager import to_html, to_markdown
from torq_nb.research.fetch import FetchPolicy
from torq_nb.research.models import Hit
from torq_nb.research.pipeline import ResearchCancelled
from torq_nb.research.results import SCHEMA
from torq_nb.research.sources import SearXNG, Source, SourceError
from torq_nb.research.synthesize import QUICK_DEPTH

FAST = FetchPolicy(allow_private_networks=True, retries=1, backoff=0.01, total_timeout=2.0, read_timeout=1.0,
                   connect_timeout=1.0)


class ListedHits(Source):
    """A source whose hits are given up front: lets a test aim a run at any URLs (a plug-in's shape)."""

    name = "listed"

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls

    async def search(self, query, limit, fetcher):
        return [Hit(title=f"hit {i}", url=url, snippet="", source=self.name) for i, url in enumerate(self.urls[:limit])]


async def test_searxng_run_returns_every_hit_with_text_and_cited_summary():
    statuses: list[dict] = []
    async with SearchServer(load_pages()) as server:
        results = await torq_nb.aresearch(
            "solar power water", source=SearXNG(server.searxng_url), allow_private_networks=True,
            progress_callback=statuses.append, display=False,
        )
        searched = server.requests_to("/search")
    assert results.df.schema == pl.Schema(SCHEMA)
    assert results.df.height > 0 and results.df["rank"].to_list() == list(range(1, results.df.height + 1))
    ok = results.df.filter(pl.col("status") == "ok")
    assert ok.height == results.df.height
    assert all(count > 20 for count in ok["word_count"].to_list())
    assert searched and searched[0].query["q"] == "solar power water"
    # Every stage was reported, in order, with the per-page sub-steps of extracting.
    stages = [s["stage"] for s in statuses]
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == [
        "initializing", "searching", "extracting", "synthesizing", "complete"]
    assert any(s["stage"] == "extracting" and s["total"] == results.df.height for s in statuses)
    assert statuses[-1]["state"] == "complete" and statuses[-1]["percent"] == 100.0
    # The summary cites only rows that were read.
    import re
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", results.summary)}
    assert cited and cited <= set(ok["rank"].to_list())
    assert torq_nb.get_progress(results.operation_id).state == "complete"


async def test_faults_become_rows_and_never_crash_the_run():
    async with FaultServer() as faults:
        urls = [faults.url("/ok"), faults.url("/always?status=503"), faults.url("/image.png"),
                faults.url("/loop-a"), faults.url("/redirect?to=http://169.254.169.254/latest/meta-data/"),
                faults.url("/empty"), faults.url("/truncated"), "ftp://example.invalid/file"]
        results = await torq_nb.aresearch("anything", source=ListedHits(urls), policy=FAST, display=False)
    rows = {row["url"]: row for row in results.df.to_dicts()}
    assert len(rows) == len(urls)
    assert rows[urls[0]]["status"] == "ok"
    assert rows[urls[1]]["status"] == "error" and rows[urls[1]]["http_status"] == 503
    assert "content type" in rows[urls[2]]["error"]
    assert "redirect" in rows[urls[3]]["error"]
    assert "169.254.169.254" in rows[urls[4]]["error"]
    for url in urls[1:]:
        assert rows[url]["status"] == "error" and rows[url]["error"], url
    assert results.errors.height == len(urls) - 1
    assert results.progress.state == "complete"


async def test_failed_search_fails_the_run_naming_the_source():
    async with SearchServer(load_pages()) as server:
        server.searxng_json = False
        with pytest.raises(SourceError, match="(?i)searxng.*json"):
            await torq_nb.aresearch("solar power water", source=SearXNG(server.searxng_url), display=False)


async def test_private_pages_refused_by_default():
    async with SearchServer(load_pages()) as server:
        results = await torq_nb.aresearch("solar power water", source=SearXNG(server.searxng_url), display=False)
    assert results.df.height > 0
    assert set(results.df["status"]) == {"error"}
    assert all("allow_private_networks" in e for e in results.df["error"])


async def test_quick_depth_lists_snippets_without_fetching():
    async with SearchServer(load_pages()) as server:
        results = await torq_nb.aresearch("solar power water", depth="quick", source=SearXNG(server.searxng_url),
                                          allow_private_networks=True, display=False)
        page_requests = [r for r in server.requests if r.path.startswith("/pages/")]
    assert 0 < results.df.height <= 5
    assert set(results.df["status"]) == {"snippet"}
    assert page_requests == []
    # Its summary says what quick depth is (not "No pages could be read"), in every view of the run.
    assert results.summary == QUICK_DEPTH
    for shown in (results._repr_html_(), cmarkgfm.github_flavored_markdown_to_html(to_markdown(results)), to_html(results)):
        text = html.unescape(re.sub(r"<[^>]+>", "", shown))
        assert "Quick depth reads no pages" in text and "No pages could be read" not in text


def test_unknown_depth_and_empty_topic_are_clear_errors():
    with pytest.raises(ValueError, match="quick, standard, deep"):
        torq_nb.research("x", depth="enormous", source="local", path=".")
    with pytest.raises(ValueError, match="non-empty"):
        torq_nb.research("  ", source="local", path=".")


async def test_cancelling_a_background_job_keeps_partial_results_and_closes_connections():
    async with FaultServer() as faults:
        urls = [faults.url("/ok")] + [faults.url(f"/sleep?s=30&n={i}") for i in range(6)]
        policy = FetchPolicy(allow_private_networks=True, total_timeout=60, read_timeout=60)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            job = torq_nb.start_research("slow", source=ListedHits(urls), policy=policy, display=False)
            while job.status.done < 1:
                await asyncio.sleep(0.05)
            assert job.cancel()
            results = await asyncio.wait_for(asyncio.wrap_future(job._future), timeout=3)
    assert job.tracker.state == "cancelled"
    assert results.progress.state == "cancelled"
    statuses = dict(zip(results.df["url"], results.df["status"]))
    assert statuses[urls[0]] == "ok"
    assert [statuses[u] for u in urls[1:]] == ["cancelled"] * 6
    assert job.cancel() is False


async def test_cancelling_the_awaiting_task_raises_with_partial_results():
    async with FaultServer() as faults:
        urls = [faults.url("/ok"), faults.url("/sleep?s=30")]
        policy = FetchPolicy(allow_private_networks=True, total_timeout=60, read_timeout=60)

        statuses: list[dict] = []

        async def research_keeping_partial_results():
            try:
                await torq_nb.aresearch("slow", source=ListedHits(urls), policy=policy, display=False,
                                        progress_callback=statuses.append)
            except ResearchCancelled as cancelled:
                return cancelled.results
            raise AssertionError("the run was not cancelled")

        task = asyncio.ensure_future(research_keeping_partial_results())
        while not any(status["stage"] == "extracting" and status["done"] >= 1 for status in statuses):
            await asyncio.sleep(0.05)
        task.cancel()
        results = await task
    assert results.df["status"].to_list() == ["ok", "cancelled"]
    # Its report says that it is partial, and why a page is missing.
    report = to_markdown(results)
    assert "**Status:** cancelled before it finished: these are its partial results, with no summary" in report
    assert "2 results: 1 fetched, 0 failed, 1 not read (the run stopped)" in report


def test_research_works_from_plain_sync_code_with_local_files(tmp_path):
    (tmp_path / "a.md").write_text("# Tidal power\n\nTidal power turns the energy of tides into electricity. "
                                   "Tidal barrages and tidal stream generators are the two main designs.\n")
    (tmp_path / "b.txt").write_text("Bread baking needs flour, water, salt and yeast. Ovens bake bread.\n")
    results = torq_nb.research("tidal energy", source="local", path=str(tmp_path), display=False)
    assert results.df["url"][0].endswith("a.md")
    assert results.df["status"][0] == "ok"
    assert "[1]" in results.summary
    assert results.to_dict()["results"][0]["title"] == "Tidal power"


async def test_the_seed_api_researches_reports_progress_and_exports(tmp_path):
    async with SearchServer(load_pages()) as server:
        provider = torq_nb.WebSearchProvider(SearXNG(server.searxng_url), allow_private_networks=True)
        percents: list[float] = []
        results = await provider.research_topic_with_progress(
            "solar power water", depth="standard", progress_callback=lambda status: percents.append(status["percent"]))
    assert percents[0] == 0.0 and percents[-1] == 100.0 and percents == sorted(percents)
    status = provider.get_research_progress(results.operation_id)
    assert status.state == "complete" and status["percent"] == 100.0
    assert provider.get_research_progress("no-such-run") is None
    markdown = await provider.export_research_results(results, format="markdown")
    assert results.df["title"][0].split()[0] in markdown
    written = await provider.export_research_results(results, format="csv", output_path=tmp_path / "r.csv")
    assert pl.read_csv(written).height == results.df.height
    with pytest.raises(ValueError, match="output_path"):
        await provider.export_research_results(results, format="pdf")


def test_every_public_name_resolves():
    for name in torq_nb.__all__:
        assert getattr(torq_nb, name) is not None, name
    provider = importlib.import_module("torq_nb.research.provider")  # the layers stay importable by full name
    from torq_nb.research.sources import Source  # what plug-ins import

    assert provider.WebSearchProvider is torq_nb.WebSearchProvider and Source is torq_nb.Source
    # Importing the layers does not rebind the headline names to the packages.
    assert inspect.isfunction(torq_nb.research) and inspect.isfunction(torq_nb.export)


@pytest.mark.parametrize("name", ["research", "aresearch", "start_research", "export"])
def test_headline_functions_show_their_signature_and_docstring(name):
    function = getattr(torq_nb, name)
    text = pydoc.render_doc(function, renderer=pydoc.plaintext)
    assert "package" not in text.splitlines()[0].lower()
    parameters = inspect.signature(function).parameters
    assert list(parameters)[:2] == (["results", "path"] if name == "export" else ["topic", "depth"])
    assert function.__doc__ and function.__doc__.split()[0] in text


def test_results_show_in_a_notebook_as_escaped_html():
    from torq_nb.research.results import ResearchResults

    df = pl.DataFrame([
        {"rank": 1, "title": "<script>alert(1)</script>", "url": "https://example.org/a", "domain": "example.org",
         "status": "ok", "word_count": 120},
        {"rank": 2, "title": "local notes", "url": "file:///home/me/notes.md", "status": "ok", "word_count": 5},
        {"rank": 3, "title": "gone", "url": "javascript:alert(1)", "status": "error", "error": "refused: <b>scheme</b>"},
    ], schema_overrides={k: v for k, v in SCHEMA.items() if k in ("rank", "word_count")})
    df = df.with_columns([pl.lit(None, dtype=t).alias(n) for n, t in SCHEMA.items() if n not in df.columns]).select(list(SCHEMA))
    html = ResearchResults("tides <i>and</i> moons", df, "Tides rise <img src=x onerror=alert(1)> daily [1].")._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "<i>" not in html and "<b>" not in html
    assert "href='https://example.org/a'" in html
    assert "file:///home/me/notes.md" not in html and "javascript:" not in html
    assert "3 hits" in html and "2 read" in html and "1 failed" in html


async def test_hits_that_are_not_web_pages_are_error_rows_with_their_reason():
    async with SearchServer(load_pages()) as server:
        server.foreign_results = ["file:///etc/passwd", "ftp://files.test/x", "data:text/html,hi", "javascript:alert(1)"]
        results = await torq_nb.aresearch("solar power water", source=SearXNG(server.searxng_url),
                                          allow_private_networks=True, display=False)
    rows = {row["url"]: row for row in results.df.iter_rows(named=True)}
    for url in server.foreign_results:
        scheme = url.split(":", 1)[0]
        assert rows[url]["status"] == "error"
        assert rows[url]["error"].startswith(f"refused: only http and https URLs are fetched, not {scheme}")
    assert sum(row["status"] == "ok" for row in rows.values()) == len(rows) - 4 > 0


def test_a_hit_whose_host_fails_idna_is_a_row_and_the_run_goes_on():
    """Run in a loopback-only namespace: a broken fix could otherwise send these names to a DNS server."""
    script = """
import json
import torq_nb
from web_faults import FaultServer
from fake_search import serve_in_thread
from torq_nb.research.models import Hit
from torq_nb.research.sources import Source

class ListedHits(Source):
    name = "listed"
    def __init__(self, urls):
        self.urls = urls
    async def search(self, query, limit, fetcher):
        return [Hit(title=f"hit {i}", url=url, source=self.name) for i, url in enumerate(self.urls)]

with serve_in_thread(FaultServer()) as server:
    urls = [server.url("/page"), "http://xn--.test/", "http://" + "a" * 64 + ".test/", "http://xn--zz.test/a"]
    results = torq_nb.research("page", source=ListedHits(urls), allow_private_networks=True, display=False)
print(json.dumps([[row["url"], row["status"], row["error"]] for row in results.df.iter_rows(named=True)]))
"""
    import json

    from netns import run_isolated
    rows = json.loads(run_isolated(script))
    assert rows[0][1] == "ok"
    assert len(rows) == 4
    for url, status, error in rows[1:]:
        assert status == "error" and "is not a valid host name" in error, (url, error)


def test_printing_results_is_short():
    from torq_nb.research.results import ResearchResults

    rows = [{"rank": n, "title": f"page {n}", "url": f"https://example.org/{n}", "status": "ok" if n % 4 else "error",
             "content": "long text " * 500} for n in range(1, 201)]
    results = ResearchResults("tidal power", pl.DataFrame(rows), "Tidal power is steady [1].", source="searxng")
    text = str(results)
    assert text == repr(results) and len(text.splitlines()) == 2
    assert "'tidal power'" in text and "200 hits (50 error, 150 ok)" in text
    assert "long text" not in text


@pytest.mark.parametrize("depth", ["quick", "standard"])
def test_a_local_run_reads_nothing_outside_its_folder_and_takes_any_file_name(tmp_path, depth):
    import os

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "accounts.md").write_text("# Accounts\n\nThe passwd file lists user accounts on Unix systems.\n")
    (docs / "passwd.txt").symlink_to("/etc/passwd")
    (docs / "environ.txt").symlink_to("/proc/self/environ")
    with open(os.path.join(os.fsencode(docs), b"passwd-notes-\xe9t\xe9.txt"), "wb") as stream:  # Latin-1 name
        stream.write(b"More notes on the passwd file and its accounts.")
    results = torq_nb.research("passwd", depth, source="local", path=str(docs), display=False)
    assert results.df.height == 2 and set(results.df["status"]) == {"ok" if depth == "standard" else "snippet"}
    assert not any("root:x:0" in str(value) for row in results.df.iter_rows() for value in row)
    assert {url.rsplit("/", 1)[-1] for url in results.df["url"]} == {"accounts.md", "passwd-notes-%E9t%E9.txt"}
    results.df.write_csv(tmp_path / "rows.csv")  # every text is valid UTF-8


@pytest.mark.parametrize(("options", "message"), [
    ({"policy": "fast"}, "policy must be a FetchPolicy"),
    ({"polcy": FetchPolicy()}, "did you mean policy=?"),
    ({"allow_private_networks": "yes"}, "allow_private_networks must be True, False or None"),
    ({"synthesizer": "extractive"}, "synthesizer must have an async synthesize"),
    ({"progress_callback": "print"}, "progress_callback must be a function"),
])
def test_wrong_options_are_refused_at_the_call_naming_the_parameter(options, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        torq_nb.research("tidal energy", source="local", path=".", display=False, **options)


async def test_a_topic_too_long_to_search_is_refused_at_the_call_naming_the_limit():
    from torq_nb.research.sources import Wikipedia

    async with SearchServer(load_pages()) as server:
        searxng, wikipedia = SearXNG(server.searxng_url), Wikipedia(server.wikipedia_endpoint)
        with pytest.raises(ValueError, match=r"topic is 100,000 characters long; a searxng search takes at most 500"):
            await torq_nb.aresearch("solar " * 16_666 + "four", source=searxng, display=False)
        with pytest.raises(ValueError, match="shorten the topic"):
            torq_nb.start_research("x" * 100_000, source=searxng, display=False)  # raises before any job starts
        with pytest.raises(ValueError, match=r"topic is 301 characters long; a wikipedia search takes at most 300"):
            await torq_nb.aresearch("w" * 301, source=wikipedia, display=False)
        with pytest.raises(ValueError, match=r"at depth 'deep' takes at most 291"):  # "{topic} overview" is searched too
            await torq_nb.aresearch("w" * 292, "deep", source=wikipedia, display=False)
        assert server.requests == []
        accepted = await torq_nb.aresearch("solar power " + "w" * 488, "quick", source=searxng, display=False)
    assert len(accepted.topic) == 500 and server.requests_to("/search")


async def test_hits_with_urls_that_do_not_parse_are_rows_and_the_run_goes_on():
    broken = ["http://[::1", "http://a]b/", "http://[zz]/"]
    async with SearchServer(load_pages()) as server:
        server.foreign_results = broken
        results = await torq_nb.aresearch("solar power water", source=SearXNG(server.searxng_url),
                                          allow_private_networks=True, display=False)
    rows = {row["url"]: row for row in results.df.iter_rows(named=True)}
    for url in broken:
        assert rows[url]["status"] == "error" and rows[url]["error"].startswith("invalid URL"), rows[url]
        assert rows[url]["domain"] is None
    assert sum(row["status"] == "ok" for row in rows.values()) == len(rows) - 3 > 0
