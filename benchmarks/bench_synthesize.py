"""Summary quality and speed on the article corpus: today's synthesizer (the baseline) beside the current one.

For every corpus article whose URL slug names its subject (three or more words, as bench_extract.py picks
them), the slug's words are the topic. Each topic is researched for real — ``WebSearchProvider`` at depth
"deep" (up to 50 pages) against the loopback SearXNG of tests/fake_search.py serving the whole corpus — and
the pages the run read are handed to both synthesizers, so they summarise exactly the same sources.

Scores per summary, averaged over topics (a topic whose summary is empty counts in "topics with a summary"
only):

- on-topic share: summary sentences citing an article the topic names (the slug's own article, and any
  other whose slug shares at least two content words with it, and either three or half of the shorter
  slug's); "strict" counts the slug's own article only. The loopback search ranks pages by raw term
  counts, so for some long topics no named article is among the pages read: there the right summary is
  the "not covered" note, and the table counts those refusals apart from refusals with a named page read;
- self-contained share: sentences that are not a question, a list fragment or a line without closing
  punctuation, and do not open with a pronoun or connective unless the sentence before it in the summary is
  the one before it on the page. The rules here are written independently of the synthesizer's;
- pairs over 0.5: pairs of summary sentences whose word 3-shingles overlap by more than half of the
  smaller sentence's shingles (containment, stricter than Jaccard);
- sentences per summary, and milliseconds per summary on the deep runs' sources (at most 50 pages), the two
  synthesizers alternating topic by topic.

The baseline is the synthesizer of commit 0470e1a (the last before issue 12), loaded from git.

    python benchmarks/bench_synthesize.py [CORPUS_DIR] [--limit N] [--depth deep] [--show TOPIC ...]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import pickle
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from fake_search import SearchServer, load_pages  # noqa: E402

from torq_nb.research.fetch import FetchPolicy  # noqa: E402
from torq_nb.research.provider import WebSearchProvider  # noqa: E402
from torq_nb.research.sources import SearXNG  # noqa: E402
from torq_nb.research.synthesize import ExtractiveSynthesizer, SourceText, split_sentences  # noqa: E402

BASELINE_COMMIT = "0470e1a"
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
_WORD = re.compile(r"\w+")
_STOP = frozenset(
    "a an and are as at be by for from has have how in is it its of on or so that the this to was were what "
    "when where which who why will with you your".split()
)
# Openers that need the sentence before them: pronouns, demonstratives and connectives.
_DANGLING = frozenset(
    "he she it they him her his hers its their theirs them this that these those such also but and or so yet "
    "however meanwhile moreover furthermore additionally instead still thus therefore hence then nevertheless "
    "nonetheless besides otherwise consequently accordingly similarly likewise both another later afterwards "
    "here".split()
)
_SUMMARY_SENTENCE = re.compile(r"(?<=\][.!?…。！？])\s+")
_CITES = re.compile(r"\s*((?:\[\d+\])+)([.!?…。！？])$")


def baseline_module() -> ModuleType:
    """torq_nb/research/synthesize.py as it was at BASELINE_COMMIT, imported under another name."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BASELINE_COMMIT}:torq_nb/research/synthesize.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = importlib.util.spec_from_loader("baseline_synthesize", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    exec(compile(source, f"{BASELINE_COMMIT}:synthesize.py", "exec"), module.__dict__)
    return module


def slug_words(url: str) -> list[str]:
    slug = re.sub(r"\.\w+$", "", url.rstrip("/").rsplit("/", 1)[-1])
    return [w for w in re.split(r"[-_]+", slug) if w.isalpha()]


def content_words(words: Sequence[str]) -> set[str]:
    """Lowercase slug words without function words, a final "s" dropped ("companies" ~ "companie")."""
    return {w.lower().removesuffix("s") for w in words if w.lower() not in _STOP and len(w) > 1}


def named_articles(key: str, slugs: dict[str, list[str]]) -> set[str]:
    """The article itself, and every article whose slug shares the subject (see the module docstring)."""
    mine = content_words(slugs[key])
    named = {key}
    for other, words in slugs.items():
        theirs = content_words(words)
        shared = len(mine & theirs)
        if shared >= 2 and (shared >= 3 or shared >= 0.5 * min(len(mine), len(theirs))):
            named.add(other)
    return named


def shingles(text: str) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + 3]) for i in range(max(1, len(words) - 2))}


def summary_sentences(summary: str) -> list[tuple[str, list[int]]]:
    """(sentence without its citation, cited ranks) for each sentence of a summary."""
    found = []
    for piece in _SUMMARY_SENTENCE.split(summary.strip()):
        match = _CITES.search(piece)
        if not match:
            continue  # "not covered" and "no sources" notes cite nothing
        body = piece[: match.start()] + ("" if match.group(2) == "." else match.group(2))
        found.append((body.strip(), [int(n) for n in re.findall(r"\d+", match.group(1))]))
    return found


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def self_contained(
    sentences: list[tuple[str, list[int]]], page_sentences: dict[int, list[str]]
) -> list[bool]:
    """For each summary sentence, whether it reads on its own (the rules in the module docstring)."""
    verdicts = []
    for i, (body, ranks) in enumerate(sentences):
        lines = page_sentences.get(ranks[0], [])
        norms = [_norm(line) for line in lines]
        # The synthesizer may drop a news dateline ("WASHINGTON (AP) — "): the page's sentence ends with the body.
        position = next((j for j, n in enumerate(norms) if n.endswith(_norm(body))), -1)
        original = lines[position] if position >= 0 else body
        words = _WORD.findall(body)
        first = words[0].lower() if words else ""
        ok = not (
            original.rstrip().endswith("?")
            or re.match(r"^\s*(?:[-*•–—]|\d{1,3}[.)])\s", original)
            or not re.search(r"[.!。！…][\"'”’»)\]]*\s*$", original.rstrip())
        )
        if ok and (first in _DANGLING or first in {"it's", "that's"}):
            previous = sentences[i - 1] if i else None
            ok = bool(
                previous
                and previous[1][0] == ranks[0]
                and position > 0
                and norms[position - 1].endswith(_norm(previous[0]))
            )
        verdicts.append(ok)
    return verdicts


def score(
    summary: str, sources: Sequence[SourceText], page_of: dict[str, str], named: set[str]
) -> dict[str, float] | None:
    sentences = summary_sentences(summary)
    if not sentences:
        return None
    by_rank = {s.rank: s for s in sources}
    page_sentences = {s.rank: split_sentences(s.text) for s in sources}
    on_topic = [any(page_of.get(by_rank[r].url) in named for r in ranks) for _, ranks in sentences]
    contained = self_contained(sentences, page_sentences)
    sets = [shingles(body) for body, _ in sentences]
    overlaps = sum(
        1
        for i in range(len(sets))
        for j in range(i + 1, len(sets))
        if len(sets[i] & sets[j]) > 0.5 * min(len(sets[i]), len(sets[j]))
    )
    return {
        "on_topic": sum(on_topic) / len(on_topic),
        "self_contained": sum(contained) / len(contained),
        "overlaps": float(overlaps),
        "sentences": float(len(sentences)),
    }


class Recorder:
    """A synthesizer that keeps what it was given (the pages a run read) and writes nothing."""

    def __init__(self) -> None:
        self.sources: list[SourceText] = []

    async def synthesize(self, topic: str, sources: Sequence[SourceText]) -> str:
        self.sources = list(sources)
        return ""


async def gather_sources(topics: list[str], corpus: Path, depth: str) -> tuple[list[list[SourceText]], str]:
    """The pages each topic's research read, and the URL prefix of the loopback pages."""
    recorder = Recorder()
    policy = FetchPolicy(allow_private_networks=True, per_host=16)
    async with SearchServer(load_pages(corpus)) as server:
        # No run store: every topic is searched and its pages fetched afresh, and no stored summary stands in.
        provider = WebSearchProvider(SearXNG(server.searxng_url), policy=policy, synthesizer=recorder, store=None)
        found = []
        for topic in topics:
            await provider.research_topic_with_progress(topic, depth=depth)
            found.append(recorder.sources)
        return found, f"{server.url}/pages/"


def fifty_pages(index: int, sources: list[list[SourceText]], size: int = 50) -> list[SourceText]:
    """This topic's pages, then other topics' pages, up to ``size`` distinct pages numbered 1..size."""
    seen: dict[str, SourceText] = {}
    for other in sources[index:] + sources[:index]:
        for source in other:
            seen.setdefault(source.url, source)
            if len(seen) == size:
                break
        if len(seen) == size:
            break
    return [SourceText(rank, s.title, s.url, s.text) for rank, s in enumerate(seen.values(), start=1)]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", nargs="?", default=os.environ.get("TORQ_NB_CORPUS", str(DEFAULT_CORPUS)))
    parser.add_argument("--depth", default="deep", choices=["standard", "deep"])
    parser.add_argument("--limit", type=int, default=None, help="only the first N topics")
    parser.add_argument("--timing-topics", type=int, default=60, help="topics timed at 50 pages (each synthesizer)")
    parser.add_argument("--cache", type=Path, default=None, help="keep the researched pages in this file")
    parser.add_argument("--show", nargs="*", default=[], help="print both summaries of these topics")
    args = parser.parse_args(argv[1:])
    root = Path(args.corpus)
    if not (root / "ground-truth.json").is_file():
        sys.exit(f"no corpus at {root}: pass its folder as the first argument or set TORQ_NB_CORPUS")
    truth = json.loads((root / "ground-truth.json").read_text(encoding="utf-8"))
    slugs = {key: slug_words(item["url"]) for key, item in sorted(truth.items())}
    cases = [(key, " ".join(words)) for key, words in slugs.items() if len(words) >= 3][: args.limit]
    extra = [t for t in args.show if t not in {topic for _, topic in cases}]
    topics = [topic for _, topic in cases] + extra

    started = time.perf_counter()
    cached: dict[str, Any] = {}
    if args.cache and args.cache.exists():
        cached = pickle.loads(args.cache.read_bytes())
    if cached.get("topics") == topics and cached.get("depth") == args.depth:
        sources, prefix = cached["sources"], cached["prefix"]
    else:
        sources, prefix = asyncio.run(gather_sources(topics, root, args.depth))
        if args.cache:
            args.cache.write_bytes(
                pickle.dumps({"topics": topics, "depth": args.depth, "sources": sources, "prefix": prefix})
            )
    research_seconds = time.perf_counter() - started
    page_of = {f"{prefix}{key}.html": key for key in truth}

    synthesizers = {"baseline (0470e1a)": baseline_module().ExtractiveSynthesizer(), "new": ExtractiveSynthesizer()}
    for synth in synthesizers.values():  # first calls pay for imports (bm25s, scipy)
        synth.summarize("warm up", sources[0][:3])
    scores: dict[str, list[dict[str, float]]] = {name: [] for name in synthesizers}
    refusals: dict[str, list[bool]] = {name: [] for name in synthesizers}  # True: a named article was read
    summaries: dict[str, dict[str, str]] = {name: {} for name in synthesizers}
    read_named = []
    for index, topic in enumerate(topics):
        named = named_articles(cases[index][0], slugs) if index < len(cases) else set()
        strict = {cases[index][0]} if index < len(cases) else set()
        if index < len(cases):
            read_named.append(any(page_of.get(s.url) in named for s in sources[index]))
        for name, synth in synthesizers.items():
            summary = synth.summarize(topic, sources[index])
            summaries[name][topic] = summary
            if index >= len(cases):
                continue
            result = score(summary, sources[index], page_of, named)
            if result is None:
                refusals[name].append(read_named[-1])
                continue
            result["strict"] = score(summary, sources[index], page_of, strict)["on_topic"]  # type: ignore[index]
            result["read_named"] = float(read_named[-1])
            scores[name].append(result)

    millis: dict[str, list[float]] = {name: [] for name in synthesizers}
    for index in range(min(args.timing_topics, len(cases))):  # the two alternate, so load hits them alike
        given = fifty_pages(index, sources)
        for name, synth in synthesizers.items():
            begun = time.perf_counter()
            synth.summarize(topics[index], given)
            millis[name].append(1000 * (time.perf_counter() - begun))

    pages = [len(s) for s in sources[: len(cases)]]
    load = os.getloadavg()
    print(
        f"{len(cases)} topics (URL slugs of {root}), depth {args.depth}: {min(pages)}–{max(pages)} pages read "
        f"per topic, mean {statistics.mean(pages):.1f}; a named article among them for {sum(read_named)} topics; "
        f"research took {research_seconds:.0f} s; {os.cpu_count()} CPUs, load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n"
    )
    print(
        "| synthesizer | summaries | on-topic share | on-topic, strict | on-topic, named article read "
        "| self-contained share | pairs over 0.5 | sentences per summary | \"not covered\" (none read / one read) "
        f"| ms per summary at 50 pages (mean, max of {len(millis['new'])}) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in synthesizers:
        rows = scores[name]
        readable = [r for r in rows if r["read_named"]]

        def mean(field: str, rows: list[dict[str, float]] = rows) -> float:
            return statistics.mean(r[field] for r in rows) if rows else float("nan")

        print(
            f"| {name} | {len(rows)} | {mean('on_topic'):.3f} | {mean('strict'):.3f} "
            f"| {mean('on_topic', readable):.3f} ({len(readable)}) | {mean('self_contained'):.3f} "
            f"| {sum(r['overlaps'] for r in rows):.0f} | {mean('sentences'):.1f} "
            f"| {refusals[name].count(False)} / {refusals[name].count(True)} "
            f"| {statistics.mean(millis[name]):.0f}, {max(millis[name]):.0f} |"
        )
    for topic in args.show:
        for name in synthesizers:
            print(f"\n--- {name}: {topic!r}\n{summaries[name][topic]}")


if __name__ == "__main__":
    main(sys.argv)
