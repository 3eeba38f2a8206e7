"""The records that flow through a research run: a search hit, a fetched page, an extracted document.

Each stage of the pipeline turns one record into the next; none of them knows about progress or widgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

PageStatus = Literal["ok", "error"]


@dataclass(frozen=True)
class Hit:
    """One search result, as a source returned it.

    `content` is set by sources that already hold the text (local files, Wikipedia extracts);
    such hits need no HTTP fetch.
    """

    title: str
    url: str
    snippet: str = ""
    source: str = ""
    score: float | None = None
    published: date | None = None
    content: str | None = None
    content_type: str = "text/html"


@dataclass(frozen=True)
class Page:
    """The outcome of fetching one hit: a decoded body, or an error that says why not."""

    url: str
    status: PageStatus
    final_url: str | None = None
    http_status: int | None = None
    content_type: str | None = None
    text: str | None = None
    error: str | None = None
    fetched_at: datetime | None = None
    elapsed_ms: float | None = None
    redirects: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Document:
    """Main text extracted from a page, with whatever metadata the page declared."""

    text: str
    title: str | None = None
    author: str | None = None
    published: date | None = None

    @property
    def word_count(self) -> int:
        return len(self.text.split())
