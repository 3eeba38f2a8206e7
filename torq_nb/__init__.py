"""torq_nb: research inside notebooks, with live staged progress, a Polars table of sources and exports.

    import torq_nb
    results = torq_nb.research("solar energy storage")      # live widget in the cell
    results.df                                              # one row per search hit
    results.export("report.pdf")                            # or .md .html .csv .json .parquet .zip

``research``, ``aresearch``, ``start_research`` and ``export`` are typed functions (torq_nb/api.py); every
other name is imported on first use, so ``import torq_nb`` (and the extraction workers, which import it)
stays light. The layers are packages of their own: ``torq_nb.progress``, ``torq_nb.research.*`` (import its
modules by full name, e.g. ``from torq_nb.research.sources import Source``) and ``torq_nb.export.*``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from torq_nb import display as _display
from torq_nb._lazy import lazy_names
from torq_nb.api import aresearch, export, research, start_research

if TYPE_CHECKING:
    from torq_nb.export.manager import ExportManager
    from torq_nb.export.typst_pdf import TypstPDFExporter
    from torq_nb.progress import DEFAULT_STAGES, ProgressStatus, ProgressTracker, get_progress
    from torq_nb.progress.snapshot import status_html, status_line
    from torq_nb.progress.terminal import TerminalProgress
    from torq_nb.progress.widget import ProgressWidget
    from torq_nb.research.batch import BatchCancelled, BatchResults, research_many, start_research_many
    from torq_nb.research.extract import Extractor
    from torq_nb.research.fetch import FetchPolicy
    from torq_nb.research.jobs import ResearchJob
    from torq_nb.research.pipeline import DEPTHS, ResearchCancelled
    from torq_nb.research.provider import WebSearchProvider
    from torq_nb.research.results import load_run
    from torq_nb.research.sources import (
        DuckDuckGo,
        LocalFiles,
        SearXNG,
        Source,
        SourceError,
        Wikipedia,
        available_sources,
        resolve_source,
    )
    from torq_nb.research.store import RunStore, StoreError, StoreWarning, runs
    from torq_nb.research.synthesize import ExtractiveSynthesizer, OpenAICompatibleSynthesizer
    from torq_nb.results import SCHEMA, ResearchResults

try:
    __version__ = version("torq_nb")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

#: Public name -> the module that defines it.
_WHERE: dict[str, str] = {
    "BatchResults": "torq_nb.research.batch",
    "BatchCancelled": "torq_nb.research.batch",
    "research_many": "torq_nb.research.batch",
    "start_research_many": "torq_nb.research.batch",
    "ExportManager": "torq_nb.export.manager",
    "load_run": "torq_nb.research.results",
    "TypstPDFExporter": "torq_nb.export.typst_pdf",
    "DEFAULT_STAGES": "torq_nb.progress",
    "ProgressStatus": "torq_nb.progress",
    "ProgressTracker": "torq_nb.progress",
    "get_progress": "torq_nb.progress",
    "status_html": "torq_nb.progress.snapshot",
    "status_line": "torq_nb.progress.snapshot",
    "TerminalProgress": "torq_nb.progress.terminal",
    "ProgressWidget": "torq_nb.progress.widget",
    "FetchPolicy": "torq_nb.research.fetch",
    "ResearchJob": "torq_nb.research.jobs",
    "DEPTHS": "torq_nb.research.pipeline",
    "ResearchCancelled": "torq_nb.research.pipeline",
    "WebSearchProvider": "torq_nb.research.provider",
    "SCHEMA": "torq_nb.results",
    "ResearchResults": "torq_nb.results",
    "RunStore": "torq_nb.research.store",
    "StoreError": "torq_nb.research.store",
    "StoreWarning": "torq_nb.research.store",
    "runs": "torq_nb.research.store",
    "Extractor": "torq_nb.research.extract",
    "ExtractiveSynthesizer": "torq_nb.research.synthesize",
    "OpenAICompatibleSynthesizer": "torq_nb.research.synthesize",
    "DuckDuckGo": "torq_nb.research.sources",
    "LocalFiles": "torq_nb.research.sources",
    "SearXNG": "torq_nb.research.sources",
    "Source": "torq_nb.research.sources",
    "SourceError": "torq_nb.research.sources",
    "Wikipedia": "torq_nb.research.sources",
    "available_sources": "torq_nb.research.sources",
    "resolve_source": "torq_nb.research.sources",
}

__all__ = [
    "DEFAULT_STAGES",
    "DEPTHS",
    "SCHEMA",
    "BatchCancelled",
    "BatchResults",
    "DuckDuckGo",
    "ExportManager",
    "ExtractiveSynthesizer",
    "Extractor",
    "FetchPolicy",
    "LocalFiles",
    "OpenAICompatibleSynthesizer",
    "ProgressStatus",
    "ProgressTracker",
    "ProgressWidget",
    "ResearchCancelled",
    "ResearchJob",
    "ResearchResults",
    "RunStore",
    "SearXNG",
    "Source",
    "SourceError",
    "StoreError",
    "StoreWarning",
    "TerminalProgress",
    "TypstPDFExporter",
    "WebSearchProvider",
    "Wikipedia",
    "aresearch",
    "available_sources",
    "export",
    "get_progress",
    "load_run",
    "research",
    "research_many",
    "resolve_source",
    "runs",
    "start_research",
    "start_research_many",
    "status_html",
    "status_line",
]


__getattr__, __dir__ = lazy_names(__name__, _WHERE)
_display.register()
