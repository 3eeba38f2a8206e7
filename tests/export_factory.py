"""Research results of the documented SCHEMA for export tests and benchmarks (the pipeline is not needed)."""

from __future__ import annotations

import subprocess
from datetime import date, datetime, timezone
from pathlib import Path

import polars as pl

from torq_nb.progress.models import ProgressStatus, StageStatus
from torq_nb.research.results import SCHEMA, ResearchResults

STARTED = "2026-11-25T12:00:00+00:00"


def pdf_text(path: Path, *args: str) -> str:
    """A PDF's text as pdftotext reads it (``args``: its options, e.g. ``-raw``, ``-bbox``), without the
    zero-width spaces the PDF puts in long unbroken runs so that they wrap: the text a reader sees."""
    out = subprocess.run(["pdftotext", *args, str(path), "-"], capture_output=True, text=True, check=True).stdout
    return out.replace("\u200b", "")


def row(rank: int, *, title: str | None = None, url: str | None = None, status: str = "ok",
        snippet: str | None = None, error: str | None = None, http_status: int | None = 200) -> dict[str, object]:
    """One row of the results table."""
    return {
        "rank": rank,
        "title": title if title is not None else f"Result number {rank}",
        "url": url if url is not None else f"https://example.org/articles/{rank}/a-fairly-long-path-name-{rank}?ref=search",
        "domain": "example.org",
        "snippet": snippet if snippet is not None else f"Snippet {rank}: a short excerpt of the page.",
        "content": f"Content of page {rank}. " * 5 if status == "ok" else None,
        "word_count": 25 if status == "ok" else None,
        "published": date(2024, 1, 1 + rank % 28),
        "author": "A. Writer",
        "source": "wikipedia",
        "score": 1.0 / rank,
        "status": status,
        "error": error,
        "http_status": http_status,
        "fetched_at": datetime(2026, 11, 25, 12, 0, rank % 60, tzinfo=timezone.utc),
        "elapsed_ms": 12.5,
        "cached": False,
    }


def progress(duration: float = 4.2) -> ProgressStatus:
    """A finished run's final status."""
    stages = tuple(StageStatus(name, 100.0, "complete", STARTED, 0.5)
                   for name in ("initializing", "searching", "extracting", "synthesizing"))
    return ProgressStatus(operation="research", operation_id="op-1", stage="complete", percent=100.0, state="complete",
                          message=None, duration=duration, timestamp=STARTED, started_at=STARTED, done=4, total=4,
                          rate=None, eta=None, error=None, stages=stages)


def results(n: int = 5, *, topic: str = "Solar energy", rows: list[dict[str, object]] | None = None,
            fail_every: int = 0, summary: str | None = None) -> ResearchResults:
    """A finished run with ``n`` rows (or the given ones); every ``fail_every``-th row failed with a 404."""
    if rows is None:
        rows = [row(i, status="error", error="HTTP 404: not found", http_status=404, snippet="")
                if fail_every and i % fail_every == 0 else row(i) for i in range(1, n + 1)]
    df = pl.DataFrame(rows, schema=SCHEMA) if rows else pl.DataFrame(schema=SCHEMA)
    text = summary if summary is not None else ("Solar panels convert light into electricity [1]. "
                                                "Their cost fell sharply over the last decade [2].")
    return ResearchResults(topic=topic, df=df, summary=text, depth="standard", source="wikipedia",
                           operation_id="op-1", progress=progress(), metadata={"query": topic})
