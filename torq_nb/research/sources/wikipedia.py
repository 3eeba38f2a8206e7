"""Wikipedia (or any MediaWiki) through its action API: list=search for hits, TextExtracts for article text.

Wikimedia's API etiquette is followed: one request at a time per source, `maxlag=5` (and a short,
capped wait when the servers say they are lagging), and a descriptive User-Agent.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from torq_nb.research.models import Hit, Page
from torq_nb.research.sources.base import (
    Location,
    SerialLock,
    Source,
    SourceError,
    html_to_text,
    read_json,
    unique_hits,
)

if TYPE_CHECKING:
    from torq_nb.research.fetch import Fetcher

DEFAULT_ENDPOINT = "https://en.wikipedia.org/w/api.php"
_LANG = re.compile(r"^[a-z][a-z0-9-]{1,20}$")
#: How often to retry when the API answers `maxlag` (the servers are lagging and ask bots to pause).
_MAXLAG_RETRIES = 2


class Wikipedia(Source):
    """Search Wikipedia articles; the article text comes as a plain-text extract.

    `endpoint` (when chosen by name: else $TORQ_NB_WIKIPEDIA_URL) defaults to the English Wikipedia API. `lang="de"` picks
    another language edition of Wikipedia (only with the default endpoint). `maxlag_wait` is the pause,
    in seconds, before retrying when the API reports replication lag (Wikimedia asks for at least 5).
    Requests carry the fetch policy's User-Agent (torq_nb's, with its name, version and address, by default,
    as Wikimedia's policy asks) unless `user_agent` is given: give one with your contact details for heavy use.
    """

    name: ClassVar[str] = "wikipedia"
    location: ClassVar[Location] = Location("endpoint", "TORQ_NB_WIKIPEDIA_URL", "the MediaWiki api.php to search")
    #: CirrusSearch refuses longer searches ("Search request is longer than the maximum allowed length").
    max_query_chars: ClassVar[int | None] = 300

    def __init__(
        self,
        endpoint: str | None = None,
        lang: str | None = None,
        user_agent: str | None = None,
        maxlag_wait: float = 5.0,
    ) -> None:
        configured = endpoint
        if lang is not None:
            if not _LANG.match(lang):
                raise ValueError(f"Wikipedia: {lang!r} is not a language code such as 'en', 'de' or 'zh-yue'.")
            if configured:
                raise ValueError(
                    "Wikipedia: give either lang= or an endpoint (or TORQ_NB_WIKIPEDIA_URL), not both: "
                    "the endpoint already decides the language."
                )
            configured = f"https://{lang}.wikipedia.org/w/api.php"
        self.endpoint = configured or DEFAULT_ENDPOINT
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Wikipedia: endpoint {self.endpoint!r} is not an http(s) URL of a MediaWiki api.php.")
        self._article_base = urlunsplit((parts.scheme, parts.netloc, "/wiki/", "", ""))
        self.user_agent = user_agent
        if isinstance(maxlag_wait, bool) or not isinstance(maxlag_wait, (int, float)) or not 0 <= maxlag_wait < math.inf:
            kind = TypeError if not isinstance(maxlag_wait, (int, float)) else ValueError
            raise kind(f"Wikipedia: maxlag_wait must be a finite number of seconds, 0 or more, got {maxlag_wait!r}; "
                       "for example Wikipedia(maxlag_wait=5)")
        self.maxlag_wait = maxlag_wait
        self._serial = SerialLock()

    def __repr__(self) -> str:
        return f"Wikipedia(endpoint={self.endpoint!r})"

    def article_url(self, title: str) -> str:
        """The reader's URL of an article (what a hit links to)."""
        return self._article_base + quote(title.replace(" ", "_"), safe="/:(),!'*@$;")

    def title_of(self, hit: Hit) -> str:
        """The article title a hit stands for: from its URL when it is one of ours, else its title."""
        if hit.url.startswith(self._article_base):
            return unquote(hit.url[len(self._article_base) :].split("#", 1)[0]).replace("_", " ")
        return hit.title

    async def search(self, query: str, limit: int, fetcher: Fetcher) -> list[Hit]:
        if limit < 1 or not query.strip():
            return []
        params = {
            "action": "query",
            "list": "search",
            "srsearch": query,
            "srlimit": str(min(limit, 500)),
            "srprop": "snippet",
        }
        data = await self._api(fetcher, params, "search")
        hits = [
            Hit(
                title=html_to_text(str(item.get("title", ""))),
                url=self.article_url(str(item["title"])),
                snippet=html_to_text(str(item.get("snippet", ""))),
                source=self.name,
            )
            for item in _listed(data, "search")
            if isinstance(item, dict) and item.get("title")
        ]
        return unique_hits(hits, limit)

    async def fetch(self, hit: Hit, fetcher: Fetcher) -> Page:
        """The article's plain text through the API (TextExtracts), as a text/plain page."""
        title = self.title_of(hit)
        params = {
            "action": "query",
            "prop": "extracts",
            "explaintext": "1",
            "exsectionformat": "plain",  # section headings as plain lines, not "== Heading =="
            "redirects": "1",
            "titles": title,
        }
        try:
            data = await self._api(fetcher, params, f"the extract of {title!r}")
        except SourceError as error:
            return Page(url=hit.url, status="error", error=str(error))
        pages = _listed(data, "pages")
        page = pages[0] if pages and isinstance(pages[0], dict) else {}
        extract = page.get("extract")
        if page.get("missing") or page.get("invalid") or not isinstance(extract, str):
            return Page(url=hit.url, status="error", error=f"Wikipedia has no article titled {title!r}.")
        return Page(
            url=hit.url,
            status="ok",
            final_url=self.article_url(str(page.get("title", title))),
            http_status=200,
            content_type="text/plain",
            text=extract,
        )

    async def _api(self, fetcher: Fetcher, params: dict[str, str], what: str) -> dict[str, Any]:
        """One API request at a time; waits and retries (bounded) while the servers report replication lag."""
        params = {**params, "format": "json", "formatversion": "2", "maxlag": "5"}
        async with self._serial():
            retries = 0
            while True:
                headers = {"User-Agent": self.user_agent} if self.user_agent else None
                page = await fetcher.fetch(self.endpoint, trusted=True, params=params, headers=headers)
                data = read_json("Wikipedia", what, page, f"Check that {self.endpoint} is a MediaWiki api.php.")
                error = data.get("error") if isinstance(data, dict) else None
                if not isinstance(error, dict):
                    return data if isinstance(data, dict) else {}
                if error.get("code") != "maxlag" or retries == _MAXLAG_RETRIES:
                    raise SourceError(
                        f"Wikipedia: {what} was refused by the API ({error.get('code')}: {error.get('info')}). "
                        "If the servers are lagging, retry in a minute."
                    )
                retries += 1
                await asyncio.sleep(self.maxlag_wait)


def _listed(data: dict[str, Any], key: str) -> list[Any]:
    """`data["query"][key]` of an API answer when it is a list, else an empty list."""
    query = data.get("query")
    found = query.get(key) if isinstance(query, dict) else None
    return found if isinstance(found, list) else []
