"""The headline functions: ``torq_nb.research``, ``aresearch``, ``start_research`` and ``export``.

They are plain, typed functions (what help(), IPython's ``?`` and mypy show) that import the engine only
when called, so ``import torq_nb`` stays light. Each research function builds its run through
WebSearchProvider, the one place that turns options into a provider.

The packages ``torq_nb.research`` and ``torq_nb.export`` are imported here first: the import system binds
a package to its parent's attribute when it first loads it, so loading them now lets ``torq_nb/__init__``
bind these functions to those names for good (``from torq_nb.research.sources import Source`` still works).
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

if TYPE_CHECKING:
    from torq_nb.export.data import ExportInput
    from torq_nb.export.manager import Engine
    from torq_nb.export.stream import RowStream
    from torq_nb.progress.tracker import StatusCallback as ProgressCallback
    from torq_nb.research.fetch import FetchPolicy
    from torq_nb.research.jobs import ResearchJob
    from torq_nb.research.provider import WebSearchProvider
    from torq_nb.research.results import ResearchResults
    from torq_nb.research.sources import Source
    from torq_nb.research.store import StoreArgument
    from torq_nb.research.synthesize import Synthesizer

for _package in ("torq_nb.research", "torq_nb.export"):
    importlib.import_module(_package)

from torq_nb.research.calls import raised_at_the_call  # noqa: E402 (light, as the next)
from torq_nb.research.store import DEFAULT_MAX_AGE, DEFAULT_STORE  # noqa: E402 (a light module: the defaults)

__all__ = ["DepthName", "aresearch", "export", "research", "start_research"]

#: The depths a run accepts: "quick", "standard" or "deep" (see ``torq_nb.DEPTHS``).
DepthName = Literal["quick", "standard", "deep"]

P = ParamSpec("P")
R = TypeVar("R")


def _takes_parameters_of(model: Callable[P, object]) -> Callable[[Callable[..., R]], Callable[P, R]]:
    """Give the decorated function ``model``'s parameters, for type checkers and for help()/IPython's ``?``:
    the research functions share one declaration of their parameters."""

    def give(function: Callable[..., R]) -> Callable[P, R]:
        returns = inspect.signature(function).return_annotation
        function.__signature__ = inspect.signature(model).replace(return_annotation=returns)  # type: ignore[attr-defined]
        return function

    return give


@raised_at_the_call
def _request(
    topic: str,
    depth: DepthName = "standard",
    source: str | Source | None = None,
    *,
    display: bool = True,
    progress_callback: ProgressCallback | None = None,
    policy: FetchPolicy | None = None,
    allow_private_networks: bool | None = None,
    synthesizer: Synthesizer | None = None,
    store: StoreArgument = DEFAULT_STORE,
    max_age: float | timedelta = DEFAULT_MAX_AGE,
    refresh: bool = False,
    stream_to: str | os.PathLike[str] | None = None,
    **source_options: Any,
) -> tuple[WebSearchProvider, dict[str, Any], str | os.PathLike[str] | None]:
    """The parameters of every research function (documented on ``research``): the provider they build
    (WebSearchProvider validates them), the arguments of the run and where its rows stream. Everything is
    checked here, before a stream file is started afresh; a wrong one raises here (``raised_at_the_call``)."""
    from torq_nb.research.provider import WebSearchProvider

    provider = WebSearchProvider(source, policy=policy, allow_private_networks=allow_private_networks,
                                 synthesizer=synthesizer, store=store, max_age=max_age, refresh=refresh,
                                 **source_options)
    provider.check_run(topic, depth, progress_callback)
    if stream_to is not None:
        from torq_nb.export.stream import stream_format

        stream_format(stream_to)
    return provider, {"topic": topic, "depth": depth, "progress_callback": progress_callback, "display": display}, stream_to


def _stream(stream_to: str | os.PathLike[str] | None) -> RowStream | None:
    """The run's row stream, started afresh, or None without ``stream_to``."""
    if stream_to is None:
        return None
    from torq_nb.export.stream import RowStream
    from torq_nb.results import SCHEMA

    return RowStream(stream_to, SCHEMA)


def _start(provider: WebSearchProvider, run: dict[str, Any], stream_to: str | os.PathLike[str] | None,
           *, blocking: bool) -> ResearchJob:
    """Start the run's job, its rows streaming to ``stream_to``; the stream closes when the job ends."""
    from torq_nb.export.stream import start_streamed
    from torq_nb.results import SCHEMA

    return start_streamed(stream_to, SCHEMA, lambda write: provider.start(**run, blocking=blocking, on_row=write))


@_takes_parameters_of(_request)
def research(*args: Any, **kwargs: Any) -> ResearchResults:
    """Research ``topic`` and return its results; works in a notebook cell and in a script.

    ``depth``: "quick" (top 5 snippets, nothing fetched), "standard" (top 10 pages read) or "deep" (three
    query variants, up to 50 pages). ``source``: a Source object, or a name ("wikipedia", "searxng",
    "duckduckgo", "local", a plug-in's) configured by ``source_options`` (``base_url=`` for SearXNG,
    ``path=`` for local files) or its ``TORQ_NB_*`` variable; None means ``$TORQ_NB_SOURCE``, else Wikipedia.
    ``policy``: a FetchPolicy (timeouts, limits, retries); ``allow_private_networks=True`` also fetches
    pages on loopback and private addresses (refused by default); ``synthesizer`` writes the summary.

    Every page, search answer and finished run is kept in the run store, and a re-run reads from it: ``store``
    is where (by default ``$TORQ_NB_STORE``, else ``torq_nb/store.sqlite`` in the user's cache folder; a path,
    a ``RunStore``, or None for no store); pages younger than ``max_age`` (seconds or a timedelta; one day)
    are not fetched again, older ones are revalidated (a 304 serves the stored copy), and ``refresh=True``
    fetches everything again. The ``cached`` column says which rows came from the store; ``torq_nb.runs()``
    lists past runs. A store that cannot be used is a StoreWarning: the run goes on and returns its results.

    ``stream_to="rows.ndjson"`` (or ``.jsonl``, ``.csv``; a local path) writes each row to that file as soon as
    its page is finished (ok, error, snippet, cancelled; stored pages too), so a run can be watched (``tail -f``,
    ``pl.read_ndjson``) and a crash keeps what was done: the file is started afresh (an existing one is replaced),
    holds whole lines only, a valid table after every row (CSV: header first, formulas neutralised as in the
    export), rows in the order they finish; it is closed when the run ends, however it ends.

    In a notebook the live progress widget appears (``display=False`` turns it off); ``progress_callback``
    receives every published status as a dict. Its Cancel button (where the kernel can take a click while
    the cell is busy: ipykernel 7), an interrupt (Ctrl-C, the kernel's stop button) or Ctrl-C in a script
    cancel the run and raise ResearchCancelled, whose ``.results`` are the partial results (a Ctrl-C before the
    run has started raises KeyboardInterrupt).
    """
    from torq_nb.research.interrupts import ctrl_c_noted, raise_if_interrupted

    try:
        with ctrl_c_noted():  # from here a Ctrl-C is noted, not raised inside the imports below
            from torq_nb.research.pipeline import ResearchCancelled
            from torq_nb.research.sources import SourceError

            request = _request(*args, **kwargs)
            raise_if_interrupted()  # while the engine loaded: nothing has started
            try:
                return _start(*request, blocking=True).wait_interruptibly()
            except (SourceError, ResearchCancelled) as expected:  # they say what happened and what to do: the
                raise expected.with_traceback(None) from None  # library's frames add nothing
    except KeyboardInterrupt:
        raise KeyboardInterrupt from None  # where the Ctrl-C was noted says nothing either


@_takes_parameters_of(_request)
async def aresearch(*args: Any, **kwargs: Any) -> ResearchResults:
    """``research`` for async code, with the same parameters: ``results = await torq_nb.aresearch("topic")``.

    Cancelling the awaiting task raises ResearchCancelled with the partial results.
    """
    provider, run, stream_to = _request(*args, **kwargs)
    rows = _stream(stream_to)
    try:
        return await provider.research_topic_with_progress(**run, on_row=rows.write if rows else None)
    finally:
        if rows is not None:
            rows.close()


@_takes_parameters_of(_request)
def start_research(*args: Any, **kwargs: Any) -> ResearchJob:
    """Start a run in the background, with the same parameters as ``research``; return its job at once.

    Displayed, the job is the live widget with a Cancel button; ``job.cancel()``, ``job.result()`` and
    ``job.partial_results`` work from any cell, and later cells run while it works.
    """
    return _start(*_request(*args, **kwargs), blocking=False)


def export(
    results: ExportInput,
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    engine: Engine = "typst",
    bom: bool = False,
    neutralize: bool = True,
    metadata_comments: bool = False,
    title: str | None = None,
    author: str | None = None,
    logo: str | os.PathLike[str] | None = None,
    template: str | os.PathLike[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Path | str:
    """Write ``results`` (ResearchResults, a results DataFrame or a saved run) to ``path``; return the path.

    The format follows the suffix (.md .html .pdf .csv .json .ndjson .parquet .xlsx .ipynb .zip) unless
    ``format`` names it; the write is atomic. PDF goes through Typst (``engine``); CSV cells a spreadsheet
    would run as formulas are neutralised unless ``neutralize=False``; ``bom`` and ``metadata_comments``
    shape the CSV. The documents (.md .html .pdf) take a ``title`` (instead of "Research: <topic>"), an
    ``author`` line, a ``logo`` image (.png .jpg .svg) and a ``template`` of your own: a ``.typ`` file for PDF,
    a Jinja ``.html.j2`` file for HTML (docs/templates.md says what they receive). ``path`` may be an fsspec
    URL (``s3://bucket/report.pdf``): the finished document is uploaded once and the URL returned;
    ``storage_options`` (endpoint, credentials) go to fsspec.
    """
    from torq_nb.export.manager import export as write

    return write(results, path, format, engine=engine, bom=bom, neutralize=neutralize,
                 metadata_comments=metadata_comments, title=title, author=author, logo=logo, template=template,
                 storage_options=storage_options)
