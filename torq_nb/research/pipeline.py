"""One research run: search → fetch → extract → synthesize, reported to a ProgressTracker.

The pipeline only *reports* to the tracker; it knows nothing of widgets or terminals. Every search hit
ends as exactly one row of the results table: fetched ("ok"), failed ("error", with the reason), not
fetched by design ("snippet", quick depth), or not reached because the run was cancelled ("cancelled").
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from torq_nb.progress.tracker import ProgressTracker
from torq_nb.research.extract import Extractor
from torq_nb.research.fetch import Fetcher, FetchPolicy, store_answers
from torq_nb.research.models import Document, Hit, Page
from torq_nb.research.results import SCHEMA, ResearchResults, counted
from torq_nb.research.sources.base import Source, unique_hits
from torq_nb.research.store import StoreSession
from torq_nb.research.synthesize import QUICK_DEPTH, SourceText, Synthesizer


@dataclass(frozen=True)
class Depth:
    """How much a run does: hits kept, whether pages are fetched, and which query variants are searched."""

    name: str
    limit: int
    fetch: bool
    variants: tuple[str, ...]


#: quick: top 5 hits, snippets only. standard: top 10, fetched and extracted.
#: deep: up to 25 hits from each of three query variants, merged by canonical URL, at most 50, all fetched.
DEPTHS: dict[str, Depth] = {
    "quick": Depth("quick", 5, False, ("{topic}",)),
    "standard": Depth("standard", 10, True, ("{topic}",)),
    "deep": Depth("deep", 50, True, ("{topic}", "{topic} overview", "{topic} history")),
}
_PER_VARIANT = {"quick": 5, "standard": 10, "deep": 25}


def get_depth(depth: str) -> Depth:
    """The Depth named ``depth``; a ValueError lists the valid names."""
    try:
        return DEPTHS[depth]
    except KeyError:
        raise ValueError(f"unknown depth {depth!r}; choose one of {', '.join(DEPTHS)}") from None


#: The longest query sent to a source, in characters: a topic is searched, not read, and search services answer
#: a far longer one (it is URL-encoded into the request line) with a bare HTTP 400 or 414. A source may accept
#: fewer (`Source.max_query_chars`; Wikipedia's search stops at 300).
MAX_QUERY_CHARS = 500


def check_topic(topic: object, depth: Depth, source: Source) -> str:
    """The topic, stripped, if every query of ``depth`` built from it fits ``source``; else a TypeError or
    ValueError that says what is wrong and what to do. Called when a run is made, so at the user's call."""
    if not isinstance(topic, str) or not topic.strip():
        raise (ValueError if isinstance(topic, str) else TypeError)(
            f"topic must be a non-empty string, for example research('solar energy storage'), not {topic!r:.80}"
        )
    text = topic.strip()
    limit = min(MAX_QUERY_CHARS, source.max_query_chars or MAX_QUERY_CHARS)
    added = max(len(variant.format(topic="")) for variant in depth.variants)
    if len(text) + added > limit:
        where = f"a {source.name} search" + (f" at depth {depth.name!r}" if added else "")
        raise ValueError(
            f"topic is {len(text):,} characters long; {where} takes at most {limit - added:,}: "
            "shorten the topic to the words that matter (it is searched, not read)"
        )
    return text


class ResearchCancelled(asyncio.CancelledError):
    """The run was cancelled; ``results`` holds what it had gathered (unreached hits are "cancelled" rows)."""

    def __init__(self, results: ResearchResults) -> None:
        done = results.df.filter(pl.col("status") == "ok").height
        pages = "1 page" if done == 1 else f"{done} pages"
        super().__init__(
            f"research on {results.topic!r} cancelled after reading {pages}; the partial results are this "
            "exception's .results (`except torq_nb.ResearchCancelled as stopped: stopped.results`)"
        )
        self.results = results

    def _render_traceback_(self) -> list[str]:
        """IPython shows a cancel the user asked for as its message alone, not as a crash."""
        return [f"\x1b[0;33m{type(self).__name__}\x1b[0m: {self}"]


def _domain(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:  # the fetch reports it as an invalid URL
        return None
    if not host:
        return None
    return host.removeprefix("www.")


def _row(rank: int, hit: Hit, status: str, page: Page | None = None, doc: Document | None = None,
         error: str | None = None, cached: bool = False) -> dict[str, Any]:
    return {
        "rank": rank,
        "title": (doc.title if doc and doc.title else None) or hit.title,
        "url": hit.url,
        "domain": _domain(hit.url),
        "snippet": hit.snippet,
        "content": doc.text if doc else None,
        "word_count": doc.word_count if doc else None,
        "published": (doc.published if doc else None) or hit.published,
        "author": doc.author if doc else None,
        "source": hit.source,
        "score": hit.score,
        "status": status,
        "error": error or (page.error if page else None),
        "http_status": page.http_status if page else None,
        "fetched_at": page.fetched_at if page else None,
        "elapsed_ms": page.elapsed_ms if page else None,
        "cached": cached,
    }


def _cancelled_row(rank: int, hit: Hit) -> dict[str, Any]:
    return _row(rank, hit, "cancelled", error="run cancelled before this page was read")


#: Receives each row of a run as it is finished (ok, error, snippet or cancelled): a plain dict, SCHEMA's keys in
#: its order. Called in the run's event loop; it should return quickly.
RowCallback = Callable[[dict[str, Any]], object]


class Run:
    """The state of one run, kept so that a cancelled run can still hand back its partial results.

    ``on_row`` is told each row as it is finished, so a caller can keep them as the run goes (stream_to)."""

    def __init__(self, topic: str, depth: Depth, source: Source, tracker: ProgressTracker,
                 on_row: RowCallback | None = None) -> None:
        self.topic, self.depth, self.source, self.tracker = check_topic(topic, depth, source), depth, source, tracker
        self.on_row = on_row
        self.hits: list[Hit] = []
        self.rows: dict[int, dict[str, Any]] = {}
        self.summary = ""
        #: Hits that came from a stored search answer (their rows say cached when nothing else was fetched).
        self.stored_hits: set[Hit] = set()

    def finish(self, rank: int, row: dict[str, Any]) -> None:
        """Record hit ``rank``'s final row and hand it to ``on_row``."""
        self.rows[rank] = row
        if self.on_row is not None:
            self.on_row(row)

    def stop(self) -> None:
        """Finish every hit not reached as a "cancelled" row: the run is being cancelled."""
        for rank, hit in enumerate(self.hits, start=1):
            if rank not in self.rows:
                self.finish(rank, _cancelled_row(rank, hit))

    def results(self) -> ResearchResults:
        """The results as they stand: rows not finished yet are marked "cancelled"."""
        rows = [self.rows.get(rank) or _cancelled_row(rank, hit) for rank, hit in enumerate(self.hits, start=1)]
        status = self.tracker.status()
        counts = {name: sum(1 for row in rows if row["status"] == name) for name in ("ok", "error", "snippet", "cancelled")}
        return ResearchResults(
            topic=self.topic,
            df=pl.DataFrame(rows, schema=SCHEMA),
            summary=self.summary,
            depth=self.depth.name,
            source=self.source.name,
            operation_id=self.tracker.operation_id,
            progress=status,
            metadata={"started_at": status.started_at, "duration": status.duration, "pages": counts},
        )


async def _search_one(run: Run, query: str, limit: int, fetcher: Fetcher, store: StoreSession) -> list[Hit]:
    """One query's hits: a fresh stored answer, else the source's (then kept)."""
    stored = await store.search(run.source, query, limit)
    if stored is not None:
        run.stored_hits.update(stored)
        return stored
    hits = await run.source.search(query, limit, fetcher)
    await store.save_search(run.source, query, limit, hits)
    return hits


async def _search(run: Run, fetcher: Fetcher, store: StoreSession) -> list[Hit]:
    per_variant = _PER_VARIANT[run.depth.name]
    queries = [variant.format(topic=run.topic) for variant in run.depth.variants]
    batches = await asyncio.gather(*(_search_one(run, query, per_variant, fetcher, store) for query in queries))
    # Interleave the variants' rankings so each contributes its best hits first.
    longest = max((len(batch) for batch in batches), default=0)
    merged = [batch[i] for i in range(longest) for batch in batches if i < len(batch)]
    return unique_hits(merged, run.depth.limit)


async def _fetch(run: Run, hit: Hit, fetcher: Fetcher, store: StoreSession) -> tuple[Page, bool]:
    """The hit's page, and whether the store gave it. The Fetcher keeps web pages; a page a source makes from its
    API (its own ``fetch``, as Wikipedia's extracts) is kept here, by source and hit, once the source judged it ok."""
    own = type(run.source).fetch is not Source.fetch
    if own and (stored := await store.source_page(run.source, hit.url)) is not None:
        return stored, True
    with store_answers() as answers:
        page = await run.source.fetch(hit, fetcher)
    if own and page.status == "ok":
        await store.save_source_page(run.source, hit.url, page)
    return page, bool(answers) and all(answers)


async def _read(run: Run, rank: int, hit: Hit, fetcher: Fetcher, extractor: Extractor, store: StoreSession) -> None:
    if hit.content is not None:
        page = Page(hit.url, "ok", final_url=hit.url, content_type=hit.content_type, text=hit.content,
                    fetched_at=datetime.now(timezone.utc), elapsed_ms=0.0)
        cached = hit in run.stored_hits
    else:
        page, cached = await _fetch(run, hit, fetcher, store)
    if page.status != "ok":
        run.finish(rank, _row(rank, hit, "error", page, cached=cached))
        return
    doc = await store.document(page, extractor.extract)
    if doc is None or not doc.text.strip():
        run.finish(rank, _row(rank, hit, "error", page, error="no readable text in the page", cached=cached))
    else:
        run.finish(rank, _row(rank, hit, "ok", page, doc, cached=cached))


async def _read_all(run: Run, fetcher: Fetcher, extractor: Extractor, store: StoreSession) -> None:
    tasks = {asyncio.ensure_future(_read(run, rank, hit, fetcher, extractor, store)): hit
             for rank, hit in enumerate(run.hits, start=1)}
    run.tracker.update(0, total=len(tasks), message=f"reading {len(tasks)} pages")
    try:
        for done, finished in enumerate(asyncio.as_completed(list(tasks)), start=1):
            await finished
            run.tracker.update(done, message=f"read {done} of {len(tasks)} pages")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_research(
    run: Run,
    *,
    policy: FetchPolicy,
    extractor: Extractor,
    synthesizer: Synthesizer,
    fetcher: Fetcher | None = None,
    store: StoreSession | None = None,
) -> ResearchResults:
    """Carry out ``run`` and return its results.

    A failed search fails the run (the SourceError propagates, the tracker records it); a failed page is
    a row. On cancellation the tracker is marked cancelled and ResearchCancelled carries the partial results.
    ``fetcher``: an open Fetcher shared with other runs (a batch: one fetch budget, so its concurrency and
    per-host limits hold across its topics); the run uses it and leaves it open. Without one the run opens its own
    under ``policy``.
    ``store``: where searches, pages and extracted texts are looked up and kept, and the finished run saved
    (a shared ``fetcher`` must have been made with the same StoreSession to read pages from it).
    """
    tracker = run.tracker
    store = store if store is not None else StoreSession(None)
    try:
        tracker.progress("initializing", f"{run.depth.name} research on {run.source.name}")
        if run.depth.fetch:  # start the extraction workers while the search runs
            threading.Thread(target=extractor.warm_up, name="torq_nb-extractor-warm-up", daemon=True).start()
        async with nullcontext(fetcher) if fetcher is not None else Fetcher(policy, store=store) as active:
            tracker.progress("searching", f"searching {run.source.name} for {run.topic!r}")
            run.hits = await _search(run, active, store)
            tracker.progress("extracting", counted(len(run.hits), "hit"))
            if run.depth.fetch:
                await _read_all(run, active, extractor, store)
            else:
                for rank, hit in enumerate(run.hits, start=1):
                    run.finish(rank, _row(rank, hit, "snippet", cached=hit in run.stored_hits))
        if run.depth.fetch:
            tracker.progress("synthesizing", "writing the cited summary")
            texts = [
                SourceText(rank, row["title"] or row["url"], row["url"], row["content"])
                for rank, row in sorted(run.rows.items())
                if row["status"] == "ok"
            ]
            summary = await store.summary(synthesizer, run.topic, texts)  # the same texts were summarised before
            if summary is None:
                summary = await synthesizer.synthesize(run.topic, texts)
                await store.save_summary(synthesizer, run.topic, texts, summary)
            run.summary = summary
        else:
            tracker.progress("synthesizing", "no pages to summarise at quick depth")
            run.summary = QUICK_DEPTH
    except (asyncio.CancelledError, KeyboardInterrupt):
        run.stop()
        tracker.cancel("cancelled")
        raise ResearchCancelled(run.results()) from None
    except BaseException as error:
        tracker.fail(error)
        raise
    tracker.complete(counted(len(run.hits), "hit"))
    results = run.results()
    await store.save_run(results)  # a store that cannot be written is a warning: the results are still returned
    return results
