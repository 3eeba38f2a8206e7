"""research_many / start_research_many / BatchResults against a real loopback SearXNG and its pages:
every topic accounted for (failed searches are that topic's status), one fetch budget across topics
(per-host concurrency measured at the server), cancel keeping partial results, exports read back, the
batch widget's comm message rate in a real kernel at 5,000 topics, and the CLI's research-many."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from aiohttp import web
from export_factory import pdf_text
from fake_search import FIXTURE_PAGES, SearchServer, load_pages, serve_in_thread

from torq_nb.progress.batch import BatchTracker, batch_html, batch_line
from torq_nb.research.batch import BatchResults, research_many, start_research_many
from torq_nb.research.fetch import FetchPolicy

REFUSED = "refuseme"
WORDS = ["sourdough", "aqueducts", "honeybee", "marathon", "energy", "batteries", "mining", "python", "colony", "storage"]


class BatchServer(SearchServer):
    """The fake web, refusing (HTTP 403) every SearXNG query that contains REFUSED, and counting the
    requests open at once over all paths (the host's concurrency, as the server sees it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_now = 0
        self.peak_open = 0

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.open_now += 1
        self.peak_open = max(self.peak_open, self.open_now)
        try:
            return await SearchServer._record(self, request, handler)
        finally:
            self.open_now -= 1

    async def _searxng(self, request: web.Request) -> web.Response:
        if REFUSED in request.query.get("q", ""):
            return web.Response(status=403, text="<html><body><h1>403 Forbidden</h1></body></html>", content_type="text/html")
        return await super()._searxng(request)


@pytest.fixture(autouse=True)
def own_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's default run store is a file of its own."""
    path = tmp_path / "store.sqlite"
    monkeypatch.setenv("TORQ_NB_STORE", str(path))
    return path


@pytest.fixture
def server() -> Iterator[BatchServer]:
    """Over the eight fixture pages (not the corpus): extraction stays cheap, so 50 topics take seconds."""
    with serve_in_thread(BatchServer(load_pages(FIXTURE_PAGES))) as running:
        yield running


def fifty_topics() -> list[str]:
    """50 topics; every fifth one's search is refused."""
    return [f"{WORDS[i % len(WORDS)]} {REFUSED if i % 5 == 4 else 'notes'} {i:02d}" for i in range(50)]


def options(server: SearchServer, **extra: Any) -> dict[str, Any]:
    return {"source": "searxng", "base_url": server.searxng_url, "display": False, **extra}


def test_fifty_topics_every_one_has_its_row_and_refused_searches_are_that_topics_status(server: BatchServer) -> None:
    topics = fifty_topics()
    server.delay = 0.01
    policy = FetchPolicy(per_host=3, concurrency=16, allow_private_networks=True)
    results = research_many(topics, policy=policy, concurrency=10, **options(server))

    assert isinstance(results, BatchResults) and len(results) == 50
    summaries = results.summaries
    assert summaries.get_column("topic").to_list() == topics
    refused = summaries.filter(pl.col("topic").str.contains(REFUSED))
    assert refused.height == 10
    assert set(refused.get_column("status")) == {"failed"}
    assert all("403" in reason for reason in refused.get_column("reason"))
    others = summaries.filter(~pl.col("topic").str.contains(REFUSED))
    assert set(others.get_column("status")) == {"complete"} and others.get_column("reason").null_count() == 40
    assert others.get_column("pages_read").sum() > 0

    # .df: every row of every topic, a leading topic column and then the documented schema.
    df = results.df
    assert df.columns[0] == "topic" and df.columns[1:] == results[topics[0]].df.columns
    for topic in others.get_column("topic"):
        assert df.filter(pl.col("topic") == topic).drop("topic").equals(results[topic].df)
    assert df.height == others.get_column("hits").sum()
    # .errors names every failed topic with its reason; a failed topic has no results to index.
    errors = results.errors
    assert set(errors.filter(pl.col("rank").is_null()).get_column("topic")) == set(refused.get_column("topic"))
    with pytest.raises(KeyError, match="403"):
        results[refused.get_column("topic")[0]]

    # One fetch budget: the host never saw more than per_host requests at once, over all 50 topics.
    assert 1 < server.peak_open <= 3, server.peak_open
    assert results.progress is not None and results.progress["states"]["failed"] == 10
    assert "50 topics" in repr(results) and "10 failed" in repr(results)


def test_duplicates_are_researched_once_and_a_series_works(server: BatchServer) -> None:
    topics = pl.Series("company", ["honeybee colony", " honeybee colony ", "marathon training", "honeybee colony"])
    results = research_many(topics, "quick", **options(server, allow_private_networks=True))
    assert results.topics == ["honeybee colony", "marathon training"]
    searches = [(r.query["q"], r.query.get("pageno", "1")) for r in server.requests_to("/search")]
    assert {q for q, _ in searches} == {"honeybee colony", "marathon training"}
    assert len(searches) == len(set(searches))  # no page of results asked for twice


def test_query_template_is_what_each_topic_searches(server: BatchServer) -> None:
    results = research_many(["honeybee", "marathon"], "quick", query="{topic} training plan", **options(server))
    assert {r.query["q"] for r in server.requests_to("/search")} == {"honeybee training plan", "marathon training plan"}
    assert results.summaries.get_column("query").to_list() == ["honeybee training plan", "marathon training plan"]
    assert results["honeybee"].topic == "honeybee training plan"


@pytest.mark.parametrize("template", ["{name} revenue", "{0} revenue", "annual revenue", "{topic revenue", "{topic!x}", ""])
def test_bad_query_templates_are_refused_at_the_call(server: BatchServer, template: str) -> None:
    with pytest.raises((ValueError, TypeError)):
        start_research_many(["solar"], query=template, **options(server))
    assert server.requests == []


@pytest.mark.parametrize(("topics", "error"), [
    ([], ValueError), (["solar", "  "], ValueError), (["solar", None], TypeError), ("solar", TypeError),
    (pl.Series([1, 2]), TypeError), (42, TypeError),
])
def test_bad_topics_are_refused_at_the_call(server: BatchServer, topics: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        start_research_many(topics, **options(server))
    assert server.requests == []


def test_cancel_keeps_partial_results(server: BatchServer) -> None:
    server.delay = 0.2
    topics = [f"{WORDS[i % len(WORDS)]} {i:02d}" for i in range(30)]
    job = start_research_many(topics, concurrency=4, **options(server, allow_private_networks=True))
    deadline = time.monotonic() + 120
    while job.status["ended"] < 2 and time.monotonic() < deadline:  # wait for a few finished topics
        time.sleep(0.05)
    assert job.cancel()
    results = job.result(timeout=60)
    assert results.state == "cancelled"
    summaries = results.summaries
    assert summaries.height == 30
    statuses = dict(summaries.get_column("status").value_counts().rows())
    assert statuses.get("complete", 0) >= 2 and statuses.get("cancelled", 0) >= 1, statuses
    # A topic that was running keeps what it had: its rows are there, the unread ones marked "cancelled".
    running = summaries.filter((pl.col("status") == "cancelled") & (pl.col("hits") > 0))
    for topic in running.get_column("topic"):
        assert results[topic].df.height > 0
    never = summaries.filter((pl.col("status") == "cancelled") & (pl.col("hits") == 0))
    assert never.height > 0 and all(reason for reason in never.get_column("reason"))
    assert job.partial_results.summaries.equals(summaries)


def test_a_batch_run_again_reads_from_the_store_and_a_cancelled_one_resumes(server: BatchServer, tmp_path: Path) -> None:
    topics = [f"{WORDS[i % len(WORDS)]} {i:02d}" for i in range(12)]
    store = tmp_path / "batch.sqlite"
    server.delay = 0.1
    job = start_research_many(topics, concurrency=3, store=store, **options(server, allow_private_networks=True))
    deadline = time.monotonic() + 120
    while job.status["ended"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    job.cancel()
    partial = job.result(timeout=60)
    assert partial.state == "cancelled"
    server.delay = 0.0
    before = len(server.requests)
    resumed = research_many(topics, concurrency=3, store=store, **options(server, allow_private_networks=True))
    assert set(resumed.summaries.get_column("status")) == {"complete"}
    done_first = partial.summaries.filter(pl.col("status") == "complete").get_column("topic").to_list()
    searched = {r.query["q"] for r in server.requests[before:] if r.path == "/search"}
    assert not searched & set(done_first)  # the topics that had finished came from the store
    before = len(server.requests)
    again = research_many(topics, concurrency=3, store=store, **options(server, allow_private_networks=True))
    assert len(server.requests) == before  # nothing fetched: every search and page was fresh in the store
    assert again.df.drop("cached").equals(resumed.df.drop("cached")) and again.df.get_column("cached").all()


def test_export_every_format_reads_back(server: BatchServer, tmp_path: Path) -> None:
    topics = ["honeybee colony", "marathon training", f"sourdough {REFUSED}"]
    results = research_many(topics, **options(server, allow_private_networks=True))
    csv = pl.read_csv(results.export(tmp_path / "all.csv"))
    assert csv.columns[0] == "topic" and csv.height == results.df.height
    assert set(csv.get_column("topic")) == {t for t in topics if REFUSED not in t and results[t].df.height}
    markdown = results.export(tmp_path / "all.md").read_text("utf-8")
    assert "# Research: 3 topics" in markdown and "## Topics" in markdown
    for topic in topics:
        assert f"## {topic}" in markdown
    assert "403" in markdown  # the failed topic's reason
    saved = json.loads(results.export(tmp_path / "all.json").read_text("utf-8"))
    assert len(saved["results"]) == results.df.height and len(saved["metadata"]["topics"]) == 3
    assert pl.read_parquet(results.export(tmp_path / "all.parquet")).equals(results.df)
    text = pdf_text(results.export(tmp_path / "all.pdf"))
    for topic in topics:
        assert topic in text
    html = results.export(tmp_path / "all.html").read_text("utf-8")
    # Citations link to their own topic's sources: anchors are numbered per topic, never repeated.
    ids = [part.split('"')[0] for part in html.split('id="t')[1:]]
    assert ids and len(ids) == len(set(ids))


def test_tracker_snapshot_stays_small_at_five_thousand_items() -> None:
    keys = [f"company {i}" for i in range(5000)]
    tracker = BatchTracker("research_many: 5,000 topics", keys, unit="pages", refresh_interval=3600)
    published: list[dict[str, Any]] = []
    tracker.add_callback(published.append)
    tracker.start()
    for i, key in enumerate(keys):
        tracker.item_progress(key, "searching")
        if i % 3 == 0:
            tracker.item_progress(key, "extracting", 4, 10)
        if i < 4000:
            tracker.item_finished(key, "failed" if i % 100 == 0 else "complete", done=4, failed=1 if i % 100 == 0 else 0,
                                  reason="HTTP 403" if i % 100 == 0 else None)
    status = tracker.status()
    assert status["states"] == {"pending": 0, "running": 1000, "complete": 3960, "failed": 40, "cancelled": 0}
    assert sum(status["stages"].values()) == 1000
    assert len(status["running"]) <= 8 and len(status["recent"]) <= 8 and len(status["failures"]) <= 8
    assert len(json.dumps(status)) < 8000
    assert len(published) == 1  # the start; the interval held everything else back
    tracker.finish("cancelled")
    assert tracker.status()["states"]["cancelled"] == 1000 and len(published) == 2


def test_finishing_a_batch_publishes_only_its_final_state() -> None:
    tracker = BatchTracker("batch", ["a", "b", "c"], unit="pages", refresh_interval=0)
    published: list[dict[str, Any]] = []
    tracker.add_callback(published.append)
    tracker.start()
    tracker.item_finished("a", "complete", done=3)
    before = len(published)
    tracker.finish("cancelled")
    after = published[before:]
    assert [s["state"] for s in after] == ["cancelled"], after  # no running snapshot with b and c half-counted
    assert after[0]["states"] == {"pending": 0, "running": 0, "complete": 1, "failed": 0, "cancelled": 2}


def test_snapshots_treat_topic_names_as_data() -> None:
    hostile = '<img src=x onerror="alert(1)">\x1b[31m'
    tracker = BatchTracker("batch", [hostile, "plain"], unit="pages")
    tracker.start()
    tracker.item_finished(hostile, "failed", reason="<script>alert(2)</script>")
    page = batch_html(tracker.status())
    assert "<img" not in page and "<script" not in page and "&lt;img" in page
    assert "\x1b" not in batch_line(tracker.status())


# ----------------------------------------------------------------------------- the widget in a real kernel


@pytest.fixture(scope="module")
def kernel() -> Iterator[Any]:
    from jupyter_client.manager import KernelManager
    from test_widget import Kernel

    manager = KernelManager(kernel_name="python3")
    manager.start_kernel()
    live = Kernel(manager)
    try:
        yield live
    finally:
        live.close()


def test_five_thousand_fast_topics_stay_within_ten_messages_a_second(kernel: Any, tmp_path: Path) -> None:
    """5,000 quick topics over local files: every comm message of the batch widget is counted on IOPub."""
    folder = FIXTURE_PAGES / "html"
    messages, values = kernel.run(
        f"""
        import time
        import torq_nb
        from torq_nb.research.batch import start_research_many
        started = time.monotonic()
        job = start_research_many([f"topic {{i}} honeybee" for i in range(5000)], "quick", "local",
                                  path={str(folder)!r}, concurrency=16, store=None)  # displayed: the batch widget
        results = job.result()
        seconds = time.monotonic() - started
        """,
        seconds="seconds",
        ended="results.progress['ended']",
        complete="results.summaries.filter(results.summaries['status'] == 'complete').height",
    )
    widget_ids = {m["content"]["comm_id"] for m in messages if m["msg_type"] == "comm_open"
                  and m["content"]["data"]["state"].get("_anywidget_id") == "torq_nb.progress.batch_widget.BatchWidget"}
    assert len(widget_ids) == 1, widget_ids
    widget_id = widget_ids.pop()
    updates = [m["content"]["data"]["state"] for m in messages if m["msg_type"] == "comm_msg"
               and m["content"]["comm_id"] == widget_id and m["content"]["data"].get("method") == "update"]
    rate = len(updates) / values["seconds"]
    print(f"\n5,000 topics in {values['seconds']:.1f} s: {len(updates)} widget messages, {rate:.1f} per second")
    assert values["ended"] == 5000 and values["complete"] == 5000
    assert len(updates) <= 10 * values["seconds"] + 2, (len(updates), values["seconds"])
    assert updates[-1]["view"]["state"] == "complete" and updates[-1]["view"]["ended"] == 5000
    # The saved notebook's picture: the display's text/html is rewritten to the final state.
    finals = [m for m in messages if m["msg_type"] == "update_display_data"]
    assert finals and "5,000/5,000 topics" in finals[-1]["content"]["data"]["text/html"]


# ----------------------------------------------------------------------------- the command line


def test_cli_research_many_end_to_end(server: BatchServer, tmp_path: Path) -> None:
    listing = tmp_path / "topics.txt"
    listing.write_text("honeybee colony\n\n# a comment\nmarathon training\nsourdough refuseme\nhoneybee colony\n", "utf-8")
    env = {**os.environ, "TORQ_NB_ALLOW_PRIVATE_NETWORKS": "1", "TORQ_NB_STORE": str(tmp_path / "cli.sqlite")}
    done = subprocess.run(
        [sys.executable, "-m", "torq_nb.cli", "research-many", str(listing), "--source", "searxng",
         "--searxng-url", server.searxng_url, "--export", str(tmp_path / "all.csv"), "--export", str(tmp_path / "all.md")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    table = pl.read_csv(tmp_path / "all.csv")
    assert table.columns[0] == "topic"
    assert "3 topics" in done.stderr and "1 failed" in done.stderr
    assert "sourdough refuseme" in done.stdout and "403" in done.stdout  # the per-topic outcome table
    assert "## marathon training" in (tmp_path / "all.md").read_text("utf-8")


def test_cli_ctrl_c_exits_130_and_exports_the_topics_reached(server: BatchServer, tmp_path: Path) -> None:
    import signal

    listing = tmp_path / "topics.txt"
    listing.write_text("\n".join([f"sourdough {REFUSED}", *(f"{WORDS[i % len(WORDS)]} {i:02d}" for i in range(20))]), "utf-8")
    server.delay = 1.0  # pages stay in flight after the interrupt, even on a loaded machine
    env = {**os.environ, "TORQ_NB_ALLOW_PRIVATE_NETWORKS": "1", "TORQ_NB_STORE": "off"}
    process = subprocess.Popen(
        [sys.executable, "-m", "torq_nb.cli", "research-many", str(listing), "--source", "searxng", "--concurrency", "2",
         "--searxng-url", server.searxng_url, "--export", str(tmp_path / "partial.csv")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    deadline = time.monotonic() + 120
    while not any(r.path.startswith("/pages/") for r in list(server.requests)):  # a topic is reading its pages
        assert process.poll() is None and time.monotonic() < deadline, "the CLI ended before reading a page"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted: exporting the partial results" in err and "Traceback" not in err
    rows = pl.read_csv(tmp_path / "partial.csv")
    assert rows.columns[0] == "topic" and "cancelled" in set(rows.get_column("status"))


def test_a_topic_too_long_to_search_is_that_topics_failure_and_the_batch_goes_on(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "solar.txt").write_text("Solar panels turn sunlight into electricity on rooftops.\n", encoding="utf-8")
    batch = research_many(["solar", "x" * 600], "quick", "local", path=str(folder), store=None,
                                  display=False)
    statuses = dict(batch.summaries.select("topic", "status").iter_rows())
    assert statuses["solar"] == "complete" and statuses["x" * 600] == "failed"


def test_a_template_naming_another_field_says_so():
    with pytest.raises(ValueError, match="the only field is"):
        research_many(["solar"], query="{year} {topic}", display=False)
