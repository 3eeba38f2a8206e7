"""DuckDuckGo through its HTML endpoint (no key): result links are redirect URLs carrying the target in `uddg`.

DuckDuckGo rate-limits this endpoint hard: it answers HTTP 202, or a page with an "anomaly" challenge,
instead of results. Both become a SourceError that says so. Searches from one source go one at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast
from urllib.parse import parse_qs, urljoin, urlsplit

from torq_nb.research.models import Hit, Page
from torq_nb.research.sources.base import Location, SerialLock, Source, SourceError, failure, unique_hits, xml_safe

if TYPE_CHECKING:
    import lxml.html

    from torq_nb.research.fetch import Fetcher

DEFAULT_ENDPOINT = "https://html.duckduckgo.com/html/"

_RATE_LIMITED = (
    "DuckDuckGo rate-limited this client ({how}) and returned no results. "
    "Retry in a few minutes, or use another source (source='wikipedia', a SearXNG instance, or local files)."
)


class DuckDuckGo(Source):
    """Search DuckDuckGo's HTML endpoint: `endpoint` (when chosen by name: else $TORQ_NB_DUCKDUCKGO_URL),
    by default the public one.

    `region` is DuckDuckGo's `kl` code (for example "de-de"); results come from the first page only.
    """

    name: ClassVar[str] = "duckduckgo"
    location: ClassVar[Location] = Location("endpoint", "TORQ_NB_DUCKDUCKGO_URL", "the DuckDuckGo HTML endpoint")

    def __init__(self, endpoint: str | None = None, *, region: str | None = None) -> None:
        self.endpoint = endpoint or DEFAULT_ENDPOINT
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"DuckDuckGo: endpoint {self.endpoint!r} is not an http(s) URL.")
        self.region = region
        self._serial = SerialLock()

    def __repr__(self) -> str:
        return f"DuckDuckGo(endpoint={self.endpoint!r})"

    async def search(self, query: str, limit: int, fetcher: Fetcher) -> list[Hit]:
        if limit < 1 or not query.strip():
            return []
        params = {"q": query}
        if self.region:
            params["kl"] = self.region
        async with self._serial():
            page = await fetcher.fetch(self.endpoint, trusted=True, params=params)
        if page.http_status == 202:
            raise SourceError(_RATE_LIMITED.format(how="HTTP 202"))
        if page.status != "ok":
            raise failure("DuckDuckGo", "the search", page)
        return unique_hits(parse_results(page), limit)


def parse_results(page: Page) -> list[Hit]:
    """The organic results of a DuckDuckGo HTML result page (ads skipped), or SourceError for an anomaly page."""
    import lxml.html
    from lxml.etree import ParserError

    try:
        root = cast(lxml.html.HtmlElement, lxml.html.document_fromstring(xml_safe(page.text or "")))
    except ParserError:
        raise SourceError("DuckDuckGo: the search returned an empty page; retry later or use another source.") from None
    if _is_anomaly(root):
        raise SourceError(_RATE_LIMITED.format(how="an anomaly/bot-check page"))
    hits: list[Hit] = []
    for result in root.find_class("result"):
        if "result--ad" in (result.get("class") or "").split():
            continue
        links = result.find_class("result__a")
        if not links:
            continue
        url = target_url(links[0].get("href") or "", page.final_url or page.url)
        if url is None:
            continue
        snippets = result.find_class("result__snippet")
        hits.append(
            Hit(
                title=_text(links[0]) or url,
                url=url,
                snippet=_text(snippets[0]) if snippets else "",
                source=DuckDuckGo.name,
            )
        )
    return hits


def target_url(href: str, base: str) -> str | None:
    """Where a result link leads: the `uddg` target of a DuckDuckGo redirect, or the link itself.
    None for ads and empty links. A target that is no http(s) page stays: the fetch refuses it as a row."""
    if not href.strip():
        return None
    absolute = urljoin(base, href.strip())
    parts = urlsplit(absolute)
    query = parse_qs(parts.query)
    if parts.path.startswith("/l/") and query.get("uddg"):
        return query["uddg"][0]
    if parts.path.startswith("/y.js") and (parts.hostname or "").endswith("duckduckgo.com"):  # an ad's tracker
        return None
    return absolute


def _is_anomaly(root: lxml.html.HtmlElement) -> bool:
    """True for DuckDuckGo's bot-check page: anomaly markup or its `DDG.deep.anomalyDetectionBlock` script."""
    if root.xpath("//form[contains(@action, 'anomaly')] | //*[contains(@class, 'anomaly-modal')]"):
        return True
    return any("anomalyDetectionBlock" in (script.text or "") for script in root.iter("script"))


def _text(element: lxml.html.HtmlElement) -> str:
    return " ".join(element.text_content().split())
