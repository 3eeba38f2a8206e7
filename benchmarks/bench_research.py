"""Whole research runs against a loopback SearXNG-compatible server, beside their lower bound.

The server (tests/fake_search.py) speaks SearXNG's JSON API over the article corpus (../shared/corpus, or
TORQ_NB_CORPUS, else the small fixture pages) and answers every request — search and page alike — after
``--latency-ms``. A run cannot be faster than

    search latency + the slowest page fetch + extraction CPU time ÷ cores

(the searches of a deep run's query variants go out together; pages are fetched concurrently; extraction
is CPU work shared by the cores). All pages come from one loopback host standing in for many sites, so the
fetch policy's per-host limit is raised to its total concurrency (``--per-host``); with the default of 4
per host, a deep run's ~30 pages would queue behind one host as they never would on the web. The bound's
terms are measured in the same process: the search latency
by one bare request, the slowest fetch from the run's own rows, the extraction CPU time by extracting the
run's pages sequentially with ``time.process_time``. Synthesis is not in the bound; its time is shown apart.

    python benchmarks/bench_research.py [--latency-ms 50] [--repeat 3] [--per-host 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fake_search import SearchServer, load_pages

from torq_nb.research.extract import extract, shared_extractor
from torq_nb.research.fetch import FetchPolicy
from torq_nb.research.models import Page
from torq_nb.research.provider import WebSearchProvider
from torq_nb.research.sources import SearXNG

TOPICS = ["energy climate policy", "election campaign", "space telescope galaxy"]


async def search_latency(server: SearchServer, repeat: int) -> float:
    """The fastest of ``repeat`` bare search requests, in seconds."""
    best = float("inf")
    async with aiohttp.ClientSession() as session:
        for _ in range(repeat):
            started = time.perf_counter()
            async with session.get(f"{server.searxng_url}/search", params={"q": "energy", "format": "json"}) as r:
                await r.read()
            best = min(best, time.perf_counter() - started)
    return best


def extraction_cpu(server: SearchServer, urls: list[str]) -> float:
    """CPU seconds to extract these pages one after another in this process."""
    by_url = {server.page_url(page): page for page in server.pages}
    total = 0.0
    for url in urls:
        page = Page(url, "ok", content_type="text/html", text=by_url[url].html)
        started = time.process_time()
        extract(page)
        total += time.process_time() - started
    return total


async def measure(depth: str, topic: str, server: SearchServer, latency: float, cores: int,
                  policy: FetchPolicy) -> dict[str, float]:
    provider = WebSearchProvider(SearXNG(server.searxng_url), policy=policy)
    started = time.perf_counter()
    results = await provider.research_topic_with_progress(topic, depth=depth)
    wall = time.perf_counter() - started
    ok = results.df.filter(results.df["status"] == "ok")
    slowest = (results.df["elapsed_ms"].max() or 0.0) / 1000
    cpu = extraction_cpu(server, ok["url"].to_list())
    synthesis = next(s.duration for s in results.progress.stages if s.name == "synthesizing") or 0.0
    bound = latency + slowest + cpu / cores
    return {"pages": ok.height, "wall": wall, "bound": bound, "search": latency, "slowest": slowest,
            "cpu": cpu, "synthesis": synthesis, "ratio": wall / bound, "ratio_no_synth": (wall - synthesis) / bound}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--per-host", type=int, default=16)
    args = parser.parse_args()
    policy = FetchPolicy(allow_private_networks=True, per_host=args.per_host)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    shared_extractor().warm_up()
    async with SearchServer(load_pages()) as server:
        server.delay = args.latency_ms / 1000
        latency = await search_latency(server, 5)
        await measure("standard", TOPICS[0], server, latency, cores, policy)  # warm the workers and the caches
        rows = []
        for depth in ("standard", "deep"):
            runs = [await measure(depth, TOPICS[i % len(TOPICS)], server, latency, cores, policy)
                    for i in range(args.repeat)]
            rows.append((depth, min(runs, key=lambda r: r["ratio"])))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{len(server.pages)} corpus pages, latency {args.latency_ms:.0f} ms, per host {args.per_host}, {cores} cores, "
          f"best ratio of {args.repeat} runs, load average {load:.1f}\n")
    print("| depth | pages read | run (s) | lower bound (s) | search (s) | slowest fetch (s) | extraction CPU (s) "
          "| synthesis (s) | run / bound | (run − synthesis) / bound |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for depth, r in rows:
        print(f"| {depth} | {r['pages']} | {r['wall']:.2f} | {r['bound']:.2f} | {r['search']:.3f} | {r['slowest']:.3f} "
              f"| {r['cpu']:.2f} | {r['synthesis']:.2f} | {r['ratio']:.2f} | {r['ratio_no_synth']:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
