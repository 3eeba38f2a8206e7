"""A batch of topics: a plain loop of ``research()`` against ``research_many`` over the same topics.

The loopback server (tests/fake_search.py) speaks SearXNG's JSON API over the small fixture pages (eight
articles: extraction stays a small share, so the figure is about scheduling) and answers every request,
search and page alike, after ``--latency-ms``. Both sides use the same FetchPolicy; the run store is off, so
every request goes out. The loop researches one topic after the other (each run's pages concurrently);
the batch runs ``--concurrency`` topics at once over ONE fetch budget, so the policy's per-host limit holds
across all topics. All pages live on one loopback host: the per-host limit is the bound, which is why the
table shows the default policy (4 per host, 16 in all) and a raised one (``--per-host``).

Lower bound of the batch: requests × latency ÷ the requests one host may have open (the per-host limit);
requests are counted at the server.

With ``--dask`` the batch also runs on a ``LocalCluster`` of two worker processes (one thread each) on
loopback: each worker thread researches its chunks of topics over a Fetcher of its own, so a host may see up
to per_host requests from each worker thread.

    python benchmarks/bench_batch.py [--topics 200] [--latency-ms 50] [--concurrency 16] [--per-host 16] [--dask]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fake_search import FIXTURE_PAGES, SearchServer, load_pages, serve_in_thread

import torq_nb
from torq_nb.research.fetch import FetchPolicy

WORDS = ["sourdough", "aqueducts", "honeybee", "marathon", "energy", "batteries", "mining", "python", "colony",
         "storage", "training", "roman", "grid", "solar", "deep", "event"]


def topics(n: int) -> list[str]:
    return [f"{WORDS[i % len(WORDS)]} {WORDS[(i * 7 + 3) % len(WORDS)]} {i}" for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topics", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=16, help="topics at once in the batch")
    parser.add_argument("--per-host", type=int, default=16, help="the raised per-host limit of the second policy")
    parser.add_argument("--dask", action="store_true", help="also run the batch on a LocalCluster of 2 workers")
    args = parser.parse_args()
    client = None
    if args.dask:
        from distributed import Client, LocalCluster

        client = Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None))
    names = topics(args.topics)
    rows = []
    with serve_in_thread(SearchServer(load_pages(FIXTURE_PAGES))) as server:
        server.delay = args.latency_ms / 1000
        common = {"source": "searxng", "base_url": server.searxng_url, "display": False, "store": None}
        torq_nb.research(names[0], policy=FetchPolicy(allow_private_networks=True), **common)  # warm: pool, imports
        for policy in (FetchPolicy(allow_private_networks=True),
                       FetchPolicy(per_host=args.per_host, concurrency=max(16, args.per_host), allow_private_networks=True)):
            server.requests.clear()
            started = time.perf_counter()
            for name in names:
                torq_nb.research(name, policy=policy, **common)
            loop = time.perf_counter() - started
            requests = len(server.requests)
            server.requests.clear()
            started = time.perf_counter()
            batch = torq_nb.research_many(names, policy=policy, concurrency=args.concurrency, **common)
            many = time.perf_counter() - started
            assert len(server.requests) == requests, (len(server.requests), requests)
            pages = int(batch.summaries.get_column("pages_read").sum())
            bound = requests * server.delay / policy.per_host
            on_dask = None
            if client is not None:
                started = time.perf_counter()
                remote = torq_nb.research_many(names, policy=policy, concurrency=args.concurrency, executor=client, **common)
                on_dask = time.perf_counter() - started
                assert remote.summaries.equals(batch.summaries)
            rows.append((policy, requests, pages, loop, many, bound, on_dask))
    if client is not None:
        cluster = client.cluster
        client.close()
        cluster.close()
    print(f"{args.topics} topics, standard depth, server latency {args.latency_ms:g} ms, batch concurrency "
          f"{args.concurrency} topics\n")
    dask_head = " research_many on Dask (2 workers) |" if client is not None else ""
    print(f"| policy | requests | pages read | loop of research() | research_many | loop ÷ batch | batch lower bound | batch ÷ bound |{dask_head}")
    print("|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if client is not None else ""))
    for policy, requests, pages, loop, many, bound, on_dask in rows:
        dask_cell = f" {on_dask:.1f} s |" if on_dask is not None else ""
        print(f"| per_host={policy.per_host}, concurrency={policy.concurrency} | {requests:,} | {pages:,} | {loop:.1f} s | "
              f"{many:.1f} s | {loop / many:.1f}× | {bound:.1f} s | {many / bound:.2f}× |{dask_cell}")


if __name__ == "__main__":
    main()
