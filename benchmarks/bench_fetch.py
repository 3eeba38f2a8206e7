"""Fetch throughput: the Fetcher against a loopback server that answers every page after a fixed latency.

Each row fetches PAGES distinct pages at one concurrency (per_host set to match) and sets the Fetcher's wall
time beside the latency-bound ideal, pages x latency / concurrency, and beside bare aiohttp at the same
concurrency (one session, a semaphore, no checks, retries or caps). Concurrency 1 is the sequential baseline.
Each time is the best of --repeat runs.

    python benchmarks/bench_fetch.py [--pages 200] [--latency-ms 50] [--concurrency 1 4 8 16 32] [--repeat 3]

The server runs in its own process so its work does not share the client's event loop, and is a minimal\nasyncio protocol so it costs little CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import time
from collections.abc import Awaitable, Callable
from functools import partial

import aiohttp

from torq_nb.research.fetch import Fetcher, FetchPolicy

PAGE = ("<!DOCTYPE html><html><head><title>Bench page</title></head><body>"
        + "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>" * 40 + "</body></html>")


class SlowPageProtocol(asyncio.Protocol):
    """A minimal HTTP/1.1 keep-alive server: every GET is answered with PAGE after the latency.

    Hand-written instead of aiohttp.web so the server spends as little CPU as possible per request
    and the measurement is about the client.
    """

    RESPONSE = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
        + f"Content-Length: {len(PAGE.encode())}\r\n\r\n".encode()
        + PAGE.encode()
    )

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        loop = asyncio.get_running_loop()
        while b"\r\n\r\n" in self.buffer:
            _, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            loop.call_later(self.latency, self._answer)

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.RESPONSE)


def serve(port: int, latency: float) -> None:
    """Run the slow page server on 127.0.0.1:port until the process is terminated."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SlowPageProtocol(latency), "127.0.0.1", port, backlog=1024)
        await server.serve_forever()

    asyncio.run(run())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_until_up(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(f"{base}/page/0"):
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"the benchmark server at {base} did not start")


async def bare_aiohttp(urls: list[str], concurrency: int) -> int:
    """Baseline: one plain aiohttp session and a semaphore; body read and decoded, nothing else."""
    slots = asyncio.Semaphore(concurrency)

    async def get(session: aiohttp.ClientSession, url: str) -> bool:
        async with slots, session.get(url) as response:
            return bool(await response.text())

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        return sum(await asyncio.gather(*(get(session, url) for url in urls)))


async def with_fetcher(urls: list[str], concurrency: int) -> int:
    policy = FetchPolicy(concurrency=concurrency, per_host=concurrency, allow_private_networks=True)
    async with Fetcher(policy) as fetcher:
        pages = await asyncio.gather(*(fetcher.fetch(url) for url in urls))
    return sum(page.status == "ok" for page in pages)


async def timed(run: Callable[[], Awaitable[int]], expected: int) -> float:
    """Seconds one run takes; it must bring back every page."""
    started = time.perf_counter()
    ok = await run()
    elapsed = time.perf_counter() - started
    if ok != expected:
        raise RuntimeError(f"only {ok} of {expected} pages came back")
    return elapsed


async def main(pages: int, latency: float, concurrencies: list[int], repeat: int) -> None:
    port = free_port()
    server = multiprocessing.Process(target=serve, args=(port, latency), daemon=True)
    server.start()
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_until_up(base)
        urls = [f"{base}/page/{n}" for n in range(pages)]
        print(f"{pages} pages, server latency {latency * 1000:g} ms, best of {repeat} (alternating), "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start\n")
        print("| pages | concurrency | ideal (s) | bare aiohttp (s) | Fetcher (s) | Fetcher / ideal | Fetcher / bare |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for c in concurrencies:
            ideal = pages * latency / c
            bare = ours = float("inf")
            for _ in range(repeat):  # alternate the two so background load hits both alike
                bare = min(bare, await timed(partial(bare_aiohttp, urls, c), pages))
                ours = min(ours, await timed(partial(with_fetcher, urls, c), pages))
            vs_ideal = f"{ours / ideal:.2f}" if ideal else "n/a"
            print(f"| {pages} | {c} | {ideal:.2f} | {bare:.2f} | {ours:.2f} | {vs_ideal} | {ours / bare:.2f} |")
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.pages, args.latency_ms / 1000, args.concurrency, args.repeat))
