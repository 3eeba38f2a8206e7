"""SearXNG, the self-hostable metasearch engine, through its JSON API (GET /search?format=json)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from torq_nb.research.models import Hit
from torq_nb.research.sources.base import (
    Location,
    Source,
    SourceError,
    html_to_text,
    parse_date,
    read_json,
    unique_hits,
)

if TYPE_CHECKING:
    from torq_nb.research.fetch import Fetcher

log = logging.getLogger(__name__)

#: Result pages asked for at most, however large the limit (SearXNG gives 10 to 20 results a page).
MAX_PAGES = 5

_JSON_DISABLED = (
    "SearXNG at {url}: JSON output is disabled on this instance (HTTP 403 for format=json). "
    "Enable it in the instance's settings.yml with\n  search:\n    formats: [html, json]\n"
    "then restart SearXNG, or choose another source."
)


class SearXNG(Source):
    """Search a SearXNG instance at `base_url`, its root (when chosen by name: else $TORQ_NB_SEARXNG_URL).
    `categories` and `language` are SearXNG's own search parameters (for example "news" and "de")."""

    name: ClassVar[str] = "searxng"
    location: ClassVar[Location] = Location("base_url", "TORQ_NB_SEARXNG_URL", "the SearXNG instance's root URL")

    def __init__(
        self, base_url: str | None = None, *, categories: str | None = None, language: str | None = None
    ) -> None:
        url = base_url
        if not url:
            raise ValueError(
                "SearXNG needs the address of an instance: SearXNG('http://localhost:8888'), or source='searxng' "
                f"with base_url= or the {self.location.env} environment variable."
            )
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"SearXNG: base_url {url!r} is not an http(s) URL such as 'http://localhost:8888'.")
        self.base_url = url.rstrip("/")
        self.categories = categories
        self.language = language

    def __repr__(self) -> str:
        return f"SearXNG({self.base_url!r})"

    async def search(self, query: str, limit: int, fetcher: Fetcher) -> list[Hit]:
        if limit < 1 or not query.strip():
            return []
        hits: list[Hit] = []
        for pageno in range(1, MAX_PAGES + 1):
            try:
                results = await self._page(query, pageno, fetcher)
            except SourceError as error:
                if pageno == 1:
                    raise
                log.warning("%s; keeping the %d results of the pages before", error, len(hits))
                break
            before = len(unique_hits(hits, limit))
            hits.extend(_hit(item) for item in results if _usable(item))
            found = len(unique_hits(hits, limit))
            if found >= limit or found == before:
                break
        return unique_hits(hits, limit)

    async def _page(self, query: str, pageno: int, fetcher: Fetcher) -> list[Any]:
        params = {"q": query, "format": "json", "pageno": str(pageno)}
        if self.categories:
            params["categories"] = self.categories
        if self.language:
            params["language"] = self.language
        endpoint = f"{self.base_url}/search"
        page = await fetcher.fetch(endpoint, trusted=True, params=params, headers={"Accept": "application/json"})
        if page.http_status == 403:
            raise SourceError(_JSON_DISABLED.format(url=self.base_url))
        if page.http_status == 429:
            raise SourceError(
                f"SearXNG at {self.base_url} is rate-limiting this client (HTTP 429, its limiter or bot detection). "
                "Retry later, or allow this client in the instance's limiter settings."
            )
        data = read_json(
            f"SearXNG at {self.base_url}", "the search", page, "Check that the URL is the root of a SearXNG instance."
        )
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise SourceError(
                f"SearXNG at {self.base_url}: the answer has no 'results' list; "
                "check that the URL is the root of a SearXNG instance."
            )
        return results


def _usable(item: Any) -> bool:
    """A result with a URL. One that is no http(s) page is kept: the fetch refuses it, and it is an error row."""
    return isinstance(item, dict) and isinstance(item.get("url"), str) and bool(item["url"].strip())


def _hit(item: dict[str, Any]) -> Hit:
    score = item.get("score")
    return Hit(
        title=html_to_text(str(item.get("title") or "")) or item["url"],
        url=item["url"],
        snippet=html_to_text(str(item.get("content") or "")),
        source=SearXNG.name,
        score=float(score) if isinstance(score, (int, float)) else None,
        published=parse_date(item.get("publishedDate")),
    )
