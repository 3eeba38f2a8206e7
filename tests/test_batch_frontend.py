"""Front-end tests: js/tests/batch.test.js runs the real batch widget (js/src/common.js + batch.js, as
anywidget is sent it) in Chromium, each JS test reported as its own pytest case (tests/js_frontend.py)."""

from __future__ import annotations

import pytest

from tests.js_frontend import js_suite

pytestmark = pytest.mark.browser

js_results, test_every_js_test_reported, test_js = js_suite("batch")
