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

With ``--memory`` it measures instead what a big batch costs in a real kernel: ``--memory-topics`` (5,000) quick
topics (one search each, snippets only, nothing fetched) against the loopback SearXNG (``--source local``: the
fixture pages' folder, no network), each case in a fresh ipykernel (started with jupyter_client) with a run store
of its own. The kernel reports its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) after importing
torq_nb and after the batch; the script counts the batch widget's ``comm_msg`` update messages on IOPub, per
second of batch and in the busiest second (by the kernel's send times in the message headers). Baselines in the
same run: the kernel with nothing researched, a tenth of the topics (so the cost per topic is the difference,
without the first batch's imports and warm-up), and the same batch with ``display=False`` (no widget).

    python benchmarks/bench_batch.py --memory [--memory-topics 5000] [--source searxng|local]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path
from queue import Empty

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fake_search import FIXTURE_PAGES, SearchServer, load_pages, serve_in_thread

import torq_nb
from torq_nb.research.fetch import FetchPolicy

WORDS = ["sourdough", "aqueducts", "honeybee", "marathon", "energy", "batteries", "mining", "python", "colony",
         "storage", "training", "roman", "grid", "solar", "deep", "event"]


def topics(n: int) -> list[str]:
    return [f"{WORDS[i % len(WORDS)]} {WORDS[(i * 7 + 3) % len(WORDS)]} {i}" for i in range(n)]


# --------------------------------------------------------------------- --memory: a big batch in a real kernel

_MEMORY_CELL = """
import json, resource, time
import polars as pl
import torq_nb

def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux

before = _peak_mb()
topics = {topics!r}
if topics:
    started = time.monotonic()
    batch = torq_nb.research_many(topics, "quick", {source!r}, concurrency=16, display={display!r}, **{options!r})
    seconds = time.monotonic() - started
    done = batch.summaries.filter(pl.col("status") == "complete").height
    rows = batch.df.height
else:
    seconds, done, rows = 0.0, 0, 0
print("BENCH" + json.dumps({{"before": before, "after": _peak_mb(), "seconds": seconds, "done": done, "rows": rows}}))
"""


def _kernel_case(topics: list[str], source: str, options: dict[str, str], display: bool) -> dict[str, float]:
    """One cell in a fresh ipykernel with a store of its own: the kernel's figures, and the batch widget's messages."""
    from jupyter_client.manager import KernelManager

    with tempfile.TemporaryDirectory(prefix="bench-batch-store-") as folder:
        manager = KernelManager(kernel_name="python3", transport="ipc")
        manager.start_kernel(env={**os.environ, "TORQ_NB_STORE": str(Path(folder) / "store.sqlite")})
        client = manager.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=120)
            code = textwrap.dedent(_MEMORY_CELL).format(topics=topics, source=source, options=options, display=display)
            msg_id = client.execute(code, store_history=False)
            widget, sent, stdout = None, [], []
            while True:
                try:
                    msg = client.get_iopub_msg(timeout=600)
                except Empty:
                    raise RuntimeError("the kernel sent nothing for 10 minutes") from None
                kind, content = msg["msg_type"], msg["content"]
                if kind == "comm_open" and content["data"]["state"].get("_anywidget_id", "").endswith("BatchWidget"):
                    widget = content["comm_id"]
                elif kind == "comm_msg" and content["comm_id"] == widget and content["data"].get("method") == "update":
                    date = msg["header"]["date"]
                    sent.append((date if isinstance(date, datetime) else datetime.fromisoformat(str(date))).timestamp())
                elif kind == "stream" and content["name"] == "stdout":
                    stdout.append(content["text"])
                elif kind == "error":
                    raise RuntimeError("the benchmark cell failed:\n" + "\n".join(content["traceback"]))
                elif kind == "status" and content["execution_state"] == "idle" and msg["parent_header"].get("msg_id") == msg_id:
                    break
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
    line = next(line for line in "".join(stdout).splitlines() if line.startswith("BENCH"))
    figures: dict[str, float] = json.loads(line[len("BENCH"):])
    busiest = max((sum(1 for t in sent if start <= t < start + 1.0) for start in sent), default=0)
    figures.update(messages=len(sent), busiest=busiest)
    return figures


def memory(args: argparse.Namespace) -> None:
    """Peak RSS of a kernel researching --memory-topics quick topics, and the batch widget's message rate."""
    names = topics(args.memory_topics)
    cases = [("kernel with torq_nb imported, nothing researched", [], True),
             (f"{len(names) // 10:,} quick topics, widget displayed", names[: len(names) // 10], True),
             (f"{len(names):,} quick topics, widget displayed", names, True),
             (f"{len(names):,} quick topics, display=False", names, False)]
    results = []
    with serve_in_thread(SearchServer(load_pages(FIXTURE_PAGES))) as server:
        options = {"path": str(FIXTURE_PAGES / "html")} if args.source == "local" else {"base_url": server.searxng_url}
        for label, chosen, display in cases:
            figures = _kernel_case(chosen, args.source, options, display)
            assert figures["done"] == len(chosen), figures
            results.append((label, chosen, display, figures))
            print(f"{label}: {figures}", file=sys.stderr)
    print(f"quick depth (one search of the {args.source} source, top 5 hits as snippet rows, no page fetched), "
          "concurrency 16, a run store of its own per kernel\n")
    print("| case | topics | rows | batch time | peak RSS after import | peak RSS after the batch | growth "
          "| per topic beyond the tenth | widget messages | per second of batch | busiest second |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    tenth = results[1]
    for label, chosen, display, f in results:
        growth = f["after"] - f["before"]
        # What each topic adds once the first batch's imports and warm-up are paid: against the tenth-sized batch.
        extra = len(chosen) - len(tenth[1])
        per_topic = f"{(f['after'] - tenth[3]['after']) * 1024 / extra:.1f} KB" if extra > 0 else "—"
        rate = f"{f['messages'] / f['seconds']:.1f}" if chosen and display else "—"
        shown = (f"{f['messages']:,}", rate, f"{f['busiest']:,}") if display and chosen else ("—", "—", "—")
        batch_time = f"{f['seconds']:.1f} s" if chosen else "—"
        print(f"| {label} | {len(chosen):,} | {int(f['rows']):,} | {batch_time} | {f['before']:.0f} MB | {f['after']:.0f} MB "
              f"| {growth:.0f} MB | {per_topic} | {' | '.join(shown)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topics", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=16, help="topics at once in the batch")
    parser.add_argument("--per-host", type=int, default=16, help="the raised per-host limit of the second policy")
    parser.add_argument("--dask", action="store_true", help="also run the batch on a LocalCluster of 2 workers")
    parser.add_argument("--memory", action="store_true", help="peak RSS and widget messages of a big quick batch")
    parser.add_argument("--memory-topics", type=int, default=5000)
    parser.add_argument("--source", choices=("searxng", "local"), default="searxng", help="--memory's source")
    args = parser.parse_args()
    if args.memory:
        memory(args)
        return
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
