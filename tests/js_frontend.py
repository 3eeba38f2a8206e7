"""The front-end tests' one harness: js/tests/<widget>.test.js runs in Chromium against the widget's code as
anywidget gets it (js/src/common.* then js/src/<widget>.*, joined by torq_nb.progress.widget.widget_asset).

js/ is served from a loopback HTTP server (ES modules do not load from file://), with ``src/<widget>.js`` and
``src/<widget>.css`` answered by widget_asset; the page js/tests/index.html?widget=<widget> runs the suite, and
each JS test is reported as its own pytest case.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from tests.jupyter_server import launch_chromium, require_chromium
from torq_nb.progress.widget import widget_asset

JS_DIR = Path(__file__).resolve().parent.parent / "js"
_TYPES = {".js": "text/javascript", ".css": "text/css"}

Results = dict[str, dict[str, Any]]


class _Handler(SimpleHTTPRequestHandler):
    """js/'s files, except a widget's own module and stylesheet: those are what anywidget is sent."""

    def do_GET(self) -> None:
        path = Path(self.path.split("?", 1)[0])
        if path.parent == Path("/src") and path.suffix in _TYPES and path.stem != "common":
            body = widget_asset(path.name).encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", f"{_TYPES[path.suffix]}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature
        pass


def run_js_suite(widget: str) -> Results:
    """Run js/tests/<widget>.test.js once in Chromium; its results by test name."""
    require_chromium()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(JS_DIR)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.goto(f"http://127.0.0.1:{server.server_port}/tests/index.html?widget={widget}")
                try:
                    page.wait_for_function("Array.isArray(window.__torqResults)", timeout=60_000)
                except Exception as exc:
                    raise AssertionError(f"the JS test page did not finish; page errors: {errors}") from exc
                results: list[dict[str, Any]] = page.evaluate("window.__torqResults")
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return {result["name"]: result for result in results}


def js_suite(widget: str) -> tuple[Callable[[], Iterator[Results]], Callable[[Results], None], Callable[[str, Results], None]]:
    """The fixture and the two tests of one widget's JS suite, for its test module to bind by name:
    ``js_results, test_every_js_test_reported, test_js = js_suite("batch")``."""
    test_file = JS_DIR / "tests" / f"{widget}.test.js"
    names = re.findall(r'^test\("([^"]+)"', test_file.read_text(encoding="utf-8"), flags=re.MULTILINE)

    @pytest.fixture(scope="module")
    def js_results() -> Iterator[Results]:
        yield run_js_suite(widget)

    def test_every_js_test_reported(js_results: Results) -> None:
        assert names, f"no test(...) calls found in {test_file}"
        assert sorted(js_results) == sorted(names)

    @pytest.mark.parametrize("name", names)
    def test_js(name: str, js_results: Results) -> None:
        result = js_results[name]
        assert result["ok"], result["error"]

    return js_results, test_every_js_test_reported, test_js
