"""Extraction quality and speed on the article corpus, against trafilatura alone; sentence ranking for synthesis.

Quality: F1 over 4-token shingles exactly as the corpus README defines it (\\w+ tokens, per-page
true/false positives and false negatives as multisets normalised to sum to 1, precision and
recall macro-averaged over pages, F1 from the two averages). Speed: pages per second
sequentially, with 2 threads, and through ``Extractor`` (a process pool) with 2 workers, start-up
of the pool reported separately.

Sentence ranking (how ExtractiveSynthesizer picks sentences): for every article whose URL has a
descriptive slug, the slug's words are the topic and the candidates are the sentences of that
article plus those of the next 9 articles; precision@8 is the share of the 8 best-scored
sentences that come from the article itself. BM25 (bm25s, what the synthesizer uses) beside
TF-IDF cosine and the unranked order.

    python benchmarks/bench_extract.py [CORPUS_DIR] [--repeat 3]     # or TORQ_NB_CORPUS=/path/to/corpus
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import math
import os
import random
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
from torq_nb.research.synthesize import (
    _bm25_scores,
    _Sentence,
    _shingles,
    split_sentences,
)

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def load_corpus(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(id -> page HTML, id -> true article text)."""
    truth = json.loads((root / "ground-truth.json").read_text(encoding="utf-8"))
    html = {
        key: gzip.decompress((root / "html" / f"{key}.html.gz").read_bytes()).decode("utf-8") for key in truth
    }
    return html, {key: item["articleBody"] for key, item in truth.items()}


def _four_shingles(text: str) -> Counter[tuple[str, ...]]:
    tokens = re.findall(r"\w+", text)
    return Counter(tuple(tokens[i : i + 4]) for i in range(len(tokens) - 3))


def _page_counts(predicted: str, true: str) -> tuple[float, float, float]:
    pred, gold = _four_shingles(predicted), _four_shingles(true)
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
    return {
        key: Page(url=f"https://example.org/{key}", status="ok", content_type="text/html", text=body)
        for key, body in html.items()
    }


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


def _tfidf_scores(topic: str, sentences: list[_Sentence]) -> list[float]:
    """Cosine between TF-IDF vectors of the topic and each sentence: the comparison for BM25."""
    bags = [Counter(re.findall(r"\w\w+", s.text.lower())) for s in sentences]
    df = Counter(word for bag in bags for word in bag)
    idf = {word: math.log(len(bags) / n) + 1 for word, n in df.items()}
    query = {w: idf[w] for w in set(re.findall(r"\w\w+", topic.lower())) if w in idf}
    scores = []
    for bag in bags:
        norm = math.sqrt(sum((tf * idf[w]) ** 2 for w, tf in bag.items())) or 1.0
        scores.append(sum(bag.get(w, 0) * idf[w] * q for w, q in query.items()) / norm)
    return scores


def ranking_rows(truth: Mapping[str, str], urls: Mapping[str, str]) -> list[tuple[str, float, float]]:
    """(method, mean precision@8, milliseconds per topic) over articles with a descriptive URL slug."""
    keys = sorted(truth)
    cases = []
    for i, key in enumerate(keys):
        slug = re.sub(r"\.\w+$", "", urls[key].rstrip("/").rsplit("/", 1)[-1])
        words = [w for w in re.split(r"[-_]+", slug) if w.isalpha()]
        if len(words) < 3:
            continue
        pool = [
            _Sentence(rank=j, position=pos, text=text, shingles=_shingles(text))
            for j, other in enumerate(keys[i : i + 10] + keys[: max(0, i + 10 - len(keys))])
            for pos, text in enumerate(split_sentences(truth[other]))
        ]
        random.Random(i).shuffle(pool)  # ties and the unranked baseline must not favour the article
        cases.append((" ".join(words), pool))
    methods: dict[str, Callable[[str, list[_Sentence]], list[float]]] = {
        "BM25 (bm25s), used": lambda topic, pool: _bm25_scores(topic, pool),
        "TF-IDF cosine": _tfidf_scores,
        "unranked (shuffled)": lambda topic, pool: [0.0] * len(pool),
    }
    rows = []
    for name, scorer in methods.items():
        hits, start = 0.0, time.perf_counter()
        for topic, pool in cases:
            scores = scorer(topic, pool)
            best = sorted(range(len(pool)), key=lambda i: -scores[i])[:8]
            hits += sum(pool[i].rank == 0 for i in best) / len(best)
        rows.append((name, hits / len(cases), 1000 * (time.perf_counter() - start) / len(cases)))
    return rows


async def _pool_startup(first: Page) -> float:
    """Seconds from a new Extractor to its first extracted page."""
    start = time.perf_counter()
    with Extractor(workers=2) as extractor:
        await extractor.extract(first)
        return time.perf_counter() - start


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("corpus", nargs="?", default=os.environ.get("TORQ_NB_CORPUS", str(DEFAULT_CORPUS)))
    parser.add_argument("--repeat", type=int, default=3, help="speed rounds; the best of each is shown")
    args = parser.parse_args(argv[1:])
    root = Path(args.corpus)
    if not (root / "ground-truth.json").is_file():
        sys.exit(f"no corpus at {root}: pass its folder as the first argument or set TORQ_NB_CORPUS")
    html, truth = load_corpus(root)
    urls = {
        k: v["url"] for k, v in json.loads((root / "ground-truth.json").read_text(encoding="utf-8")).items()
    }
    pages = _pages(html)
    first = next(iter(pages.values()))
    n = len(pages)

    startups = [asyncio.run(_pool_startup(first)) for _ in range(2)]  # the first also starts the fork server
    extractor = Extractor(workers=2)
    asyncio.run(extractor.extract(first))
    threads = ThreadPoolExecutor(2)
    runs: dict[str, Callable[[], dict[str, str | None]]] = {
        "baseline": lambda: {key: trafilatura.extract(body) for key, body in html.items()},
        "ours": lambda: {key: _text(page) for key, page in pages.items()},
        "threads": lambda: dict(zip(pages, threads.map(_text, pages.values()))),
        "pool": lambda: asyncio.run(_through_extractor(extractor, pages)),
    }
    best: dict[str, float] = {}
    outputs: dict[str, dict[str, str | None]] = {}
    for _ in range(args.repeat):  # alternate the methods so background load hits them alike
        for name, run in runs.items():
            outputs[name], secs = _timed(run)
            best[name] = max(best.get(name, 0.0), n / secs)
    extractor.close()
    threads.shutdown()

    print(
        f"{n} pages from {root}; speed is the best of {args.repeat} rounds; 2 CPUs, load average "
        f"{os.getloadavg()[0]:.1f}\n"
    )
    print("| extraction | precision | recall | F1 | pages/s | how |")
    print("|---|---|---|---|---|---|")
    pool_how = (
        f"2 processes (forkserver); start-up {startups[0]:.2f} s for the first pool in a process, "
        f"{startups[1]:.2f} s for later ones"
    )
    rows = [
        ("trafilatura.extract, defaults (baseline)", "baseline", "1 thread"),
        ("torq_nb extract()", "ours", "1 thread"),
        ("torq_nb extract(), thread pool", "threads", "2 threads"),
        (
            "torq_nb Extractor",
            "pool",
            pool_how,
        ),
    ]
    for label, name, how in rows:
        p, r, f = (f"{v:.3f}" for v in score(outputs[name], truth))
        print(f"| {label} | {p} | {r} | {f} | {best[name]:.1f} | {how} |")

    ranking = ranking_rows(truth, urls)
    print("\nSentence ranking for synthesis (topic = URL slug words, candidates = 10 articles' sentences)\n")
    print("| ranking | precision@8 | ms per topic |")
    print("|---|---|---|")
    for name, precision, ms in ranking:
        print(f"| {name} | {precision:.3f} | {ms:.1f} |")


if __name__ == "__main__":
    main(sys.argv)
