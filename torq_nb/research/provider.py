"""WebSearchProvider: the seed's API, and the one place where options become a provider and a run.

This is the top of the research layer: it wires a source, a fetch policy, the extractor and a synthesizer
into a run. ``torq_nb.research`` and its siblings (torq_nb/api.py) build their runs here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from torq_nb.progress.models import ProgressStatus
from torq_nb.progress.tracker import ProgressTracker, get_progress
from torq_nb.progress.tracker import StatusCallback as ProgressCallback
from torq_nb.research.extract import Extractor, shared_extractor
from torq_nb.research.fetch import FetchPolicy
from torq_nb.research.jobs import ResearchJob
from torq_nb.research.pipeline import Depth, RowCallback, Run, check_topic, get_depth, run_research
from torq_nb.research.results import ResearchResults
from torq_nb.research.sources import Source, resolve_source
from torq_nb.research.store import DEFAULT_MAX_AGE, DEFAULT_STORE, StoreArgument, StoreSession, resolve_store
from torq_nb.research.synthesize import ExtractiveSynthesizer, Synthesizer

#: The options of a research call that are not the source's (what a misspelt keyword is compared with).
_OPTIONS = ("policy", "allow_private_networks", "synthesizer", "extractor", "display", "progress_callback", "depth",
            "store", "max_age", "refresh", "stream_to")


class WebSearchProvider:
    """Researches topics on one source with one fetch policy.

    ``source`` is a Source, a source name ("wikipedia", "searxng", "duckduckgo", "local", or a plug-in's),
    or None for ``$TORQ_NB_SOURCE`` (default "wikipedia"); ``source_options`` go to that source
    (for example ``base_url=`` for SearXNG, ``path=`` for local files).
    ``allow_private_networks=True`` (or ``TORQ_NB_ALLOW_PRIVATE_NETWORKS=1``) lets pages on loopback and
    private addresses be fetched; by default they are refused.
    ``store``: the run store (torq_nb/research/store.py) where pages, searches and finished runs are kept and
    re-runs read from: by default ``$TORQ_NB_STORE`` or the user's cache folder; a path, a RunStore, or None
    (no store). ``max_age``: seconds (or a timedelta) a stored page or search stays fresh (one day); older
    pages are revalidated. ``refresh=True`` fetches and searches again.
    """

    def __init__(
        self,
        source: str | Source | None = None,
        *,
        policy: FetchPolicy | None = None,
        allow_private_networks: bool | None = None,
        synthesizer: Synthesizer | None = None,
        extractor: Extractor | None = None,
        store: StoreArgument = DEFAULT_STORE,
        max_age: float | timedelta = DEFAULT_MAX_AGE,
        refresh: bool = False,
        **source_options: Any,
    ) -> None:
        if policy is not None and not isinstance(policy, FetchPolicy):
            raise TypeError(
                f"policy must be a FetchPolicy, for example policy=FetchPolicy(read_timeout=10), not {policy!r}"
            )
        if allow_private_networks is not None and not isinstance(allow_private_networks, bool):
            raise TypeError(f"allow_private_networks must be True, False or None, not {allow_private_networks!r}")
        if synthesizer is not None and not callable(getattr(synthesizer, "synthesize", None)):
            raise TypeError(
                f"synthesizer must have an async synthesize(topic, sources) method (ExtractiveSynthesizer, OpenAICompatibleSynthesizer), "
                f"not {synthesizer!r}"
            )
        if extractor is not None and not isinstance(extractor, Extractor):
            raise TypeError(f"extractor must be an Extractor, not {extractor!r}")
        for option in source_options:  # a misspelt option of ours would otherwise read as the source's problem
            close = difflib.get_close_matches(option, _OPTIONS, n=1, cutoff=0.8)
            if close:
                raise TypeError(f"unknown option {option!r}: did you mean {close[0]}=?")
        self.source = resolve_source(source, **source_options)
        policy = policy or FetchPolicy()
        if allow_private_networks is not None:
            policy = dataclasses.replace(policy, allow_private_networks=allow_private_networks)
        self.policy = policy
        self.synthesizer = synthesizer or ExtractiveSynthesizer()
        self._extractor = extractor
        self.store = resolve_store(store)
        StoreSession(self.store, max_age=max_age, refresh=refresh)  # checks them now, at the call
        self.max_age, self.refresh = max_age, refresh

    def check_run(self, topic: str, depth: str, progress_callback: ProgressCallback | None) -> tuple[str, Depth]:
        """The run's topic (stripped) and depth, checked: a TypeError or ValueError that says what to fix. A
        caller with something to set up first (a stream file) calls it before; making the run calls it too."""
        depth_spec = get_depth(depth)
        topic = check_topic(topic, depth_spec, self.source)
        if progress_callback is not None and not callable(progress_callback):
            raise TypeError(f"progress_callback must be a function taking a status dict, not {progress_callback!r}")
        return topic, depth_spec

    def _prepare(self, topic: str, depth: str, progress_callback: ProgressCallback | None,
                 on_row: RowCallback | None = None) -> Run:
        topic, depth_spec = self.check_run(topic, depth, progress_callback)
        tracker = ProgressTracker(f"research: {topic}", unit="pages", metadata={"topic": topic, "depth": depth,
                                                                 "source": self.source.name})
        if progress_callback is not None:
            tracker.add_callback(progress_callback)
        return Run(topic, depth_spec, self.source, tracker, on_row)

    def store_session(self) -> StoreSession:
        """The store as one run, or one batch of runs, uses it (with this provider's max_age and refresh): pass
        it to run_research(store=) and to the Fetcher the runs share, ``Fetcher(policy, store=session)``."""
        return StoreSession(self.store, max_age=self.max_age, refresh=self.refresh)

    async def _execute(self, run: Run) -> ResearchResults:
        return await run_research(
            run, policy=self.policy, extractor=self._extractor or shared_extractor(), synthesizer=self.synthesizer,
            store=self.store_session(),
        )

    async def research_topic_with_progress(
        self,
        topic: str,
        depth: str = "standard",
        progress_callback: ProgressCallback | None = None,
        *,
        display: bool = False,
        on_row: RowCallback | None = None,
    ) -> ResearchResults:
        """Research ``topic`` in the running event loop; ``progress_callback`` receives get_status() dicts,
        ``on_row`` each row as its page is finished (a dict in SCHEMA's order).

        Cancelling the awaiting task raises ResearchCancelled, whose ``.results`` are the partial results.
        """
        run = self._prepare(topic, depth, progress_callback, on_row)
        if display:
            from torq_nb.display import show

            show(run.tracker)
        return await self._execute(run)

    def start(
        self,
        topic: str,
        depth: str = "standard",
        progress_callback: ProgressCallback | None = None,
        *,
        display: bool = True,
        blocking: bool = False,
        on_row: RowCallback | None = None,
    ) -> ResearchJob:
        """Start researching ``topic`` in the background and return the job at once; ``blocking=True`` says
        the caller will wait on it in the kernel's main thread (research() does), which its view shows.
        ``on_row`` receives each row as its page is finished, in the job's thread."""
        run = self._prepare(topic, depth, progress_callback, on_row)
        job = ResearchJob(run, lambda: self._execute(run), blocking=blocking)
        if display:
            from torq_nb.display import show

            show(job)
        return job

    def get_research_progress(self, operation_id: str) -> ProgressStatus | None:
        """The current progress of a run by its operation id, or None if unknown."""
        return get_progress(operation_id)

    async def export_research_results(
        self, results: Any, format: str = "markdown", output_path: str | os.PathLike[str] | None = None
    ) -> str | Path:
        """Export results (the seed's API): with ``output_path``, write that file in ``format`` and return its
        path; without one, return the Markdown report (the only format that is text to hand back)."""
        from torq_nb.export import export, resolve_format, to_markdown

        # Off the event loop: a long PDF takes seconds, and the loop may be running other research.
        if output_path is not None:
            return await asyncio.to_thread(export, results, output_path, format)
        if resolve_format("", format) != "markdown":
            raise ValueError(f"format {format!r} is written to a file: pass output_path=, for example 'report.{format}'")
        return await asyncio.to_thread(to_markdown, results)
