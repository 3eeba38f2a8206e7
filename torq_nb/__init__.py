"""torq_nb: research inside notebooks, with live staged progress, a Polars table of sources and exports.

    import torq_nb
    results = torq_nb.research("solar energy storage")      # live widget in the cell
    results.df                                              # one row per search hit
    results.export("report.pdf")                            # or .md .html .csv .json .parquet .zip
"""

from importlib.metadata import PackageNotFoundError, version

from torq_nb.export import ExportManager, TypstPDFExporter, export
from torq_nb.progress import DEFAULT_STAGES, ProgressStatus, ProgressTracker, get_progress
from torq_nb.progress.widget import ProgressWidget
from torq_nb.research.fetch import FetchPolicy
from torq_nb.research.jobs import ResearchJob
from torq_nb.research.pipeline import DEPTHS, ResearchCancelled
from torq_nb.research.provider import WebSearchProvider, aresearch, research, start_research
from torq_nb.research.results import SCHEMA, ResearchResults
from torq_nb.research.sources import (
    DuckDuckGo,
    LocalFiles,
    SearXNG,
    Source,
    SourceError,
    Wikipedia,
    available_sources,
)

try:
    __version__ = version("torq_nb")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_STAGES",
    "DEPTHS",
    "SCHEMA",
    "DuckDuckGo",
    "ExportManager",
    "FetchPolicy",
    "LocalFiles",
    "ProgressStatus",
    "ProgressTracker",
    "ProgressWidget",
    "ResearchCancelled",
    "ResearchJob",
    "ResearchResults",
    "SearXNG",
    "Source",
    "SourceError",
    "TypstPDFExporter",
    "Wikipedia",
    "WebSearchProvider",
    "aresearch",
    "available_sources",
    "export",
    "get_progress",
    "research",
    "start_research",
]
