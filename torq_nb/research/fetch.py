"""Polite, bounded, safe HTTP fetching for a research run.

One `Fetcher` per run owns one aiohttp session. `Fetcher.fetch(url)` always returns a `Page`: network,
HTTP and content problems become `Page(status="error", error=<reason>)` rows instead of exceptions,
so every search hit ends as exactly one row. Only cancellation and programming errors propagate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import math
import numbers
import os
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from importlib import metadata
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.robotparser import RobotFileParser

import aiohttp
import charset_normalizer
from multidict import CIMultiDictProxy
from w3lib.encoding import html_to_unicode
from yarl import URL

from torq_nb.research.models import Page
from torq_nb.research.urlsafety import (
    GuardedResolver,
    UnsafeURLError,
    check_url,
    untrusted_request,
    vet_url,
)

if TYPE_CHECKING:
    from torq_nb.research.store import StoreSession

ALLOW_PRIVATE_ENV = "TORQ_NB_ALLOW_PRIVATE_NETWORKS"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_DECODE_IN_LOOP_BYTES = 256 * 1024


def _version() -> str:
    try:
        return metadata.version("torq_nb")
    except metadata.PackageNotFoundError:
        return "dev"


DEFAULT_USER_AGENT = f"torq_nb/{_version()} (+https://github.com/torq-nb/torq_nb; research notebook extension)"


def env_allows_private_networks() -> bool:
    """True when TORQ_NB_ALLOW_PRIVATE_NETWORKS is set to 1/true/yes/on."""
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class FetchPolicy:
    """How a run fetches pages: limits, timeouts, retries, content rules and URL safety.

    Fields:
        concurrency: requests in flight at once, over all hosts.
        per_host: requests in flight at once to one host (politeness).
        connect_timeout: seconds to open a TCP (and TLS) connection.
        read_timeout: seconds allowed between two received chunks.
        total_timeout: seconds for one HTTP request (one attempt of one redirect hop), body included.
        retries: extra attempts after 429, 502, 503, 504 or a connection error (not after timeouts).
        backoff: base delay in seconds; attempt n waits backoff * 2**n, with +-50% jitter,
            unless the server sent Retry-After (seconds or an HTTP date), which wins.
        max_retry_after: ceiling in seconds for any wait between attempts.
        max_bytes: body size cap, enforced while streaming: reading stops once it is passed.
        content_types: media types accepted; anything else is an "unsupported content type" row.
        max_redirects: redirect hops followed before giving up.
        deadline: seconds for the whole run from `async with Fetcher(...)`; later fetches and
            in-flight requests end as "deadline exceeded" rows. None means no deadline.
        obey_robots: check each untrusted URL against its host's robots.txt (cached per host).
        allow_private_networks: let untrusted URLs reach loopback, private and link-local
            addresses (intranets, test servers). Defaults to the TORQ_NB_ALLOW_PRIVATE_NETWORKS
            environment variable, read when the policy is created; an explicit argument wins.
        user_agent: the User-Agent header sent with every request.

    Every field is checked when the policy is made: a wrong type or value raises TypeError or ValueError at
    once, naming the field and giving a value that works.
    """

    concurrency: int = 16
    per_host: int = 4
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    total_timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.5
    max_retry_after: float = 30.0
    max_bytes: int = 5_000_000
    content_types: tuple[str, ...] = (
        "text/html",
        "application/xhtml+xml",
        "text/plain",
        "text/markdown",
        "application/json",
    )
    max_redirects: int = 5
    deadline: float | None = None
    obey_robots: bool = False
    allow_private_networks: bool = field(default_factory=env_allows_private_networks)
    user_agent: str = DEFAULT_USER_AGENT

    def __post_init__(self) -> None:
        for name, least in _COUNTS.items():
            value = getattr(self, name)
            kind = "a whole number of at least 1" if least else "a whole number of 0 or more"
            whole = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
            if isinstance(value, bool) or not whole:
                raise TypeError(self._problem(name, f"must be {kind}, got {value!r}"))
            if value < least:
                raise ValueError(self._problem(name, f"must be {kind}, got {value!r}"))
            object.__setattr__(self, name, int(value))
        for name, positive in _SECONDS.items():
            self._check_seconds(name, positive=positive)
        if self.deadline is not None:
            self._check_seconds("deadline", positive=True, none=", or None for no deadline")
        types = self.content_types
        if isinstance(types, str) or not isinstance(types, (tuple, list)) or not all(isinstance(t, str) for t in types):
            raise TypeError(self._problem("content_types", f"must be a tuple of media types, got {types!r}"))
        if not types:
            raise ValueError(self._problem("content_types", "must name at least one media type, got ()"))
        object.__setattr__(self, "content_types", tuple(types))
        for name in ("obey_robots", "allow_private_networks"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(self._problem(name, f"must be True or False, got {getattr(self, name)!r}"))
        agent = self.user_agent
        if not isinstance(agent, str) or not agent.strip() or any(c in agent for c in "\r\n\0"):
            raise ValueError(self._problem("user_agent", f"must be a non-empty string on one line, got {agent!r}"))

    def _check_seconds(self, name: str, *, positive: bool, none: str = "") -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            why = ": every request is bounded in time" if value is None else ""
            raise TypeError(self._problem(name, f"must be a number of seconds{none and ' or None'}, got {value!r}{why}"))
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            kind = " above 0" if positive else ", 0 or more"
            raise ValueError(self._problem(name, f"must be a finite number of seconds{kind}{none}, got {value!r}"))

    @staticmethod
    def _problem(name: str, what: str) -> str:
        """The message for a bad field: which one, what it must be, and a call that works."""
        example = _EXAMPLES[name]
        return f"FetchPolicy: {name} {what}; for example FetchPolicy({name}={example!r})"


#: Whole-number fields and their least value; fields in seconds and whether 0 is too little; an example for each.
_COUNTS = {"concurrency": 1, "per_host": 1, "max_bytes": 1, "retries": 0, "max_redirects": 0}
_SECONDS = {"connect_timeout": True, "read_timeout": True, "total_timeout": True, "backoff": False,
            "max_retry_after": False}
_EXAMPLES: dict[str, object] = {
    field.name: field.default for field in dataclasses.fields(FetchPolicy) if field.default is not dataclasses.MISSING
}
_EXAMPLES.update(deadline=120.0, allow_private_networks=True)


class _Failure(Exception):
    """A fetch that will not succeed; `Fetcher.fetch` turns it into an error row."""

    def __init__(self, reason: str, http_status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.http_status = http_status


class _Refused(_Failure):
    """URL safety refused the URL."""


class _DeadlineExceeded(_Failure):
    """The run's deadline has passed."""


class _Transient(_Failure):
    """A failure worth retrying (429/5xx, connection trouble); may carry the server's Retry-After."""

    def __init__(self, reason: str, http_status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason, http_status)
        self.retry_after = retry_after


class _Host:
    """One host's share of the fetch budget: its per-host slots, and the time before which no request may go to it.

    A 429, 502, 503 or 504 with Retry-After pauses the host, not only the request it answered: every request to that
    host, from any topic of a batch sharing the Fetcher, waits until then (the wait capped by
    ``max_retry_after``; a later Retry-After only ever extends the pause).
    """

    def __init__(self, per_host: int) -> None:
        self.slots = asyncio.Semaphore(per_host)
        self.not_before = 0.0  # time.monotonic() before which nothing is sent to this host

    def pause(self, seconds: float) -> None:
        self.not_before = max(self.not_before, time.monotonic() + seconds)

    def wait(self) -> float:
        """Seconds left before this host may be asked again (0 when it may be asked now)."""
        return max(0.0, self.not_before - time.monotonic())


@dataclass
class _Trip:
    """What one fetch went through: the URLs it visited, and when its first request got a slot."""

    urls: list[str]
    started: float | None = None

    def elapsed_ms(self) -> float | None:
        return None if self.started is None else round((time.monotonic() - self.started) * 1000, 1)


@dataclass(frozen=True)
class _Answer:
    """One HTTP response: a redirect (body None) or a 2xx with its body."""

    status: int
    headers: CIMultiDictProxy[str]
    content_type: str
    charset: str | None
    body: bytes | None


class Fetcher:
    """Fetches pages for one research run under a `FetchPolicy`; use as `async with Fetcher(policy) as f`.

    With a `store` (a StoreSession, torq_nb/research/store.py), a web page fetched less than its max_age ago
    is answered from the store without a request; an older one is asked for again with its validators
    (If-None-Match / If-Modified-Since), and a 304 answer serves the stored body. Every web page read is kept
    (trusted endpoints' answers are not: their sources keep what they make of them).
    """

    def __init__(self, policy: FetchPolicy | None = None, *, store: StoreSession | None = None) -> None:
        if policy is not None and not isinstance(policy, FetchPolicy):
            raise TypeError(f"Fetcher(policy) takes a FetchPolicy, got {policy!r}; for example Fetcher(FetchPolicy(retries=1))")
        self.policy = policy if policy is not None else FetchPolicy()
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None
        self._slots = asyncio.Semaphore(self.policy.concurrency)
        self._hosts: dict[str, _Host] = {}
        self._robots: dict[str, tuple[RobotFileParser, str]] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}
        self._deadline_at: float | None = None
        self._store = store

    async def __aenter__(self) -> Fetcher:  # noqa: PYI034 (the agreed signature)
        if self._session is not None:
            raise RuntimeError("this Fetcher is already open; create one Fetcher per run")
        self._resolver = GuardedResolver()
        connector = aiohttp.TCPConnector(resolver=self._resolver, use_dns_cache=False, limit=self.policy.concurrency)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": self.policy.user_agent, "Accept": _accept_header(self.policy.content_types)},
            trust_env=False,
        )
        if self.policy.deadline is not None:
            self._deadline_at = time.monotonic() + self.policy.deadline
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, resolver = self._session, self._resolver
        self._session = self._resolver = None
        if session is not None:
            await session.close()
        if resolver is not None:
            await resolver.close()

    async def fetch(
        self,
        url: str,
        *,
        trusted: bool = False,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Page:
        """Fetch `url` and return its decoded text, or an error row saying why not.

        trusted: the URL is an endpoint the user configured (a local SearXNG, a search API), so its
            address is not checked; redirect targets are always checked.
        params: query parameters added to the URL. headers: extra request headers, sent only to the
            URL's own origin (dropped when a redirect leaves it).
        The result's `redirects` lists the URLs that answered with a redirect, in order;
        `final_url` is the URL that gave the final answer (or the last one tried, on error);
        `elapsed_ms` runs from the first request (after waiting for a free slot) to the end,
        retries and redirects included (None if no request was made).
        """
        if self._session is None:
            raise RuntimeError("Fetcher is not open; use `async with Fetcher(policy) as fetcher:`")
        trip = _Trip([url])
        try:
            start = URL(url)
            check_url(start)
            if params:
                start = start.extend_query(params)
        except UnsafeURLError as refused:
            return _error_page(url, trip, _Refused(str(refused)))
        except (ValueError, TypeError) as bad:
            return _error_page(url, trip, _Failure(f"invalid URL {url!r}: {bad}"))
        # Only web pages are kept, not a trusted endpoint's answers (an API's error can come as a 200: its source
        # judges it). A page kept from a fetch that allowed private networks may be private: a policy refusing
        # them asks again.
        store = None if trusted else self._store
        public_only = not self.policy.allow_private_networks
        stored = None if store is None else await store.page(str(start), public_only=public_only)
        if stored is not None and store is not None and store.fresh(stored.fetched_at):
            _note_answer(from_store=True)
            return stored.page(url)
        if stored is not None:
            headers = {**(headers or {}), **stored.validators()}
        try:
            answer, final = await self._follow(
                start, trusted=trusted, headers=headers, trip=trip,
                types=self.policy.content_types, robots=self.policy.obey_robots,
            )
        except _Failure as failure:
            _note_answer(from_store=False)
            return _error_page(url, trip, failure)
        if answer.status == 304 and stored is not None and store is not None:
            _note_answer(from_store=True)
            return (await store.revalidated(stored, answer.headers, trip.elapsed_ms())).page(url)
        assert answer.body is not None
        decode = partial(decode_text, answer.body, declared=answer.charset, content_type=answer.content_type)
        # Guessing the charset of a multi-megabyte body takes a CPU-second: keep it off the event loop.
        text = decode() if len(answer.body) < _DECODE_IN_LOOP_BYTES else await asyncio.to_thread(decode)
        page = Page(
            url=url,
            status="ok",
            final_url=str(final),
            http_status=answer.status,
            content_type=answer.content_type,
            text=text,
            fetched_at=datetime.now(timezone.utc),
            elapsed_ms=trip.elapsed_ms(),
            redirects=tuple(trip.urls[:-1]),
        )
        if store is not None:
            await store.save_page(str(start), page, answer.headers, public=public_only)
        _note_answer(from_store=False)
        return page

    async def _follow(
        self,
        start: URL,
        *,
        trusted: bool,
        headers: Mapping[str, str] | None,
        trip: _Trip,
        types: tuple[str, ...] | None,
        robots: bool,
    ) -> tuple[_Answer, URL]:
        """Request `start` and follow redirects hop by hop, checking each hop; `trip` records the URLs."""
        current, seen = start, {start}
        for hop in range(self.policy.max_redirects + 1):
            hop_trusted = trusted and hop == 0
            if robots and not hop_trusted:
                await self._check_robots(current)
            same_origin = current.origin() == start.origin()
            answer = await self._with_retries(
                current, trip, trusted=hop_trusted, headers=headers if same_origin else None, types=types
            )
            if answer.body is not None:
                return answer, current
            if hop == self.policy.max_redirects:
                raise _Failure(f"too many redirects (more than {self.policy.max_redirects})", answer.status)
            location = answer.headers["Location"]
            try:
                target = current.join(URL(location))
                check_url(target)
            except UnsafeURLError as refused:
                trip.urls.append(str(target))
                raise _Refused(str(refused), answer.status) from None
            except ValueError as bad:
                raise _Failure(f"invalid redirect Location {location!r} from {current}: {bad}", answer.status) from None
            if target in seen:
                raise _Failure(f"redirect loop: {current} redirects back to {target}", answer.status)
            seen.add(target)
            trip.urls.append(str(target))
            current = target
        raise AssertionError("unreachable: the loop returns or raises")

    async def _with_retries(
        self, url: URL, trip: _Trip, *, trusted: bool, headers: Mapping[str, str] | None, types: tuple[str, ...] | None
    ) -> _Answer:
        """One hop, retried with back-off after transient failures."""
        attempts = self.policy.retries + 1
        for attempt in range(attempts):
            try:
                return await self._attempt(url, trip, trusted=trusted, headers=headers, types=types)
            except _Transient as problem:
                if attempt == attempts - 1:
                    tries = f"{attempts} attempts" if attempts > 1 else "1 attempt"
                    raise _Failure(f"{problem.reason} (gave up after {tries})", problem.http_status) from None
                delay = problem.retry_after if problem.retry_after is not None else self._backoff(attempt)
                remaining = self._remaining()
                if remaining is not None and delay >= remaining:
                    raise _DeadlineExceeded(f"deadline exceeded while retrying after {problem.reason}", problem.http_status) from None
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    async def _attempt(
        self, url: URL, trip: _Trip, *, trusted: bool, headers: Mapping[str, str] | None, types: tuple[str, ...] | None
    ) -> _Answer:
        """One HTTP request, inside the concurrency slots, after its host's pause (if a Retry-After set one)."""
        # Per-host slot first, then the host's Retry-After pause, then a global slot: waiting on one busy or
        # paused host never ties up global slots.
        key = url.raw_host or ""
        host = self._hosts.get(key) or self._hosts.setdefault(key, _Host(self.policy.per_host))
        async with host.slots:
            while (pause := host.wait()) > 0:
                remaining = self._remaining()
                if remaining is not None and pause >= remaining:
                    raise _DeadlineExceeded(f"deadline exceeded while {url.host} asked to wait (Retry-After)")
                await asyncio.sleep(pause)
            async with self._slots:
                try:
                    return await self._request(url, trip, trusted=trusted, headers=headers, types=types)
                except _Transient as problem:
                    if problem.retry_after is not None:
                        host.pause(problem.retry_after)
                    raise

    async def _request(
        self, url: URL, trip: _Trip, *, trusted: bool, headers: Mapping[str, str] | None, types: tuple[str, ...] | None
    ) -> _Answer:
        """The request itself, once it holds its slots; untrusted URLs inside the address guard."""
        assert self._session is not None and self._resolver is not None
        if trip.started is None:
            trip.started = time.monotonic()
        remaining = self._remaining()
        if remaining is not None and remaining <= 0:
            raise _DeadlineExceeded("deadline exceeded")
        total = self.policy.total_timeout if remaining is None else min(self.policy.total_timeout, remaining)
        timeout = aiohttp.ClientTimeout(
            total=total, sock_connect=self.policy.connect_timeout, sock_read=self.policy.read_timeout
        )
        try:
            guard: AbstractContextManager[None] = (
                nullcontext() if trusted else untrusted_request(allow_private=self.policy.allow_private_networks)
            )
            with guard:
                if not trusted:
                    await self._vet(url)
                async with self._session.get(url, headers=headers, allow_redirects=False, timeout=timeout) as resp:
                    return await self._answer(resp, types)
        except UnsafeURLError as refused:
            raise _Refused(str(refused)) from None
        except aiohttp.ConnectionTimeoutError:
            raise _Failure(f"timed out connecting to {url.host} (after {self.policy.connect_timeout:g} s)") from None
        except aiohttp.SocketTimeoutError:
            raise _Failure(f"timed out: no data for {self.policy.read_timeout:g} s") from None
        except asyncio.TimeoutError:
            if total < self.policy.total_timeout:
                raise _DeadlineExceeded("deadline exceeded") from None
            raise _Failure(f"timed out after {total:g} s") from None
        except aiohttp.ClientConnectorDNSError as dns:
            raise _Failure(f"could not resolve host {url.host}: {_cause(dns)}") from None
        except aiohttp.ClientPayloadError as broken:
            raise _Transient(f"connection broke while reading the body: {_cause(broken)}") from None
        except aiohttp.ClientConnectionError as lost:
            raise _Transient(f"connection error: {_cause(lost)}") from None
        except aiohttp.ClientError as other:
            raise _Failure(f"request failed: {_cause(other)}") from None

    async def _vet(self, url: URL) -> None:
        """Resolve and check an untrusted URL (the answer is pinned for the connection), within connect_timeout."""
        assert self._resolver is not None
        try:
            await asyncio.wait_for(vet_url(url, self._resolver), self.policy.connect_timeout)
        except asyncio.TimeoutError:
            raise _Failure(f"timed out resolving {url.host} (after {self.policy.connect_timeout:g} s)") from None
        except OSError as dns:
            raise _Failure(f"could not resolve host {url.host}: {_cause(dns)}") from None

    async def _answer(self, resp: aiohttp.ClientResponse, types: tuple[str, ...] | None) -> _Answer:
        """Classify a response; read the body (within the cap) only for an acceptable 2xx."""
        status, reason = resp.status, f"HTTP {resp.status} {resp.reason or ''}".rstrip()
        if status in RETRY_STATUSES:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if retry_after is not None:
                retry_after = min(retry_after, self.policy.max_retry_after)
            raise _Transient(reason, status, retry_after)
        if status in REDIRECT_STATUSES and "Location" in resp.headers:
            return _Answer(status, resp.headers, resp.content_type, None, None)
        if status == 304 and {"If-None-Match", "If-Modified-Since"} & resp.request_info.headers.keys():
            return _Answer(status, resp.headers, resp.content_type, None, b"")  # the stored body is current
        if not 200 <= status < 300:
            raise _Failure(reason, status)
        if "Content-Type" not in resp.headers and types is not None:
            raise _Failure("unsupported content type: the server declared none", status)
        if types is not None and resp.content_type not in types:
            raise _Failure(f"unsupported content type {resp.content_type}", status)
        body = await self._read_capped(resp)
        if not body.strip():
            raise _Failure(f"empty body ({reason})", status)
        return _Answer(status, resp.headers, resp.content_type, resp.charset, body)

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        """Read the body, stopping as soon as it passes max_bytes (the rest is never downloaded)."""
        cap = self.policy.max_bytes
        if resp.content_length is not None and resp.content_length > cap:
            resp.close()
            raise _Failure(f"body larger than {cap} bytes (Content-Length {resp.content_length})", resp.status)
        if resp.content_length is not None and "Content-Encoding" not in resp.headers:
            return await resp.read()  # the declared length is within the cap, and aiohttp enforces it
        body = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > cap:
                resp.close()
                raise _Failure(f"body larger than {cap} bytes", resp.status)
        return bytes(body)

    async def _check_robots(self, url: URL) -> None:
        """Refuse `url` if its host's robots.txt disallows it for our user agent."""
        key = str(url.origin())
        async with self._robots_locks.setdefault(key, asyncio.Lock()):
            if key not in self._robots:
                self._robots[key] = await self._load_robots(url.origin())
        parser, note = self._robots[key]
        if not parser.can_fetch(self.policy.user_agent, str(url)):
            raise _Failure(f"disallowed by robots.txt{note}")

    async def _load_robots(self, origin: URL) -> tuple[RobotFileParser, str]:
        """Fetch and parse robots.txt per RFC 9309: a missing or empty one (4xx, no body) allows everything;
        an unreachable one (5xx, network failure) disallows everything."""
        robots_url = origin.with_path("/robots.txt")
        parser = RobotFileParser(str(robots_url))
        try:
            answer, _ = await self._follow(
                robots_url, trusted=False, headers=None, trip=_Trip([str(robots_url)]), types=None, robots=False
            )
        except (_Refused, _DeadlineExceeded):
            raise
        except _Failure as failure:
            if failure.http_status is not None and failure.http_status < 500:
                parser.parse([])
                return parser, ""
            parser.parse(["User-agent: *", "Disallow: /"])
            return parser, f" (robots.txt unreachable: {failure.reason})"
        assert answer.body is not None
        parser.parse(decode_text(answer.body, declared=answer.charset, content_type="text/plain").splitlines())
        return parser, ""

    def _remaining(self) -> float | None:
        return None if self._deadline_at is None else self._deadline_at - time.monotonic()

    def _backoff(self, attempt: int) -> float:
        delay = self.policy.backoff * 2.0**attempt * random.uniform(0.5, 1.5)
        return min(delay, self.policy.max_retry_after)


_store_answers: ContextVar[list[bool] | None] = ContextVar("torq_nb_store_answers", default=None)


@contextmanager
def store_answers() -> Iterator[list[bool]]:
    """For each fetch this task makes inside the block, note whether the run store answered it (True: a fresh
    stored page, or a 304 to a conditional request) or the network did (False)."""
    answers: list[bool] = []
    token = _store_answers.set(answers)
    try:
        yield answers
    finally:
        _store_answers.reset(token)


def _note_answer(*, from_store: bool) -> None:
    answers = _store_answers.get()
    if answers is not None:
        answers.append(from_store)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def decode_text(body: bytes, *, declared: str | None = None, content_type: str = "text/html") -> str:
    """Decode a page body, or a local file, as browsers do (w3lib's html_to_unicode): a BOM, else the HTTP
    charset `declared`, else a <meta> or XML declaration, else UTF-8 if valid, else charset-normalizer's guess
    (JSON: UTF-8, RFC 8259). Labels read as browsers read them (latin-1 is windows-1252); a label that names
    no text codec (base64) counts as none; undecodable bytes become U+FFFD rather than errors."""
    detect = None if content_type == "application/json" else _undeclared_charset
    for header in ([f"{content_type}; charset={declared}"] if declared else []) + [content_type]:
        try:
            return str(html_to_unicode(header, body, auto_detect_fun=detect)[1])
        except LookupError:  # a bytes-to-bytes codec was declared: read on without that declaration
            continue
    return body.decode((detect and detect(body)) or "utf-8", errors="replace")


def _undeclared_charset(body: bytes) -> str | None:
    """The charset of a body that declares none: UTF-8 if it is valid UTF-8, else charset-normalizer's guess."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        best = charset_normalizer.from_bytes(body).best()
        return best.encoding if best is not None else None
    return "utf-8"


def _accept_header(types: tuple[str, ...]) -> str:
    return ", ".join((*types, "*/*;q=0.1"))


def _cause(exc: BaseException) -> str:
    """A short human description of an aiohttp/OS error (its innermost cause, without class noise)."""
    inner: BaseException = exc
    while inner.__cause__ is not None:
        inner = inner.__cause__
    text = getattr(inner, "strerror", None) or getattr(inner, "message", None) or str(inner) or type(inner).__name__
    return " ".join(str(text).split())


def _error_page(url: str, trip: _Trip, failure: _Failure) -> Page:
    return Page(
        url=url,
        status="error",
        final_url=trip.urls[-1],
        http_status=failure.http_status,
        error=failure.reason,
        fetched_at=datetime.now(timezone.utc),
        elapsed_ms=trip.elapsed_ms(),
        redirects=tuple(trip.urls[:-1]),
    )
