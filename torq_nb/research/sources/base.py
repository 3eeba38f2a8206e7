"""The contract every search source fulfils, and the helpers the built-in sources share.

A source turns a query into ranked `Hit`s. Hits that already carry their text (`hit.content`) need no
fetch; for the others the pipeline calls `source.fetch(hit, fetcher)`, which by default is an
untrusted fetch of the hit's URL.

A source's options are its constructor's parameters, and its `location` says which of them is where it
searches and which environment variable supplies that: `resolve_source` and the torq-nb command read
nothing else. Source modules import their heavy libraries where they use them, so that the command's
``--help`` (which lists every source's flags) stays instant.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from torq_nb.research.models import Hit, Page

if TYPE_CHECKING:
    from torq_nb.research.fetch import Fetcher


class SourceError(Exception):
    """A search that failed as a whole: the message names the source, the cause and what to do.

    An expected failure, not a bug: IPython shows it as its message alone, without a traceback through
    the library (``_render_traceback_``), and ``research()`` raises it with no internal frames.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


@dataclass(frozen=True)
class Location:
    """Where a source searches: the constructor `option` that says it (an API's URL, a folder), the environment
    variable `env` that supplies it when the source is chosen by name without it, and for ``--help`` what it is
    and its placeholder. The command line offers it as ``--option`` and as the variable's twin: TORQ_NB_X_URL
    is also ``--x-url``."""

    option: str
    env: str
    help: str
    metavar: str = "URL"


class Source(ABC):
    """Where hits come from. Subclass it and register it under the `torq_nb.sources` entry-point group.

    Its options are its constructor's parameters: ``research(source="name", option=...)`` passes them, and
    ``torq-nb research --source name`` offers each as ``--option`` (converted to the type its annotation or
    default names: str, int, float or bool). The class docstring is their help text.
    """

    name: ClassVar[str]
    #: The longest query the service accepts, in characters, if it is below the pipeline's MAX_QUERY_CHARS.
    max_query_chars: ClassVar[int | None] = None
    #: The option that says where the source searches, and its environment variable (None: it needs none).
    location: ClassVar[Location | None] = None

    @classmethod
    def options(cls) -> dict[str, inspect.Parameter]:
        """The source's options: its constructor's named parameters (not ``*args`` or ``**kwargs``), in order."""
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return {p.name: p for p in inspect.signature(cls).parameters.values() if p.kind in named}

    @abstractmethod
    async def search(self, query: str, limit: int, fetcher: Fetcher) -> list[Hit]:
        """Return at most `limit` plain-text hits for `query`, best first; raise SourceError if the search fails."""

    async def fetch(self, hit: Hit, fetcher: Fetcher) -> Page:
        """Fetch a hit that has no `content`. URLs from search results are untrusted."""
        return await fetcher.fetch(hit.url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SerialLock:
    """An asyncio.Lock for requests that must go one at a time, remade for each event loop (a notebook may
    run several loops in turn, and a lock belongs to the loop it was first awaited on)."""

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop = asyncio.Lock(), loop
        return self._lock


#: Characters that XML (and so lxml) refuses: control characters, lone surrogates, U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """`text` without the characters lxml cannot take (each becomes a space)."""
    return _NOT_XML.sub(" ", text)


def html_to_text(fragment: str | None) -> str:
    """Plain text of an HTML fragment (search snippets, titles): tags dropped, entities decoded, spaces collapsed."""
    if not fragment or not fragment.strip():
        return ""
    import lxml.html
    from lxml.etree import ParserError

    try:
        root = lxml.html.fragment_fromstring(xml_safe(fragment), create_parent="div")
    except ParserError:
        return ""
    for hidden in root.xpath(".//script | .//style"):
        hidden.drop_tree()
    return " ".join(root.text_content().split())


def canonical_url(url: str) -> str:
    """A key under which two spellings of one address compare equal (case of scheme and host, fragment,
    default port and a trailing slash do not matter). A URL that does not parse is its own key: it stays a hit,
    and its fetch says what is wrong with it."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    default_port = {"http": 80, "https": 443}.get(scheme)
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    path = parts.path.rstrip("/") or "/"
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def unique_hits(hits: Iterable[Hit], limit: int) -> list[Hit]:
    """The first `limit` hits whose canonical URLs differ, in the given order."""
    seen: set[str] = set()
    kept: list[Hit] = []
    for hit in hits:
        key = canonical_url(hit.url)
        if key in seen:
            continue
        seen.add(key)
        kept.append(hit)
        if len(kept) >= limit:
            break
    return kept


def parse_date(value: Any) -> date | None:
    """The date of an ISO-8601 date or timestamp; None when absent or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        pass
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def failure(source: str, what: str, page: Page) -> SourceError:
    """The SourceError for an API request whose page came back as an error."""
    if page.http_status:
        return SourceError(f"{source}: {what} failed (HTTP {page.http_status}: {page.error or 'unknown error'}).")
    return SourceError(
        f"{source}: {what} failed (no HTTP response: {page.error or 'unknown error'}). {source} cannot be reached: "
        "check the network, or search elsewhere, e.g. source='local' with path='your/folder', source='searxng' "
        "with base_url='http://your-instance', or the TORQ_NB_SOURCE variable."
    )


def read_json(source: str, what: str, page: Page, hint: str) -> Any:
    """The JSON body of an API answer, or a SourceError naming what came back instead and what to check."""
    if page.status != "ok":
        raise failure(source, what, page)
    try:
        return json.loads(page.text or "")
    except ValueError:
        kind = page.content_type or "an unknown content type"
        raise SourceError(f"{source}: {what} returned {kind}, not JSON (HTTP {page.http_status}). {hint}") from None
