"""A loopback web server whose pages misbehave in every way a fetcher must survive.

Usage in a test::

    async with FaultServer() as server:
        url = server.url("/retry-after?fail=1")
        ...
        assert server.hits["/retry-after"] == 2
        assert server.max_in_flight <= 4

`hits` counts requests per path, `arrivals` holds their arrival times (time.monotonic()), `bytes_sent`
counts what /oversized managed to send before the client hung up, and `robots_status` and
`robots_txt` change what /robots.txt answers.

Routes (query parameters in brackets):
    /ok                      a small UTF-8 HTML page
    /page[?ms=50]            a small HTML page answered after `ms` milliseconds
    /json                    application/json
    /sleep?s=                waits `s` seconds before sending headers (timeouts)
    /trickle?chunks=&every=  sends a chunk of body every `every` seconds (slow bodies)
    /retry-after?fail=&after=&date=1
                             429 with Retry-After (seconds, or an HTTP date) `fail` times, then 200
    /flaky?status=503&fail=2 `status` the first `fail` times, then 200
    /always?status=503       always that status
    /reset                   sends headers and part of the body, then resets the connection
    /truncated               Content-Length promises more than is sent, then the connection closes
    /oversized?mb=&declare=1 streams `mb` MiB (with a Content-Length if `declare`)
    /gzip-bomb               a 20 KiB gzip body that inflates to 20 MiB
    /image.png               a PNG
    /cp1252[?where=header|meta|none], /shift_jis[?where=...], /euc-kr[?where=...]
                             non-UTF-8 pages; the charset is declared in the header, a <meta>, or nowhere
    /latin1-header           declared ISO-8859-1 but using windows-1252 curly quotes (as browsers read it)
    /loop-a, /loop-b         redirect to each other forever
    /chain?n=                a chain of n redirects ending at /ok
    /redirect?to=&status=302 redirect to any URL
    /empty                   200 with an empty body
    /malformed               broken HTML
    /echo-headers            the request headers as JSON
    /robots.txt              disallows /private for every agent (or answers `robots_status`)
    /private                 a page robots.txt disallows
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from types import TracebackType

from aiohttp import web
from aiohttp.typedefs import Handler

PNG_BYTES = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + b"\x00" * 64

CP1252_TEXT = "Caf\u00e9 cr\u00e8me \u2013 \u201cna\u00efve\u201d fa\u00e7ade co\u00fbte 5 \u20ac"
SHIFT_JIS_TEXT = "日本語のウェブページです。東京都の天気は晴れ。"
EUC_KR_TEXT = (
    "대한민국의 수도는 서울입니다. 서울은 한강을 중심으로 발전한 도시이며 인구가 매우 많습니다. "
    "이 문서는 한국어로 작성된 웹 페이지의 예시입니다. 오늘은 날씨가 맑고 따뜻합니다."
)

@functools.cache
def gzip_bomb() -> bytes:
    return gzip.compress(b"a" * 20 * 1024 * 1024)

_CHARSET_PAGES = {"/cp1252": ("windows-1252", CP1252_TEXT), "/shift_jis": ("shift_jis", SHIFT_JIS_TEXT),
                  "/euc-kr": ("euc-kr", EUC_KR_TEXT)}


def html_page(body: str, *, head: str = "") -> str:
    return f"<!DOCTYPE html><html><head>{head}<title>t</title></head><body><p>{body}</p></body></html>"


class FaultServer:
    """The misbehaving site on 127.0.0.1 (a free port), counting requests per path and concurrency."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.arrivals: dict[str, list[float]] = {}
        self.bytes_sent: Counter[str] = Counter()
        self.robots_status = 200
        self.robots_txt = "User-agent: *\nDisallow: /private\n"
        self.in_flight = 0
        self.max_in_flight = 0
        self.last_headers: dict[str, str] = {}
        self._runner: web.AppRunner | None = None
        self.base = ""
        self.app = web.Application(middlewares=[self._count])
        self.app.router.add_routes([
            web.get("/ok", self._ok),
            web.get("/page", self._page),
            web.get("/json", self._json),
            web.get("/sleep", self._sleep),
            web.get("/trickle", self._trickle),
            web.get("/retry-after", self._retry_after),
            web.get("/flaky", self._flaky),
            web.get("/always", self._always),
            web.get("/reset", self._reset),
            web.get("/truncated", self._truncated),
            web.get("/oversized", self._oversized),
            web.get("/gzip-bomb", self._gzip_bomb),
            web.get("/image.png", self._image),
            web.get("/latin1-header", self._latin1_header),
            web.get("/loop-a", self._loop),
            web.get("/loop-b", self._loop),
            web.get("/chain", self._chain),
            web.get("/redirect", self._redirect),
            web.get("/empty", self._empty),
            web.get("/malformed", self._malformed),
            web.get("/echo-headers", self._echo_headers),
            web.get("/robots.txt", self._robots),
            web.get("/private", self._ok),
            *(web.get(path, self._charset_page) for path in _CHARSET_PAGES),
        ])

    async def __aenter__(self) -> FaultServer:  # noqa: PYI034 (no typing_extensions needed on 3.10)
        self._runner = web.AppRunner(self.app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def url(self, path_and_query: str) -> str:
        return self.base + path_and_query

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.hits[request.path] += 1
        self.arrivals.setdefault(request.path, []).append(time.monotonic())
        self.last_headers = dict(request.headers)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1

    async def _ok(self, request: web.Request) -> web.Response:
        return web.Response(text=html_page("Hello from the fault server."), content_type="text/html")

    async def _page(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("ms", "50")) / 1000)
        return web.Response(text=html_page(f"Page {request.query.get('n', '')}"), content_type="text/html")

    async def _json(self, request: web.Request) -> web.Response:
        return web.json_response({"answer": "caf\u00e9"})

    async def _sleep(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query["s"]))
        return await self._ok(request)

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        for _ in range(int(request.query.get("chunks", "20"))):
            await response.write(b"<p>drip</p>\n")
            await asyncio.sleep(float(request.query.get("every", "0.1")))
        await response.write_eof()
        return response

    async def _retry_after(self, request: web.Request) -> web.Response:
        if self.hits[request.path] <= int(request.query.get("fail", "1")):
            after = int(request.query.get("after", "1"))
            value = (format_datetime(datetime.now(timezone.utc) + timedelta(seconds=after), usegmt=True)
                     if request.query.get("date") else str(after))
            return web.Response(status=429, text="slow down", headers={"Retry-After": value})
        return await self._ok(request)

    async def _flaky(self, request: web.Request) -> web.Response:
        if self.hits[request.path] <= int(request.query.get("fail", "2")):
            return web.Response(status=int(request.query.get("status", "503")), text="try later")
        return await self._ok(request)

    async def _always(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.query.get("status", "503")), text="down")

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        await response.write(b"<html><body>" + b"x" * 500)
        await asyncio.sleep(0.01)
        assert request.transport is not None
        request.transport.abort()  # RST, not a clean close
        return response

    async def _truncated(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html", "Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"<html><body>only part of it")
        assert request.transport is not None
        request.transport.close()
        return response

    async def _oversized(self, request: web.Request) -> web.StreamResponse:
        total = int(float(request.query.get("mb", "10")) * 1024 * 1024)
        headers = {"Content-Type": "text/plain"}
        if request.query.get("declare"):
            headers["Content-Length"] = str(total)
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        chunk = b"a" * 65536
        try:
            for _ in range(total // len(chunk)):
                await response.write(chunk)
                self.bytes_sent[request.path] += len(chunk)
            await response.write_eof()
        except ConnectionError:
            pass  # the client hung up, as a capped reader should
        return response

    async def _gzip_bomb(self, request: web.Request) -> web.Response:
        return web.Response(body=gzip_bomb(), headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"})

    async def _image(self, request: web.Request) -> web.Response:
        return web.Response(body=PNG_BYTES, content_type="image/png")

    async def _charset_page(self, request: web.Request) -> web.Response:
        charset, text = _CHARSET_PAGES[request.path]
        where = request.query.get("where", "header")
        head = f'<meta charset="{charset}">' if where == "meta" else ""
        body = html_page(text, head=head).encode(charset)
        content_type = f"text/html; charset={charset}" if where == "header" else "text/html"
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _latin1_header(self, request: web.Request) -> web.Response:
        body = html_page("\u201cquoted\u201d").encode("cp1252")
        return web.Response(body=body, headers={"Content-Type": "text/html; charset=ISO-8859-1"})

    async def _loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop-b" if request.path == "/loop-a" else "/loop-a")

    async def _chain(self, request: web.Request) -> web.Response:
        n = int(request.query["n"])
        raise web.HTTPFound(f"/chain?n={n - 1}" if n > 1 else "/ok")

    async def _redirect(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.query.get("status", "302")), headers={"Location": request.query["to"]})

    async def _empty(self, request: web.Request) -> web.Response:
        return web.Response(body=b"", content_type="text/html")

    async def _malformed(self, request: web.Request) -> web.Response:
        return web.Response(text="<html><body><p>unclosed <div><b>bold <table><tr><td>cell</p></i>", content_type="text/html")

    async def _echo_headers(self, request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(dict(request.headers)), content_type="application/json")

    async def _robots(self, request: web.Request) -> web.Response:
        if self.robots_status != 200:
            return web.Response(status=self.robots_status, text="no robots here")
        return web.Response(text=self.robots_txt, content_type="text/plain")
