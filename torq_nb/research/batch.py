"""Research many topics at once: ``research_many``, ``start_research_many`` and ``BatchResults``.

A batch runs its topics concurrently (at most ``concurrency`` at a time) over ONE fetch budget: one
Fetcher, so the policy's total concurrency, per-host limits and robots.txt cache hold across all topics
together, and a search engine or site shared by many topics sees no more requests at once than one run
would send it (a Retry-After delays the request it answered, as in one run). A topic that fails (its search refused, its source down) is that topic's status, with the
reason; the batch goes on. One BatchTracker reports the batch (one widget, one terminal line).

With ``executor=`` a ``dask.distributed.Client``, the topics run on the cluster's workers in chunks: each
running chunk holds its own Fetcher (so a worker thread fetches under one budget at a time) and extracts
in-process (Dask workers are daemon processes: no process pool inside them). Each topic's stages travel
back to the notebook as Dask events (``Worker.log_event``, at most four per second per topic, plus its
end), so the batch widget shows every topic live; results come back with each chunk.
"""

from __future__ import annotations

import asyncio
import string
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from torq_nb.api import DepthName, _takes_parameters_of
from torq_nb.progress.batch import BatchTracker, batch_line
from torq_nb.research.calls import raised_at_the_call
from torq_nb.research.extract import Extractor, extract, shared_extractor
from torq_nb.research.fetch import Fetcher, FetchPolicy
from torq_nb.research.interrupts import ctrl_c_noted
from torq_nb.research.jobs import CANCEL_GRACE, ResearchJob
from torq_nb.research.models import Document, Page
from torq_nb.research.pipeline import ResearchCancelled, get_depth, run_research
from torq_nb.research.provider import WebSearchProvider
from torq_nb.research.results import SCHEMA, ResearchResults, counted
from torq_nb.research.sources import SourceError
from torq_nb.research.store import DEFAULT_MAX_AGE, DEFAULT_STORE

if TYPE_CHECKING:
    import os
    from datetime import timedelta

    from torq_nb.research.sources import Source
    from torq_nb.research.store import StoreArgument
    from torq_nb.research.synthesize import Synthesizer

__all__ = ["BatchCancelled", "BatchJob", "BatchResults", "TopicStatus", "research_many", "start_research_many"]

TopicStatus = Literal["complete", "failed", "cancelled"]
BatchCallback = Callable[[dict[str, Any]], object]
#: Receives each row of a batch as it is finished: the topic, and the row (a dict in SCHEMA's order).
RowSink = Callable[[str, dict[str, Any]], None]
#: The columns of BatchResults.df (and of a batch's stream_to file): ``topic``, then ResearchResults.df's.
BATCH_SCHEMA: dict[str, pl.DataType] = {"topic": pl.String(), **SCHEMA}

#: Topics researched at once when ``concurrency`` is not given (the fetch budget bounds requests anyway).
DEFAULT_CONCURRENCY = 8
#: Chunks per worker thread on Dask: enough to balance the load, few enough that each carries many topics.
_CHUNKS_PER_THREAD = 4
#: A worker sends a topic's progress at most this often (seconds), besides its stage changes and its end.
_WORKER_PROGRESS_INTERVAL = 0.25
_NOT_STARTED = "the batch was cancelled before this topic started"


class BatchCancelled(asyncio.CancelledError):
    """The batch was interrupted; ``results`` holds every topic reached so far (the rest are "cancelled")."""

    def __init__(self, results: BatchResults) -> None:
        done = results.summaries.filter(pl.col("status") == "complete").height
        super().__init__(f"research_many cancelled after {done} of {len(results)} topics; see .results")
        self.results = results


@dataclass
class _Outcome:
    """How one topic ended: its status, why (if it failed or stopped), and its results (None if failed)."""

    status: TopicStatus
    query: str
    results: ResearchResults | None = None
    reason: str | None = None

    def counts(self) -> tuple[int, int]:
        """(pages read, pages failed)."""
        if self.results is None:
            return 0, 0
        status = self.results.df.get_column("status")
        return int((status == "ok").sum()), int((status == "error").sum())


# --------------------------------------------------------------------- results


@dataclass(repr=False)
class BatchResults:
    """What a batch produced: every topic's results, status and reason.

    ``df`` is every row of every topic (the documented SCHEMA after a leading ``topic`` column);
    ``summaries`` one row per topic; ``errors`` every failure (failed topics and failed pages);
    ``results["topic"]`` that topic's ResearchResults; ``export(path)`` one report or one table.
    """

    topics: list[str]
    outcomes: dict[str, _Outcome]
    depth: str = "standard"
    source: str = ""
    operation_id: str = ""
    progress: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def _outcome(self, topic: str) -> _Outcome:
        return self.outcomes.get(topic) or _Outcome("cancelled", topic, reason=_NOT_STARTED)

    @cached_property
    def df(self) -> pl.DataFrame:
        """Every row of every topic, in topic order: ``topic`` then the columns of ResearchResults.df."""
        frames = [
            outcome.results.df.select(pl.lit(topic, pl.String).alias("topic"), pl.all())
            for topic in self.topics
            if (outcome := self._outcome(topic)).results is not None and outcome.results.df.height
        ]
        if not frames:
            return pl.DataFrame(schema=BATCH_SCHEMA)
        return pl.concat(frames, how="diagonal_relaxed")

    @cached_property
    def summaries(self) -> pl.DataFrame:
        """One row per topic: topic, query, status, pages_read, pages_failed, hits, summary, reason."""
        rows = []
        for topic in self.topics:
            outcome = self._outcome(topic)
            read, failed = outcome.counts()
            rows.append({
                "topic": topic,
                "query": outcome.query,
                "status": outcome.status,
                "pages_read": read,
                "pages_failed": failed,
                "hits": outcome.results.df.height if outcome.results is not None else 0,
                "summary": outcome.results.summary if outcome.results is not None else "",
                "reason": outcome.reason,
            })
        schema = {"topic": pl.String(), "query": pl.String(), "status": pl.String(), "pages_read": pl.Int32(),
                  "pages_failed": pl.Int32(), "hits": pl.Int32(), "summary": pl.String(), "reason": pl.String()}
        return pl.DataFrame(rows, schema=schema)

    @property
    def errors(self) -> pl.DataFrame:
        """Every failure: a failed topic (rank and url null, its reason) or a failed page of a topic."""
        topics = self.summaries.filter(pl.col("status") == "failed").select(
            "topic", pl.lit(None, pl.Int32).alias("rank"), pl.lit(None, pl.String).alias("url"),
            pl.lit(None, pl.Int32).alias("http_status"), pl.col("reason").alias("error"))
        pages = self.df.filter(pl.col("status") == "error").select("topic", "rank", "url", "http_status", "error")
        return pl.concat([topics, pages])

    def __getitem__(self, topic: str) -> ResearchResults:
        """That topic's ResearchResults (a cancelled topic's are partial); KeyError for a failed or unknown topic."""
        outcome = self.outcomes.get(topic)
        if outcome is None and topic not in self.topics:
            raise KeyError(f"{topic!r} is not a topic of this batch")
        if outcome is None or outcome.results is None:
            reason = outcome.reason if outcome is not None else _NOT_STARTED
            raise KeyError(f"{topic!r} has no results: {reason}; see .summaries")
        return outcome.results

    def get(self, topic: str) -> ResearchResults | None:
        """That topic's results, or None if it failed, never started or is not in the batch."""
        try:
            return self[topic]
        except KeyError:
            return None

    def __len__(self) -> int:
        return len(self.topics)

    def __iter__(self) -> Iterator[str]:
        return iter(self.topics)

    def __contains__(self, topic: object) -> bool:
        return topic in self.topics

    @property
    def state(self) -> str:
        """The batch's end: complete, cancelled (or running, for partial results read mid-way)."""
        return str((self.progress or {}).get("state") or "complete")

    def __repr__(self) -> str:
        """Two lines, like ResearchResults: what was researched, and what came of it."""
        counts = self.summaries.get_column("status").value_counts().rows() if self.topics else []
        tally = ", ".join(f"{n} {status}" for status, n in sorted(counts))
        return (
            f"<BatchResults {len(self.topics)} topics depth={self.depth} source={self.source or '-'} {self.state}>\n"
            f"{tally or 'no topics'}; {self.df.height} rows; see .df, .summaries, .errors, results[topic]"
        )

    def _repr_html_(self) -> str:
        from html import escape

        counts = dict(self.summaries.get_column("status").value_counts().rows()) if self.topics else {}
        facts = " · ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        rows = "".join(
            f"<tr><td>{escape(r['topic'])}</td><td>{escape(r['status'])}</td><td style='text-align:right'>{r['pages_read']}</td>"
            f"<td style='text-align:right'>{r['pages_failed']}</td><td>{escape(r['reason'] or '')}</td></tr>"
            for r in self.summaries.head(20).iter_rows(named=True)
        )
        more = f"<p><small>… and {len(self.topics) - 20} more topics</small></p>" if len(self.topics) > 20 else ""
        return (
            f"<div class='torq-results'><h3>Research: {len(self.topics)} topics</h3>"
            f"<p><small>{escape(self.depth)} · {escape(self.source)} · {escape(self.state)} · {escape(facts)} · "
            f"{self.df.height} rows</small></p><table><thead><tr><th>topic</th><th>status</th><th>read</th>"
            f"<th>failed</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table>{more}"
            "<p><small><code>.df</code> every row, <code>.summaries</code> one row per topic, "
            "<code>results[topic]</code> one topic; <code>.export(path)</code> writes a report.</small></p></div>"
        )

    def export(self, path: str | os.PathLike[str], format: str | None = None, **options: Any) -> Path | str:
        """Write the batch to ``path`` (a file or an fsspec URL); the suffix picks the format: one report with a
        section per topic (.md .html .pdf .ipynb) or one table of every row (.csv .json .ndjson .parquet .xlsx), or
        a .zip of all."""
        from torq_nb.export.batch import export_batch

        return export_batch(self, path, format, **options)


# --------------------------------------------------------------------- the plan


def _topics(topics: Iterable[str] | pl.Series) -> list[str]:
    """The topics, stripped, duplicates dropped (first kept); ValueError/TypeError naming a bad one."""
    if isinstance(topics, str):
        raise TypeError("topics must be a list (or Series) of strings, not one string; for one topic use research()")
    if isinstance(topics, pl.Series) and topics.dtype not in (pl.String, pl.Categorical, pl.Enum, pl.Null):
        raise TypeError(f"topics must be a Series of strings, got dtype {topics.dtype}")
    try:
        items = list(topics)
    except TypeError:
        raise TypeError(f"topics must be an iterable of strings or a Polars Series, not {type(topics).__name__}") from None
    unique: dict[str, None] = {}
    for position, topic in enumerate(items):
        if not isinstance(topic, str):
            raise TypeError(f"topics[{position}] is {topic!r}; every topic must be a string (drop nulls first)")
        if not topic.strip():
            raise ValueError(f"topics[{position}] is empty; every topic must be a non-empty string")
        unique.setdefault(topic.strip(), None)
    if not unique:
        raise ValueError("topics is empty; give at least one topic, for example research_many(['solar', 'wind'])")
    return list(unique)


def _template(query: str | None) -> str | None:
    """The query template, checked: it names {topic} and nothing else."""
    if query is None:
        return None
    if not isinstance(query, str) or not query.strip():
        raise TypeError(f"query must be a template string such as '{{topic}} annual revenue', not {query!r}")
    try:
        fields = [name for _, name, spec, conversion in string.Formatter().parse(query) if name is not None]
    except ValueError as error:
        raise ValueError(f"query {query!r} is not a valid template ({error}); write it like '{{topic}} annual revenue'"
                         " (double a literal brace: {{ }})") from None
    others = sorted({name for name in fields if name != "topic"})
    if others:
        raise ValueError(f"query {query!r} names {', '.join('{' + n + '}' for n in others)}; the only field is {{topic}}")
    if "topic" not in fields:
        raise ValueError(f"query {query!r} does not contain {{topic}}; write it like '{{topic}} annual revenue'")
    return query


@dataclass
class _Plan:
    """A checked batch: the topics, the query each searches, and how they run."""

    topics: list[str]
    queries: dict[str, str]
    depth: str
    provider: WebSearchProvider
    concurrency: int
    executor: Any

    @property
    def label(self) -> str:
        return f"research_many: {counted(len(self.topics), 'topic')}"


@raised_at_the_call
def _request(
    topics: Iterable[str] | pl.Series,
    depth: DepthName = "standard",
    source: str | Source | None = None,
    *,
    query: str | None = None,
    concurrency: int | None = None,
    executor: Any = None,
    store: StoreArgument = DEFAULT_STORE,
    max_age: float | timedelta = DEFAULT_MAX_AGE,
    refresh: bool = False,
    display: bool = True,
    progress_callback: BatchCallback | None = None,
    policy: FetchPolicy | None = None,
    allow_private_networks: bool | None = None,
    synthesizer: Synthesizer | None = None,
    stream_to: str | os.PathLike[str] | None = None,
    **source_options: Any,
) -> tuple[_Plan, BatchCallback | None, bool, str | os.PathLike[str] | None]:
    """The parameters of both batch functions (documented on ``research_many``): the batch's plan (its
    provider validates the source options), its progress callback, whether to display it and where its rows
    stream."""
    if progress_callback is not None and not callable(progress_callback):
        raise TypeError(f"progress_callback must be a function taking a status dict, not {progress_callback!r}")
    if stream_to is not None:
        from torq_nb.export.stream import stream_format

        stream_format(stream_to)
    keys = _topics(topics)
    template = _template(query)
    get_depth(depth)
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1):
        raise ValueError(f"concurrency must be a positive whole number of topics at once, not {concurrency!r}")
    if executor is not None:
        _check_client(executor)
    provider = WebSearchProvider(source, policy=policy, allow_private_networks=allow_private_networks,
                                 synthesizer=synthesizer, store=store, max_age=max_age, refresh=refresh,
                                 **source_options)
    queries = {key: template.format(topic=key) if template else key for key in keys}
    plan = _Plan(keys, queries, depth, provider, concurrency or min(DEFAULT_CONCURRENCY, len(keys)), executor)
    return plan, progress_callback, display, stream_to


def _check_client(executor: Any) -> None:
    try:
        from distributed import Client
    except ImportError:
        raise TypeError("executor= takes a dask.distributed.Client; install it with pip install 'torq_nb[dask]'") from None
    if not isinstance(executor, Client):
        raise TypeError(f"executor must be a dask.distributed.Client or None, not {type(executor).__name__}")
    if executor.asynchronous:
        raise TypeError("executor must be a synchronous Client (Client(...), not Client(asynchronous=True)); "
                        "the batch waits for it from a thread of its own")


# --------------------------------------------------------------------- running topics (locally or on a worker)

ProgressSink = Callable[[str, "str | None", "int | None", "int | None"], None]
EndSink = Callable[[str, _Outcome], None]


async def _run_topics(keys: list[str], queries: dict[str, str], depth: str, provider: WebSearchProvider,
                      extractor: Extractor, concurrency: int, on_progress: ProgressSink, on_end: EndSink,
                      on_row: RowSink | None = None) -> dict[str, _Outcome]:
    """Research ``keys``, ``concurrency`` at a time, over one Fetcher; report each topic's stages, rows and end.

    Cancelled, it stops every running topic (each keeps its partial results) and returns what it has.
    """
    outcomes: dict[str, _Outcome] = {}
    slots = asyncio.Semaphore(concurrency)

    session = provider.store_session()  # one session for the batch: its Fetcher and every run read and keep through it
    async with Fetcher(provider.policy, store=session) as fetcher:

        async def one(key: str) -> None:
            async with slots:

                def forward(status: dict[str, Any], key: str = key) -> None:
                    if status["state"] == "running":
                        reading = status["stage"] == "extracting"
                        on_progress(key, status["stage"], status["done"] if reading else None,
                                    status["total"] if reading else None)

                try:  # a topic too long to search fails here
                    run = provider._prepare(queries[key], depth, None, None if on_row is None else partial(on_row, key))
                    run.tracker.add_callback(forward)
                    results = await run_research(run, policy=provider.policy, extractor=extractor,
                                                 synthesizer=provider.synthesizer, fetcher=fetcher, store=session)
                except ResearchCancelled as cancelled:
                    outcome = _Outcome("cancelled", queries[key], cancelled.results, "cancelled while running")
                except (SourceError, ValueError) as error:  # one topic failing is that topic's status; its
                    outcome = _Outcome("failed", queries[key], None, str(error))  # message says why
                except Exception as error:
                    outcome = _Outcome("failed", queries[key], None, f"{type(error).__name__}: {error}")
                else:
                    outcome = _Outcome("complete", queries[key], results)
            outcomes[key] = outcome
            on_end(key, outcome)

        tasks = [asyncio.ensure_future(one(key)) for key in keys]
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return outcomes


class _InProcessExtractor(Extractor):
    """Extraction in a thread of this process: for Dask workers, which may not start a process pool."""

    def warm_up(self) -> None:
        return None

    async def extract(self, page: Page) -> Document | None:
        return await asyncio.to_thread(extract, page)


# --------------------------------------------------------------------- local batches


def _tracker_sinks(tracker: BatchTracker) -> tuple[ProgressSink, EndSink]:
    def on_progress(key: str, stage: str | None, done: int | None, total: int | None) -> None:
        tracker.item_progress(key, stage, done, total)

    def on_end(key: str, outcome: _Outcome) -> None:
        read, failed = outcome.counts()
        tracker.item_finished(key, outcome.status, done=read, failed=failed, reason=outcome.reason)

    return on_progress, on_end


class _Batch:
    """One batch being run: its plan, tracker and the outcomes gathered so far."""

    def __init__(self, plan: _Plan, progress_callback: BatchCallback | None, on_row: RowSink | None = None) -> None:
        self.plan = plan
        self.on_row = on_row
        self.tracker = BatchTracker(plan.label, plan.topics, unit="pages")
        if progress_callback is not None:
            self.tracker.add_callback(progress_callback)
        self.outcomes: dict[str, _Outcome] = {}
        self.topic = plan.label  # ResearchJob names its thread and repr after this

    def results(self) -> BatchResults:
        """The results as they stand (topics not finished count as cancelled)."""
        plan = self.plan
        return BatchResults(list(plan.topics), dict(self.outcomes), plan.depth, plan.provider.source.name,
                            self.tracker.operation_id, self.tracker.status(),
                            {"concurrency": plan.concurrency, "executor": "dask" if plan.executor is not None else "local"})

    async def run(self) -> BatchResults:
        on_progress, on_end = _tracker_sinks(self.tracker)

        def record(key: str, outcome: _Outcome) -> None:
            self.outcomes[key] = outcome
            on_end(key, outcome)

        self.tracker.start(f"{self.plan.depth} research on {self.plan.provider.source.name}")
        cancelled = False
        try:
            if self.plan.executor is not None:
                cancelled = await _run_on_dask(self, record)
            else:
                provider = self.plan.provider
                task = asyncio.ensure_future(_run_topics(
                    self.plan.topics, self.plan.queries, self.plan.depth, provider,
                    provider._extractor or shared_extractor(), self.plan.concurrency, on_progress, record, self.on_row))
                try:
                    await asyncio.shield(task)
                except asyncio.CancelledError:
                    cancelled = True
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
        except BaseException as error:
            self.tracker.finish("failed", f"{type(error).__name__}: {error}")
            raise
        self.tracker.finish("cancelled" if cancelled else "complete")
        return self.results()


class BatchJob(ResearchJob):
    """A batch running in the background. Display it for the live batch widget with a Cancel button.

    ``result()`` waits for the BatchResults (a cancelled batch's are partial); ``partial_results`` gives them
    at any moment; ``cancel()`` stops every running topic, which keeps what it had read.
    """

    def __init__(self, batch: _Batch) -> None:
        self._batch = batch
        super().__init__(batch, batch.run)  # type: ignore[arg-type]  # a batch stands where a Run would

    @property
    def tracker(self) -> BatchTracker:  # type: ignore[override]
        """The batch's BatchTracker."""
        return self._batch.tracker

    @property
    def operation_id(self) -> str:
        return self._batch.tracker.operation_id

    @property
    def status(self) -> dict[str, Any]:  # type: ignore[override]
        """The batch's current progress (BatchTracker.status())."""
        return self._batch.tracker.status()

    @property
    def partial_results(self) -> BatchResults:  # type: ignore[override]
        """The results gathered so far; topics still running or waiting count as cancelled."""
        return self._batch.results()

    def result(self, timeout: float | None = None) -> BatchResults:  # type: ignore[override]
        return self._future.result(timeout)  # type: ignore[return-value]

    _cancel_grace = CANCEL_GRACE * 2  # a batch stops many runs

    @staticmethod
    def _cancelled(results: Any) -> BaseException:
        return BatchCancelled(results)

    def wait_interruptibly(self) -> BatchResults:  # type: ignore[override]
        """Wait for the results; an interrupt or a cancel meanwhile raises BatchCancelled with them."""
        return super().wait_interruptibly()  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"<BatchJob {batch_line(self.status)}>"


# --------------------------------------------------------------------- Dask


@dataclass
class _Chunk:
    """What a Dask worker needs to research some topics: sent pickled, with the provider's parts."""

    keys: list[str]
    queries: dict[str, str]
    depth: str
    source: Source
    policy: FetchPolicy
    synthesizer: Synthesizer
    concurrency: int
    events: str
    cancel: str
    store: str | None
    max_age: float | timedelta
    refresh: bool


def _run_chunk(chunk: _Chunk) -> dict[str, _Outcome]:
    """On a Dask worker: research a chunk of topics over one Fetcher, sending progress back as events."""
    from distributed import Event, get_worker

    worker = get_worker()
    last: dict[str, tuple[str | None, float]] = {}

    def send(message: dict[str, Any]) -> None:
        worker.log_event(chunk.events, message)

    def on_progress(key: str, stage: str | None, done: int | None, total: int | None) -> None:
        now = time.monotonic()
        previous = last.get(key)
        if previous is None or previous[0] != stage or now - previous[1] >= _WORKER_PROGRESS_INTERVAL:
            last[key] = (stage, now)
            send({"k": key, "stage": stage, "done": done, "total": total})

    def on_end(key: str, outcome: _Outcome) -> None:
        read, failed = outcome.counts()
        send({"k": key, "end": outcome.status, "done": read, "failed": failed, "reason": outcome.reason})

    cancel = Event(chunk.cancel)  # type: ignore[no-untyped-call]
    provider = WebSearchProvider(chunk.source, policy=chunk.policy, synthesizer=chunk.synthesizer,
                                 extractor=_InProcessExtractor(), store=chunk.store, max_age=chunk.max_age,
                                 refresh=chunk.refresh)

    async def main() -> dict[str, _Outcome]:
        if await asyncio.to_thread(cancel.is_set):
            return {}
        task = asyncio.ensure_future(_run_topics(chunk.keys, chunk.queries, chunk.depth, provider, provider._extractor,  # type: ignore[arg-type]
                                                 chunk.concurrency, on_progress, on_end))
        while not task.done():
            await asyncio.wait([task], timeout=0.5)
            if not task.done() and await asyncio.to_thread(cancel.is_set):
                task.cancel()
        return await task if not task.cancelled() else {}

    return asyncio.run(main())


def _apply_event(tracker: BatchTracker, message: dict[str, Any]) -> None:
    """A worker's progress event, applied to the notebook's tracker (a topic's first end stands)."""
    key = message["k"]
    if "end" in message:
        tracker.item_finished(key, message["end"], done=message["done"], failed=message["failed"], reason=message["reason"])
    else:
        tracker.item_progress(key, message["stage"], message["done"], message["total"])


async def _run_on_dask(batch: _Batch, record: EndSink) -> bool:
    """Run the batch's topics on the Client's workers; True if it was cancelled."""
    from distributed import Event, as_completed

    plan, tracker, client = batch.plan, batch.tracker, batch.plan.executor
    events, cancel_name = f"torq_nb-progress-{tracker.operation_id}", f"torq_nb-cancel-{tracker.operation_id}"
    threads = max(sum(client.nthreads().values()), 1)
    count = min(len(plan.topics), threads * _CHUNKS_PER_THREAD)
    provider = plan.provider
    chunks = [
        _Chunk(keys, {k: plan.queries[k] for k in keys}, plan.depth, provider.source, provider.policy,
               provider.synthesizer, plan.concurrency, events, cancel_name,
               str(provider.store.path) if provider.store is not None else None, provider.max_age, provider.refresh)
        for keys in (plan.topics[i::count] for i in range(count))
    ]
    client.subscribe_topic(events, lambda event: _apply_event(tracker, event[1]))
    cancel = Event(cancel_name, client=client)  # type: ignore[no-untyped-call]
    futures = {client.submit(_run_chunk, chunk, pure=False, key=f"torq_nb-chunk-{tracker.operation_id}-{i}"): chunk
               for i, chunk in enumerate(chunks)}
    finished = as_completed(list(futures))  # type: ignore[no-untyped-call]
    cancelled = False
    try:
        for _ in range(len(futures)):
            step = asyncio.ensure_future(asyncio.to_thread(next, finished))
            while True:
                try:
                    future = await asyncio.shield(step)
                    break
                except asyncio.CancelledError:
                    if not cancelled:
                        cancelled = True
                        await asyncio.to_thread(cancel.set)
            try:
                outcomes = await asyncio.to_thread(future.result)
            except Exception as error:  # a lost worker fails its chunk's topics, not the batch
                reason = f"the Dask task failed: {type(error).__name__}: {error}"
                outcomes = {key: _Outcome("failed", plan.queries[key], None, reason) for key in futures[future].keys}
            for key, outcome in outcomes.items():
                if batch.on_row is not None and outcome.results is not None:  # rows are written here, on the
                    for row in outcome.results.df.iter_rows(named=True):  # client, as each chunk's results come
                        batch.on_row(key, row)
                record(key, outcome)
    finally:
        client.unsubscribe_topic(events)
        await asyncio.to_thread(cancel.clear)
    return cancelled


# --------------------------------------------------------------------- entry points


@_takes_parameters_of(_request)
def start_research_many(*args: Any, **kwargs: Any) -> BatchJob:
    """Start researching many topics in the background (parameters as ``research_many``); return the job at once.

    Displayed, the job is the batch widget with a Cancel button; ``job.cancel()``, ``job.result()`` and
    ``job.partial_results`` work from any cell.
    """
    from torq_nb.export.stream import start_streamed

    plan, progress_callback, display, stream_to = _request(*args, **kwargs)
    job = start_streamed(stream_to, BATCH_SCHEMA, lambda write: BatchJob(_Batch(
        plan, progress_callback, None if write is None else lambda topic, row: write({"topic": topic, **row}))))
    if display:
        from torq_nb.display import show

        show(job)
    return job


@_takes_parameters_of(_request)
def research_many(*args: Any, **kwargs: Any) -> BatchResults:
    """Research every topic and return one BatchResults; works in a notebook cell and in a script.

    ``topics``: a list (any iterable) of strings or a Polars Series; duplicates are researched once.
    ``query``: a template such as ``"{topic} annual revenue"``: what each topic searches (and its summary's
    subject). ``concurrency``: topics researched at once (default 8); every topic shares ONE fetch budget
    (``policy``: its total concurrency and per-host limits hold across the batch; its deadline spans the
    batch). ``executor``: a ``dask.distributed.Client`` runs the topics on its workers. ``store``,
    ``max_age``, ``refresh``: the run store, as for ``research``: every topic reads and keeps its searches
    and pages there, so a batch run again (after a cancel, a dead kernel) fetches only what is missing; on
    Dask the workers open the same store file (a path every worker must see). ``stream_to``: as for
    ``research``, every topic's rows (``topic`` first, as ``.df``) in one file; on Dask they are written here, in
    the notebook's process, as each chunk of topics comes back. Other parameters as ``research``;
    ``progress_callback`` receives the batch's status dicts (BatchTracker.status()).

    A topic that fails is a row of ``.summaries`` with its reason; the batch goes on. In a notebook one live
    widget shows the batch. An interrupt cancels it and raises BatchCancelled, whose ``.results`` are partial.
    """
    with ctrl_c_noted():  # a Ctrl-C meanwhile is noted, and stops the batch (wait_interruptibly looks)
        return start_research_many(*args, **kwargs).wait_interruptibly()
