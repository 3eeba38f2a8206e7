"""A research run and its re-run from the run store, in the same process, against a loopback SearXNG.

The server (tests/fake_search.py) speaks SearXNG's JSON API over the article corpus (or the fixture pages) and
answers every request, search and page alike, after ``--latency-ms``. For each topic a standard run goes into a
fresh store (cold: the search, every page fetched and extracted), then the same run again (warm: the search answer,
the pages and their extracted texts all come from the store). The extraction workers are started by a run before
the measurements, so the cold run does not pay their start-up. Times are the best of ``--repeat`` (each repeat
with a new store); the warm run's requests are counted at the server.

    python benchmarks/bench_store.py [--latency-ms 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fake_search import SearchServer, load_pages

from torq_nb.research.fetch import FetchPolicy
from torq_nb.research.provider import WebSearchProvider
from torq_nb.research.sources import SearXNG
from torq_nb.research.store import RunStore

TOPICS = ["energy climate policy", "election campaign", "space telescope galaxy"]


async def timed(provider: WebSearchProvider, topic: str) -> tuple[float, int, int]:
    started = time.perf_counter()
    results = await provider.research_topic_with_progress(topic, depth="standard")
    return time.perf_counter() - started, results.df.filter(results.df["status"] == "ok").height, int(
        results.df["cached"].sum())


async def main(latency_ms: float, repeat: int) -> None:
    policy = FetchPolicy(allow_private_networks=True, per_host=16)
    rows = []
    async with SearchServer(load_pages()) as server:
        server.delay = latency_ms / 1000
        source = SearXNG(server.searxng_url)
        await WebSearchProvider(source, policy=policy, store=None).research_topic_with_progress(TOPICS[0])
        for topic in TOPICS:
            cold = warm = float("inf")
            for _ in range(repeat):
                with tempfile.TemporaryDirectory() as folder:
                    store = RunStore(Path(folder) / "store.sqlite")
                    provider = WebSearchProvider(source, policy=policy, store=store)
                    cold_s, pages, _ = await timed(provider, topic)
                    before = len(server.requests)
                    warm_s, _, cached = await timed(provider, topic)
                    requests = len(server.requests) - before
                    store.close()
                cold, warm = min(cold, cold_s), min(warm, warm_s)
            rows.append((topic, pages, cold, warm, cached, requests))
    print(f"latency {latency_ms:g} ms per request, best of {repeat}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| topic | pages read | cold run (s) | warm re-run (s) | warm / cold | rows cached | warm requests |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for topic, pages, cold, warm, cached, requests in rows:
        print(f"| {topic} | {pages} | {cold:.3f} | {warm:.3f} | {warm / cold:.1%} | {cached} | {requests} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.latency_ms, args.repeat))
