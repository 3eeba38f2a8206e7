"""The fetcher against a real loopback server that misbehaves in every way the fetcher guards against."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
from collections.abc import AsyncIterator
from datetime import timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from netns import run_isolated
from web_faults import CP1252_TEXT, EUC_KR_TEXT, SHIFT_JIS_TEXT, FaultServer

from torq_nb.research.fetch import Fetcher, FetchPolicy, decode_text, parse_retry_after

#: Loopback test servers are private addresses, so untrusted fetches need this; timeouts are kept small.
FAST = FetchPolicy(
    allow_private_networks=True, connect_timeout=2, read_timeout=0.5, total_timeout=2, backoff=0.01, max_retry_after=2
)


@pytest.fixture
async def server() -> AsyncIterator[FaultServer]:
    async with FaultServer() as running:
        yield running


async def fetch_one(url: str, policy: FetchPolicy = FAST, **kwargs: Any) -> Any:
    async with Fetcher(policy) as fetcher:
        return await fetcher.fetch(url, **kwargs)


async def test_a_page_comes_back_decoded_with_its_metadata(server: FaultServer) -> None:
    page = await fetch_one(server.url("/ok"))
    assert page.status == "ok" and page.error is None
    assert "Hello from the fault server." in page.text
    assert (page.http_status, page.content_type, page.final_url) == (200, "text/html", server.url("/ok"))
    assert page.fetched_at.tzinfo is timezone.utc
    assert page.elapsed_ms >= 0 and page.redirects == ()


async def test_requests_identify_the_extension(server: FaultServer) -> None:
    page = await fetch_one(server.url("/echo-headers"))
    sent = json.loads(page.text)
    assert sent["User-Agent"].startswith("torq_nb/") and "research notebook extension" in sent["User-Agent"]
    assert "text/html" in sent["Accept"]


async def test_params_are_added_to_the_query(server: FaultServer) -> None:
    page = await fetch_one(server.url("/ok?a=1"), params={"q": "café au lait"})
    assert page.final_url == server.url("/ok?a=1&q=caf%C3%A9+au+lait")


# --- URL safety ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "0x7f.1", "2130706433"])
async def test_loopback_urls_are_refused_without_allow_private(server: FaultServer, host: str) -> None:
    page = await fetch_one(f"http://{host}:{server.port}/ok", FetchPolicy(allow_private_networks=False))
    assert page.status == "error"
    assert page.error.startswith("refused:") and "loopback" in page.error and "allow_private_networks=True" in page.error
    assert server.hits["/ok"] == 0


async def test_env_variable_allows_private_networks(server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORQ_NB_ALLOW_PRIVATE_NETWORKS", "1")
    assert (await fetch_one(server.url("/ok"), FetchPolicy())).status == "ok"
    assert (await fetch_one(server.url("/ok"), FetchPolicy(allow_private_networks=False))).status == "error"


async def test_trusted_endpoint_on_loopback_is_fetched(server: FaultServer) -> None:
    page = await fetch_one(server.url("/ok"), FetchPolicy(allow_private_networks=False), trusted=True)
    assert page.status == "ok"


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("http://127.0.0.1:{port}/ok", "127.0.0.1 is a loopback address"),
        ("http://[::1]:{port}/ok", "::1 is a loopback address"),
        ("http://localhost:{port}/ok", "localhost resolves to"),
        ("file:///etc/passwd", "only http and https"),
    ],
)
async def test_redirects_from_a_trusted_endpoint_are_checked(server: FaultServer, target: str, why: str) -> None:
    """Loopback and file: targets only: redirects to metadata addresses are checked in a loopback-only namespace
    (test_metadata_is_refused_in_every_ipv6_spelling_before_any_connection), where a failing guard sends nothing."""
    start = server.url("/redirect?to=" + target.format(port=server.port).replace("&", "%26"))
    page = await fetch_one(start, FetchPolicy(allow_private_networks=False), trusted=True)
    assert page.status == "error" and why in page.error
    assert page.redirects == (start,)
    assert server.hits["/ok"] == 0


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/", "not a url", "http://[::1"])
async def test_bad_urls_become_error_rows(url: str) -> None:
    page = await fetch_one(url, trusted=True)
    assert page.status == "error" and page.url == url and page.elapsed_ms is None
    assert page.error.startswith(("refused: only http and https", "invalid URL"))


# --- timeouts, retries, back-off ---------------------------------------------------------------------


async def test_slow_headers_time_out_without_retrying(server: FaultServer) -> None:
    page = await fetch_one(server.url("/sleep?s=3"))
    assert page.status == "error" and page.error == "timed out: no data for 0.5 s"
    assert server.hits["/sleep"] == 1


async def test_a_trickling_body_hits_the_total_timeout(server: FaultServer) -> None:
    page = await fetch_one(server.url("/trickle?chunks=40&every=0.1"), FetchPolicy(allow_private_networks=True, total_timeout=1))
    assert page.status == "error" and page.error == "timed out after 1 s"


async def test_a_stalled_body_hits_the_read_timeout(server: FaultServer) -> None:
    page = await fetch_one(server.url("/trickle?chunks=3&every=2"))
    assert page.status == "error" and "no data for 0.5 s" in page.error


async def test_429_retry_after_seconds_is_honoured(server: FaultServer) -> None:
    page = await fetch_one(server.url("/retry-after?fail=1&after=1"))
    assert page.status == "ok"
    first, second = server.arrivals["/retry-after"]
    assert server.hits["/retry-after"] == 2 and second - first >= 0.9


async def test_429_retry_after_http_date_is_honoured(server: FaultServer) -> None:
    page = await fetch_one(server.url("/retry-after?fail=1&after=2&date=1"))
    assert page.status == "ok" and server.hits["/retry-after"] == 2
    first, second = server.arrivals["/retry-after"]
    assert second - first >= 0.9  # the date has whole-second precision


async def test_retry_after_is_capped(server: FaultServer) -> None:
    policy = FetchPolicy(allow_private_networks=True, max_retry_after=0.1)
    page = await fetch_one(server.url("/retry-after?fail=1&after=3600"), policy)
    assert page.status == "ok" and server.hits["/retry-after"] == 2


async def test_retry_after_pauses_the_host_for_every_request(server: FaultServer) -> None:
    """One topic's 429 (Retry-After: 1) holds back the other topics' requests to that host, made meanwhile, until
    the second has passed; a request to another host goes at once. One Fetcher, as a batch shares it; per_host=1
    queues the other requests behind the first, so they are made while its 429 is outstanding."""
    policy = FetchPolicy(allow_private_networks=True, per_host=1, backoff=0.01)
    async with Fetcher(policy) as fetcher:
        first = asyncio.ensure_future(fetcher.fetch(server.url("/retry-after?fail=1&after=1")))
        others = [asyncio.ensure_future(fetcher.fetch(server.url(f"/page?ms=0&n={i}"))) for i in range(3)]
        while not server.hits["/retry-after"]:
            await asyncio.sleep(0.01)
        elsewhere = await fetcher.fetch(f"http://localhost:{server.port}/ok")
        pages = await asyncio.gather(first, *others)
    assert elsewhere.status == "ok" and all(page.status == "ok" for page in pages)
    refused, retried = server.arrivals["/retry-after"]
    assert len(server.arrivals["/page"]) == 3
    assert all(arrival - refused >= 0.9 for arrival in server.arrivals["/page"])
    assert retried - refused >= 0.9
    assert server.arrivals["/ok"][0] < min(server.arrivals["/page"])  # the other host was not paused


async def test_a_request_made_after_the_429_waits_for_the_host(server: FaultServer) -> None:
    """With no retries the 429 ends its own fetch at once; a later fetch to the host still waits out the pause."""
    policy = FetchPolicy(allow_private_networks=True, retries=0)
    async with Fetcher(policy) as fetcher:
        refused = await fetcher.fetch(server.url("/retry-after?fail=1&after=1"))
        later = await fetcher.fetch(server.url("/ok"))
    assert refused.status == "error" and refused.http_status == 429 and later.status == "ok"
    assert server.arrivals["/ok"][0] - server.arrivals["/retry-after"][0] >= 0.9


async def test_the_host_pause_is_capped_and_bounded_by_the_deadline(server: FaultServer) -> None:
    capped = FetchPolicy(allow_private_networks=True, retries=0, max_retry_after=0.3)
    async with Fetcher(capped) as fetcher:
        await fetcher.fetch(server.url("/retry-after?fail=1&after=3600"))
        later = await fetcher.fetch(server.url("/ok"))
    assert later.status == "ok" and server.arrivals["/ok"][0] - server.arrivals["/retry-after"][0] >= 0.25
    short = FetchPolicy(allow_private_networks=True, retries=0, deadline=1)
    async with Fetcher(short) as fetcher:
        await fetcher.fetch(server.url("/retry-after?fail=2&after=20"))
        late = await fetcher.fetch(server.url("/page?ms=0"))
    assert late.status == "error" and late.error == "deadline exceeded while 127.0.0.1 asked to wait (Retry-After)"
    assert server.hits["/page"] == 0


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_transient_5xx_is_retried_until_success(server: FaultServer, status: int) -> None:
    page = await fetch_one(server.url(f"/flaky?status={status}&fail=2"))
    assert page.status == "ok" and server.hits["/flaky"] == 3


async def test_backoff_grows_between_attempts(server: FaultServer) -> None:
    policy = FetchPolicy(allow_private_networks=True, backoff=0.2, retries=2)
    page = await fetch_one(server.url("/always?status=503"), policy)
    assert page.status == "error"
    t = server.arrivals["/always"]
    assert len(t) == 3
    assert t[1] - t[0] >= 0.2 * 0.5 and t[2] - t[1] >= 0.4 * 0.5  # base * 2**n, at least half with jitter


async def test_always_503_gives_up_with_the_status(server: FaultServer) -> None:
    page = await fetch_one(server.url("/always?status=503"))
    assert page.status == "error" and page.http_status == 503
    assert page.error == "HTTP 503 Service Unavailable (gave up after 4 attempts)"
    assert server.hits["/always"] == 4


@pytest.mark.parametrize("status", [404, 500, 403])
async def test_other_http_errors_are_not_retried(server: FaultServer, status: int) -> None:
    page = await fetch_one(server.url(f"/always?status={status}"))
    assert page.status == "error" and page.http_status == status and page.error.startswith(f"HTTP {status}")
    assert server.hits["/always"] == 1


async def test_retries_zero_means_one_attempt(server: FaultServer) -> None:
    policy = FetchPolicy(allow_private_networks=True, retries=0)
    page = await fetch_one(server.url("/always?status=503"), policy)
    assert page.status == "error" and server.hits["/always"] == 1


async def test_a_closed_port_is_retried_then_reported() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    page = await fetch_one(f"http://127.0.0.1:{port}/", FetchPolicy(allow_private_networks=True, backoff=0.01, retries=1))
    assert page.status == "error" and page.http_status is None
    assert page.error.startswith("connection error:") and page.error.endswith("(gave up after 2 attempts)")


@pytest.mark.parametrize("path", ["/reset", "/truncated"])
async def test_broken_bodies_are_retried_then_reported(server: FaultServer, path: str) -> None:
    page = await fetch_one(server.url(path))
    assert page.status == "error" and "connection broke while reading the body" in page.error
    assert server.hits[path] == 4


# --- content -------------------------------------------------------------------------------------------


async def test_oversized_body_stops_reading_early(server: FaultServer) -> None:
    policy = FetchPolicy(allow_private_networks=True, max_bytes=100_000)
    page = await fetch_one(server.url("/oversized?mb=64"), policy)
    assert page.status == "error" and page.error == "body larger than 100000 bytes"
    await asyncio.sleep(0.2)  # let the server notice the hang-up
    assert server.bytes_sent["/oversized"] < 32 * 1024 * 1024


async def test_a_compressed_body_is_capped_by_its_inflated_size(server: FaultServer) -> None:
    policy = FetchPolicy(allow_private_networks=True, max_bytes=1_000_000)
    page = await fetch_one(server.url("/gzip-bomb"), policy)
    assert page.status == "error" and page.error == "body larger than 1000000 bytes"


async def test_a_large_page_within_the_cap_is_decoded(server: FaultServer) -> None:
    page = await fetch_one(server.url("/oversized?mb=1"))
    assert page.status == "ok" and page.text == "a" * 1024 * 1024


async def test_declared_oversized_body_is_refused_before_reading(server: FaultServer) -> None:
    policy = FetchPolicy(allow_private_networks=True, max_bytes=100_000)
    page = await fetch_one(server.url("/oversized?mb=1&declare=1"), policy)
    assert page.error == "body larger than 100000 bytes (Content-Length 1048576)"


async def test_binary_content_is_refused(server: FaultServer) -> None:
    page = await fetch_one(server.url("/image.png"))
    assert page.status == "error" and page.error == "unsupported content type image/png" and page.http_status == 200


async def test_content_type_allow_list_is_configurable(server: FaultServer) -> None:
    assert (await fetch_one(server.url("/json"))).text == '{"answer": "caf\\u00e9"}'
    only_html = FetchPolicy(allow_private_networks=True, content_types=("text/html",))
    assert (await fetch_one(server.url("/json"), only_html)).error == "unsupported content type application/json"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/cp1252?where=header", CP1252_TEXT),
        ("/cp1252?where=meta", CP1252_TEXT),
        ("/shift_jis?where=header", SHIFT_JIS_TEXT),
        ("/shift_jis?where=meta", SHIFT_JIS_TEXT),
        ("/euc-kr?where=header", EUC_KR_TEXT),
        ("/euc-kr?where=meta", EUC_KR_TEXT),
        ("/euc-kr?where=none", EUC_KR_TEXT),
        ("/latin1-header", "\u201cquoted\u201d"),
    ],
)
async def test_non_utf8_pages_are_decoded(server: FaultServer, path: str, expected: str) -> None:
    page = await fetch_one(server.url(path))
    assert page.status == "ok" and expected in page.text and "\ufffd" not in page.text


async def test_empty_body_is_an_error_row(server: FaultServer) -> None:
    page = await fetch_one(server.url("/empty"))
    assert page.status == "error" and page.error == "empty body (HTTP 200 OK)" and page.http_status == 200


async def test_malformed_html_is_passed_on_as_text(server: FaultServer) -> None:
    page = await fetch_one(server.url("/malformed"))
    assert page.status == "ok" and "unclosed <div>" in page.text


# --- redirects -----------------------------------------------------------------------------------------


async def test_redirect_chain_is_recorded(server: FaultServer) -> None:
    page = await fetch_one(server.url("/chain?n=5"))
    assert page.status == "ok" and page.final_url == server.url("/ok")
    assert page.redirects == tuple(server.url(f"/chain?n={n}") for n in range(5, 0, -1))


async def test_redirect_cap(server: FaultServer) -> None:
    page = await fetch_one(server.url("/chain?n=6"))
    assert page.status == "error" and page.error == "too many redirects (more than 5)" and page.http_status == 302
    no_redirects = FetchPolicy(allow_private_networks=True, max_redirects=0)
    assert (await fetch_one(server.url("/chain?n=1"), no_redirects)).error == "too many redirects (more than 0)"


async def test_redirect_loop_is_detected(server: FaultServer) -> None:
    page = await fetch_one(server.url("/loop-a"))
    assert page.status == "error" and page.error.startswith("redirect loop:")
    assert server.hits["/loop-a"] == 1 and server.hits["/loop-b"] == 1


async def test_custom_headers_do_not_follow_a_redirect_to_another_origin(server: FaultServer) -> None:
    secret = {"Authorization": "Bearer s3cret"}
    same = await fetch_one(server.url("/redirect?to=/echo-headers"), headers=secret)
    assert json.loads(same.text)["Authorization"] == "Bearer s3cret"
    other_origin = f"http://localhost:{server.port}/echo-headers"
    away = await fetch_one(server.url("/redirect?to=" + other_origin), headers=secret)
    assert away.status == "ok" and "Authorization" not in json.loads(away.text)


# --- politeness, deadline, robots ------------------------------------------------------------------------


async def fetch_at_once(server: FaultServer, policy: FetchPolicy, count: int, ms: int,
                        hosts: tuple[str, ...] = ("127.0.0.1",)) -> list[Any]:
    """``count`` pages that each take ``ms`` to answer, asked for at once through one Fetcher, the hosts
    (names of the one server) taken in turn."""
    async with Fetcher(policy) as fetcher:
        return await asyncio.gather(
            *(fetcher.fetch(f"http://{hosts[i % len(hosts)]}:{server.port}/page?ms={ms}&n={i}") for i in range(count))
        )


async def test_per_host_limit_holds_at_the_server(server: FaultServer) -> None:
    policy = FetchPolicy(allow_private_networks=True, concurrency=16, per_host=3)
    pages = await fetch_at_once(server, policy, 12, ms=100)
    assert all(page.status == "ok" for page in pages)
    assert server.max_in_flight == 3


async def test_total_concurrency_limit_holds_across_hosts(server: FaultServer) -> None:
    policy = FetchPolicy(allow_private_networks=True, concurrency=4, per_host=8)
    pages = await fetch_at_once(server, policy, 16, ms=100, hosts=("127.0.0.1", "localhost"))
    assert all(page.status == "ok" for page in pages)
    assert server.max_in_flight == 4


async def test_per_host_limit_is_per_host(server: FaultServer) -> None:
    policy = FetchPolicy(allow_private_networks=True, concurrency=16, per_host=2)
    await fetch_at_once(server, policy, 12, ms=150, hosts=("127.0.0.1", "localhost"))
    assert server.max_in_flight == 4


async def test_deadline_ends_in_flight_and_later_fetches(server: FaultServer) -> None:
    policy = FetchPolicy(allow_private_networks=True, deadline=0.5, read_timeout=5, total_timeout=5)
    async with Fetcher(policy) as fetcher:
        slow = await fetcher.fetch(server.url("/sleep?s=3"))
        late = await fetcher.fetch(server.url("/ok"))
    assert slow.status == "error" and (slow.error or "").startswith("deadline exceeded")
    assert late.status == "error" and late.error == "deadline exceeded"
    assert server.hits["/ok"] == 0


async def test_deadline_stops_retry_waits(server: FaultServer) -> None:
    policy = FetchPolicy(allow_private_networks=True, deadline=1)
    page = await fetch_one(server.url("/retry-after?fail=1&after=20"), policy)
    assert page.error == "deadline exceeded while retrying after HTTP 429 Too Many Requests"
    assert server.hits["/retry-after"] == 1


async def test_robots_txt_is_obeyed_when_asked_and_fetched_once(server: FaultServer) -> None:
    polite = FetchPolicy(allow_private_networks=True, obey_robots=True)
    async with Fetcher(polite) as fetcher:
        blocked = await fetcher.fetch(server.url("/private"))
        allowed = await asyncio.gather(*(fetcher.fetch(server.url("/ok")) for _ in range(5)))
    assert blocked.status == "error" and blocked.error == "disallowed by robots.txt"
    assert all(page.status == "ok" for page in allowed)
    assert server.hits["/private"] == 0 and server.hits["/robots.txt"] == 1
    assert (await fetch_one(server.url("/private"))).status == "ok"  # obey_robots is off by default


async def test_missing_or_empty_robots_txt_allows_and_unreachable_disallows(server: FaultServer) -> None:
    polite = FetchPolicy(allow_private_networks=True, obey_robots=True, retries=0)
    server.robots_txt = ""
    assert (await fetch_one(server.url("/private"), polite)).status == "ok"
    server.robots_status = 404
    assert (await fetch_one(server.url("/private"), polite)).status == "ok"
    server.robots_status = 503
    page = await fetch_one(server.url("/private"), polite)
    assert page.error == "disallowed by robots.txt (robots.txt unreachable: HTTP 503 Service Unavailable (gave up after 1 attempt))"


# --- lifecycle ---------------------------------------------------------------------------------------


async def test_cancellation_propagates_and_leaves_no_unclosed_session(server: FaultServer) -> None:
    problems: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: problems.append(context))

    async def run() -> None:
        async with Fetcher(FAST) as fetcher:
            await asyncio.gather(*(fetcher.fetch(server.url("/page?ms=5000")) for _ in range(5)))

    task = asyncio.create_task(run())
    for _ in range(500):
        if server.in_flight == 4:
            break
        await asyncio.sleep(0.01)
    assert server.in_flight == 4
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert not problems


async def test_fetch_outside_the_context_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="async with Fetcher"):
        await Fetcher().fetch("http://example.com/")


def test_policy_rejects_nonsense_values() -> None:
    with pytest.raises(ValueError, match="per_host must be a whole number of at least 1"):
        FetchPolicy(per_host=0)
    with pytest.raises(ValueError, match="deadline must be a finite number of seconds above 0, or None"):
        FetchPolicy(deadline=0)
    with pytest.raises(TypeError, match="content_types must be a tuple of media types"):
        FetchPolicy(content_types="text/html")  # type: ignore[arg-type]


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("options", "error", "says"),
    [
        ({"connect_timeout": NAN}, ValueError, "connect_timeout must be a finite number of seconds above 0, got nan"),
        ({"read_timeout": INF}, ValueError, "read_timeout must be a finite number of seconds above 0, got inf"),
        ({"total_timeout": -1}, ValueError, "total_timeout must be a finite number of seconds above 0, got -1"),
        ({"connect_timeout": None}, TypeError, "connect_timeout must be a number of seconds, got None"),
        ({"read_timeout": "20"}, TypeError, "read_timeout must be a number of seconds, got '20'"),
        ({"deadline": NAN}, ValueError, "deadline must be a finite number of seconds above 0, or None"),
        ({"deadline": INF}, ValueError, "or None for no deadline, got inf"),
        ({"deadline": -5}, ValueError, "deadline must be a finite number of seconds above 0, or None"),
        ({"deadline": "60"}, TypeError, "deadline must be a number of seconds or None, got '60'"),
        ({"backoff": NAN}, ValueError, "backoff must be a finite number of seconds, 0 or more, got nan"),
        ({"max_retry_after": -0.5}, ValueError, "max_retry_after must be a finite number of seconds, 0 or more"),
        ({"retries": 1.5}, TypeError, "retries must be a whole number of 0 or more, got 1.5"),
        ({"retries": "3"}, TypeError, "retries must be a whole number of 0 or more, got '3'"),
        ({"retries": True}, TypeError, "retries must be a whole number of 0 or more, got True"),
        ({"retries": -1}, ValueError, "retries must be a whole number of 0 or more, got -1"),
        ({"max_redirects": 2.5}, TypeError, "max_redirects must be a whole number of 0 or more, got 2.5"),
        ({"concurrency": 0}, ValueError, "concurrency must be a whole number of at least 1, got 0"),
        ({"max_bytes": 2.5e3 + 0.5}, TypeError, "max_bytes must be a whole number of at least 1, got 2500.5"),
        ({"content_types": ()}, ValueError, "content_types must name at least one media type"),
        ({"content_types": ("text/html", 3)}, TypeError, "content_types must be a tuple of media types"),
        ({"obey_robots": "yes"}, TypeError, "obey_robots must be True or False, got 'yes'"),
        ({"allow_private_networks": 1}, TypeError, "allow_private_networks must be True or False, got 1"),
        ({"user_agent": ""}, ValueError, "user_agent must be a non-empty string on one line"),
        ({"user_agent": "bot\r\nX-Evil: 1"}, ValueError, "user_agent must be a non-empty string on one line"),
    ],
)
def test_policy_errors_name_the_field_and_the_fix(options: dict[str, Any], error: type[Exception], says: str) -> None:
    with pytest.raises(error) as raised:
        FetchPolicy(**options)
    message = str(raised.value)
    assert message.startswith("FetchPolicy: ") and says in message
    [name] = options
    assert f"for example FetchPolicy({name}=" in message  # the fix, in the call's own words


def test_policy_accepts_what_the_fields_say() -> None:
    policy = FetchPolicy(retries=0, max_redirects=0, backoff=0, deadline=None, content_types=["text/html"],
                         connect_timeout=1, total_timeout=0.5, max_bytes=10e6)
    assert policy.content_types == ("text/html",) and policy.deadline is None
    assert policy.max_bytes == 10_000_000 and type(policy.max_bytes) is int
    assert hash(policy) == hash(FetchPolicy(retries=0, max_redirects=0, backoff=0, content_types=("text/html",),
                                            connect_timeout=1, total_timeout=0.5, max_bytes=10_000_000))


def test_a_fetcher_needs_a_fetch_policy() -> None:
    with pytest.raises(TypeError, match=r"Fetcher\(policy\) takes a FetchPolicy, got 'fast'"):
        Fetcher("fast")  # type: ignore[arg-type]


# --- decoding and header parsing (pure functions) -----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "declared", "content_type", "expected"),
    [
        ("\ufeffcaf\u00e9".encode("utf-8"), "windows-1252", "text/html", "caf\u00e9"),  # the BOM wins
        ("caf\u00e9".encode("utf-16"), None, "text/plain", "caf\u00e9"),
        ('<?xml version="1.0" encoding="shift_jis"?><p>日本</p>'.encode("shift_jis"), None, "application/xhtml+xml",
         "日本"),
        ('<meta http-equiv="Content-Type" content="text/html; charset=euc-kr">한국어'.encode("euc-kr"), None,
         "text/html", "한국어"),
        ("caf\u00e9".encode("utf-8"), "base64", "text/html", "caf\u00e9"),  # a bytes codec label is ignored
        ("caf\u00e9".encode("utf-8"), "no-such-charset", "text/html", "caf\u00e9"),
        ('{"a": "\u00e9"}'.encode("utf-8"), None, "application/json", '{"a": "\u00e9"}'),
        (("Les na\u00efves fa\u00e7ades co\u00fbtent cher \u00e0 la f\u00eate de No\u00ebl. " * 8).encode("cp1252"),
         None, "text/plain", "na\u00efves fa\u00e7ades"),
        # The only hint is a <meta>: short KOI8-R text that no detector should be trusted with.
        ("<meta http-equiv='Content-Type' content='text/html; charset=koi8-r'><p>Щи да каша</p>".encode("koi8-r"),
         None, "text/html", "Щи да каша"),
        ('<meta charset="base64"><p>caf\u00e9</p>'.encode("utf-8"), None, "text/html", "caf\u00e9"),  # as if none
    ],
)
def test_decode_text(body: bytes, declared: str | None, content_type: str, expected: str) -> None:
    assert expected in decode_text(body, declared=declared, content_type=content_type)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_a_bom_beats_the_header_and_the_meta_and_is_not_text(encoding: str) -> None:
    text = '<meta charset="windows-1252"><p>\u201cna\u00efve\u201d \u65e5\u672c</p>'
    assert decode_text(("\ufeff" + text).encode(encoding), declared="shift_jis") == text


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [("120", 120, 120), ("0", 0, 0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0, 0), (None, None, None), ("soon", None, None)],
)
def test_parse_retry_after(value: str | None, low: float | None, high: float | None) -> None:
    seconds = parse_retry_after(value)
    if low is None:
        assert seconds is None
    else:
        assert seconds is not None and high is not None and low <= seconds <= high


@given(
    body=st.binary(max_size=2000),
    declared=st.sampled_from([None, "utf-8", "latin-1", "shift_jis", "utf-16", "x-bogus", "base64"]),
    content_type=st.sampled_from(["text/html", "text/plain", "application/json"]),
)
def test_decode_text_never_fails(body: bytes, declared: str | None, content_type: str) -> None:
    assert isinstance(decode_text(body, declared=declared, content_type=content_type), str)


# --- URL safety end to end, in a loopback-only network namespace -------------------------------------------

_METADATA_SPELLINGS = ["169.254.169.254", "[64:ff9b:1::a9fe:a9fe]", "[::ffff:0:a9fe:a9fe]", "[64:ff9b::a9fe:a9fe]",
                       "[::ffff:169.254.169.254]", "[2002:a9fe:a9fe::]", "[::169.254.169.254]",
                       "[2001:0:4136:e378:8000:63bf:5601:5601]"]


def test_metadata_is_refused_in_every_ipv6_spelling_before_any_connection() -> None:
    """With private networks allowed, each spelling of 169.254.169.254, as a hit and as a redirect target, is a
    policy refusal: inside the namespace a connection attempt would say "Network is unreachable" instead."""
    script = f"""
import asyncio, json
from web_faults import FaultServer
from torq_nb.research.fetch import Fetcher, FetchPolicy

async def main():
    errors = {{}}
    policy = FetchPolicy(allow_private_networks=True, retries=0, connect_timeout=2, total_timeout=5)
    async with FaultServer() as server, Fetcher(policy) as fetcher:
        for host in {_METADATA_SPELLINGS!r}:
            target = "http://" + host + "/latest/meta-data/"
            hit = await fetcher.fetch(target)
            hop = await fetcher.fetch(server.url("/redirect?to=" + target), trusted=True)
            errors[host] = [hit.error, hop.error]
        errors["control"] = [(await fetcher.fetch("http://192.0.2.1/")).error]
    print(json.dumps(errors))

asyncio.run(main())
"""
    errors = json.loads(run_isolated(script))
    assert "unreachable" in errors.pop("control")[0].lower()  # the namespace really has no route out
    for host, (hit, hop) in errors.items():
        for error in (hit, hop):
            assert error.startswith("refused:") and "cloud-metadata" in error, (host, error)
            assert "169.254.169.254" in error and "unreachable" not in error.lower(), (host, error)


_BAD_HOSTS = ["xn--.test", "xn--zz.test", "a" * 64 + ".test", "a..b.test"]


def test_hosts_that_fail_idna_become_error_rows_as_hits_and_as_redirect_targets() -> None:
    """Such a host is judged before any lookup (in the namespace a lookup would fail differently)."""
    script = f"""
import asyncio, json
from web_faults import FaultServer
from torq_nb.research.fetch import Fetcher, FetchPolicy

async def main():
    rows = {{}}
    async with FaultServer() as server, Fetcher(FetchPolicy(allow_private_networks=True, retries=0)) as fetcher:
        for host in {_BAD_HOSTS!r}:
            hit = await fetcher.fetch("http://" + host + "/page")
            hop = await fetcher.fetch(server.url("/redirect?to=http://" + host + "/page"), trusted=True)
            rows[host] = [[page.status, page.error, page.elapsed_ms] for page in (hit, hop)]
        ok = await fetcher.fetch(server.url("/ok"))
    print(json.dumps({{"rows": rows, "after": ok.status}}))

asyncio.run(main())
"""
    answer = json.loads(run_isolated(script))
    assert answer["after"] == "ok"
    for host, ((status, error, elapsed), (hop_status, hop_error, _)) in answer["rows"].items():
        assert status == hop_status == "error", host
        assert error.startswith("invalid URL") and f"{host} is not a valid host name" in error, error
        assert elapsed is None  # refused before any request
        assert hop_error.startswith("invalid redirect Location") and f"{host} is not a valid host name" in hop_error
