"""Extraction quality and speed on the article corpus, against trafilatura alone.

Quality: F1 over 4-token shingles exactly as the corpus README defines it (\\w+ tokens, per-page
true/false positives and false negatives as multisets normalised to sum to 1, precision and
recall macro-averaged over pages, F1 from the two averages). Speed: pages per second
sequentially, with 2 threads, and through ``Extractor`` (a process pool) with 2 workers, start-up
of the pool reported separately.

    python benchmarks/bench_extract.py [CORPUS_DIR]     # or TORQ_NB_CORPUS=/path/to/corpus
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import trafilatura

from torq_nb.research.extract import Extractor, extract
from torq_nb.research.models import Page

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def load_corpus(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(id -> page HTML, id -> true article text)."""
    truth = json.loads((root / "ground-truth.json").read_text(encoding="utf-8"))
    html = {
        key: gzip.decompress((root / "html" / f"{key}.html.gz").read_bytes()).decode("utf-8") for key in truth
    }
    return html, {key: item["articleBody"] for key, item in truth.items()}


def _shingles(text: str) -> Counter[tuple[str, ...]]:
    tokens = re.findall(r"\w+", text)
    return Counter(tuple(tokens[i : i + 4]) for i in range(len(tokens) - 3))


def _page_counts(predicted: str, true: str) -> tuple[float, float, float]:
    pred, gold = _shingles(predicted), _shingles(true)
    tp, fp, fn = sum((pred & gold).values()), sum((pred - gold).values()), sum((gold - pred).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def _ratio(tp: float, other: float) -> float:
    if other == 0:
        return 1.0  # nothing wrong on this side (both texts empty counts as perfect)
    return tp / (tp + other)


def score(predicted: Mapping[str, str | None], truth: Mapping[str, str]) -> tuple[float, float, float]:
    """(precision, recall, F1): macro-averaged per page, F1 from the averages."""
    counts = [_page_counts(predicted.get(key) or "", text) for key, text in truth.items()]
    precision = sum(_ratio(tp, fp) for tp, fp, _ in counts) / len(counts)
    recall = sum(_ratio(tp, fn) for tp, _, fn in counts) / len(counts)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _pages(html: Mapping[str, str]) -> dict[str, Page]:
    return {key: Page(url=f"https://example.org/{key}", status="ok", content_type="text/html", text=body)
            for key, body in html.items()}


def _timed(run: Callable[[], dict[str, str | None]]) -> tuple[dict[str, str | None], float]:
    start = time.perf_counter()
    out = run()
    return out, time.perf_counter() - start


def _text(page: Page) -> str | None:
    doc = extract(page)
    return doc.text if doc else None


async def _through_extractor(extractor: Extractor, pages: Mapping[str, Page]) -> dict[str, str | None]:
    docs = await asyncio.gather(*(extractor.extract(page) for page in pages.values()))
    return {key: doc.text if doc else None for key, doc in zip(pages, docs)}


def main(argv: list[str]) -> None:
    root = Path(argv[1] if len(argv) > 1 else os.environ.get("TORQ_NB_CORPUS", DEFAULT_CORPUS))
    if not (root / "ground-truth.json").is_file():
        sys.exit(f"no corpus at {root}: pass its folder as the first argument or set TORQ_NB_CORPUS")
    html, truth = load_corpus(root)
    pages = _pages(html)
    n = len(pages)
    rows: list[tuple[str, tuple[float, float, float] | None, float, str]] = []

    base, secs = _timed(lambda: {key: trafilatura.extract(body) for key, body in html.items()})
    rows.append(("trafilatura.extract, defaults (baseline)", score(base, truth), n / secs, "1 thread"))
    ours, secs = _timed(lambda: {key: _text(page) for key, page in pages.items()})
    rows.append(("torq_nb extract()", score(ours, truth), n / secs, "1 thread"))
    with ThreadPoolExecutor(2) as threads:
        _, secs = _timed(lambda: dict(zip(pages, threads.map(_text, pages.values()))))
    rows.append(("torq_nb extract(), thread pool", None, n / secs, "2 threads"))

    async def pooled() -> None:
        with Extractor(workers=2) as extractor:
            start = time.perf_counter()
            await extractor.extract(next(iter(pages.values())))
            startup = time.perf_counter() - start
            start = time.perf_counter()
            got = await _through_extractor(extractor, pages)
            secs = time.perf_counter() - start
        rows.append(("torq_nb Extractor (forkserver pool)", score(got, truth), n / secs,
                     f"2 processes; start-up {startup:.2f} s, once"))

    asyncio.run(pooled())

    print(f"{n} pages from {root}\n")
    print("| extraction | precision | recall | F1 | pages/s | how |")
    print("|---|---|---|---|---|---|")
    for name, quality, rate, how in rows:
        p, r, f = (f"{v:.3f}" for v in quality) if quality else ("", "", "")
        print(f"| {name} | {p} | {r} | {f} | {rate:.1f} | {how} |")


if __name__ == "__main__":
    main(sys.argv)
