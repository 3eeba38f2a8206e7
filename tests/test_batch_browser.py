"""The batch widget in JupyterLab in Chromium: 200 topics against a loopback SearXNG (answering after 50 ms,
some searches refused). While the batch runs the widget shows the overall bar, the counts per stage and the
running topics; at the end every topic is counted, the failed ones listed with their reason, and no list
grows with the batch. TORQ_NB_SCREENSHOTS=<folder> keeps the screenshots for a person to look at."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_search import FIXTURE_PAGES, load_pages, serve_in_thread
from test_batch import REFUSED, WORDS, BatchServer

from tests.jupyter_server import (
    JupyterLab,
    cell,
    chromium_page,
    notebook_lab,
    require_chromium,
    run_cell,
    wait_for_kernel_idle,
    wait_until_executed,
)

pytestmark = pytest.mark.browser
SCREENSHOTS = os.environ.get("TORQ_NB_SCREENSHOTS")
TOPICS = [f"{WORDS[i % len(WORDS)]} {REFUSED if i % 25 == 7 else 'notes'} {i:03d}" for i in range(200)]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[JupyterLab, BatchServer]]:
    require_chromium()
    with serve_in_thread(BatchServer(load_pages(FIXTURE_PAGES))) as server:
        server.delay = 0.05
        code = (
            "import torq_nb\n"
            f"job = torq_nb.start_research_many({TOPICS!r}, source='searxng', base_url={server.searxng_url!r},\n"
            "                                   allow_private_networks=True, store=None)"
        )
        with notebook_lab(tmp_path / "many.ipynb", [code, "results = job.result()\nresults"]) as running:
            yield running, server


def test_two_hundred_topics_in_one_readable_widget(lab: tuple[JupyterLab, BatchServer], tmp_path: Path) -> None:
    server_lab, _ = lab
    with chromium_page(server_lab.url("lab/tree/many.ipynb"), viewport=(1100, 800)) as page:
        wait_for_kernel_idle(page)
        run_cell(page, 0)
        widget = page.locator(".torq-batch").first
        widget.wait_for(timeout=60_000)
        deadline = time.monotonic() + 120
        while widget.get_attribute("data-state") != "running" or not widget.locator(".torq-batch__item").count():
            assert time.monotonic() < deadline, widget.inner_text()
            time.sleep(0.1)
        time.sleep(2)  # some topics finished, some failed
        running_text = widget.inner_text()
        widget.screenshot(path=str(tmp_path / "batch-running.png"))
        run_cell(page, 1)
        wait_until_executed(page, 1, timeout_ms=300_000)
        page.wait_for_function("document.querySelector('.torq-batch').dataset.state === 'complete'", timeout=60_000)
        final_text = widget.inner_text()
        widget.screenshot(path=str(tmp_path / "batch-complete.png"))
        page.screenshot(path=str(tmp_path / "batch-page.png"), full_page=True)
        items = widget.locator(".torq-batch__item").count()
        summary = cell(page, 1).locator(".jp-OutputArea-output").last.inner_text()
    if SCREENSHOTS:
        for name in ("batch-running.png", "batch-complete.png", "batch-page.png"):
            shutil.copy(tmp_path / name, Path(SCREENSHOTS) / name)

    assert "Running (" in running_text and re.search(r"\d+/200 topics", running_text), running_text
    assert "Cancel" in running_text
    failed = sum(REFUSED in topic for topic in TOPICS)
    assert "200/200 topics" in final_text and f"{failed} failed" in final_text, final_text
    assert f"Failed ({failed})" in final_text and "403" in final_text
    assert "Running (" not in final_text and "Cancel" not in final_text
    assert items <= 16  # the failed and the recently finished: a few lines, whatever the batch's size
    assert "Research: 200 topics" in summary
