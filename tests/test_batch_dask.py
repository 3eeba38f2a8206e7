"""research_many(executor=Client) on a real LocalCluster of worker processes on loopback: the same table as
the local path, every topic's stages seen live in the notebook process, failures as topics' statuses,
cancel keeping partial results, and the workers sharing the run store file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fake_search import FIXTURE_PAGES, load_pages, serve_in_thread
from test_batch import REFUSED, WORDS, BatchServer

from torq_nb.research.batch import research_many, start_research_many

distributed = pytest.importorskip("distributed")

#: Columns that differ between two runs of the same research (when and how fast, from where).
VOLATILE = ["fetched_at", "elapsed_ms", "cached"]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture
def server() -> Iterator[BatchServer]:
    with serve_in_thread(BatchServer(load_pages(FIXTURE_PAGES))) as running:
        yield running


def options(server: BatchServer, **extra: Any) -> dict[str, Any]:
    return {"source": "searxng", "base_url": server.searxng_url, "display": False, "allow_private_networks": True,
            "store": None, **extra}


def test_the_cluster_gives_the_same_table_as_the_local_batch_and_shows_stages_live(client: Any, server: BatchServer) -> None:
    topics = [f"{WORDS[i % len(WORDS)]} {REFUSED if i % 4 == 3 else 'notes'} {i:02d}" for i in range(16)]
    local = research_many(topics, concurrency=4, **options(server))
    seen: list[dict[str, Any]] = []
    server.delay = 0.05  # slow enough that the notebook sees topics on their way
    remote = research_many(topics, concurrency=4, executor=client, progress_callback=seen.append, **options(server))

    assert remote.df.drop(VOLATILE).equals(local.df.drop(VOLATILE))
    assert remote.summaries.equals(local.summaries)
    failed = remote.summaries.filter(pl.col("status") == "failed")
    assert failed.height == 4 and all("403" in reason for reason in failed.get_column("reason"))
    assert remote.metadata["executor"] == "dask"
    # Progress travelled back from the workers while they ran: topics seen in their stages, pages counted.
    running = [status for status in seen if status["state"] == "running" and status["stages"]]
    assert {stage for status in running for stage in status["stages"]} >= {"extracting"}
    assert any(status["units"] > 0 for status in running)
    assert seen[-1]["state"] == "complete" and seen[-1]["ended"] == 16


def test_cancel_on_the_cluster_keeps_partial_results(client: Any, server: BatchServer) -> None:
    server.delay = 0.2
    topics = [f"{WORDS[i % len(WORDS)]} {i:02d}" for i in range(24)]
    job = start_research_many(topics, concurrency=2, executor=client, **options(server))
    deadline = time.monotonic() + 120
    while job.status["ended"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.cancel()
    results = job.result(timeout=120)
    assert results.state == "cancelled" and results.summaries.height == 24
    statuses = dict(results.summaries.get_column("status").value_counts().rows())
    assert statuses.get("complete", 0) >= 2 and statuses.get("cancelled", 0) >= 1, statuses
    for topic in results.summaries.filter(pl.col("status") == "complete").get_column("topic"):
        assert results[topic].summary


def test_workers_share_the_store_file(client: Any, server: BatchServer, tmp_path: Path) -> None:
    topics = ["honeybee colony", "marathon training", "sourdough starter", "grid batteries"]
    store = tmp_path / "shared.sqlite"
    first = research_many(topics, executor=client, **options(server, store=store))
    before = len(server.requests)
    again = research_many(topics, executor=client, **options(server, store=store))
    assert len(server.requests) == before  # every search and page came from the file the workers share
    assert again.df.drop(VOLATILE).equals(first.df.drop(VOLATILE)) and again.df.get_column("cached").all()
