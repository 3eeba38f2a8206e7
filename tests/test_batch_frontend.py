"""Front-end tests: js/tests/batch.test.js runs the real js/src/batch.js in Chromium (page js/tests/batch.html),
each JS test reported as its own pytest case."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from tests.jupyter_server import launch_chromium, require_chromium

pytestmark = pytest.mark.browser

JS_DIR = Path(__file__).resolve().parent.parent / "js"
TEST_FILE = JS_DIR / "tests" / "batch.test.js"
JS_TEST_NAMES = re.findall(r'^test\("([^"]+)"', TEST_FILE.read_text(encoding="utf-8"), flags=re.MULTILINE)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature
        pass


@pytest.fixture(scope="module")
def js_results() -> Iterator[dict[str, dict[str, Any]]]:
    require_chromium()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(JS_DIR)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.goto(f"http://127.0.0.1:{server.server_port}/tests/batch.html")
                try:
                    page.wait_for_function("Array.isArray(window.__torqResults)", timeout=60_000)
                except Exception as exc:
                    raise AssertionError(f"the JS test page did not finish; page errors: {errors}") from exc
                results = page.evaluate("window.__torqResults")
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    yield {result["name"]: result for result in results}


def test_every_js_test_reported(js_results: dict[str, dict[str, Any]]) -> None:
    assert JS_TEST_NAMES and sorted(js_results) == sorted(JS_TEST_NAMES)


@pytest.mark.parametrize("name", JS_TEST_NAMES)
def test_js(name: str, js_results: dict[str, dict[str, Any]]) -> None:
    result = js_results[name]
    assert result["ok"], result["error"]
