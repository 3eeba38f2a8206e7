"""Real-browser checks of background research jobs and of the Notebook 7 front-end.

1. In JupyterLab and in Notebook 7, a cell starts a research run in the background against a loopback site with one fast
   page and several pages that hang. The cell returns at once; the widget is live; another cell runs
   while the job is still running; a click on the widget's Cancel button (with the kernel idle) stops
   the run: the widget ends "cancelled", the button goes away, and the job's results keep the fast page
   as "ok" and mark the hanging ones "cancelled".
2. In Notebook 7's notebook page (/notebooks/NAME.ipynb on the same server), the progress widget renders
   and every stage shows live, ending complete at 100%.
3. In JupyterLab, the blocking ``research()`` (its cell busy until the run ends): the widget's Cancel click
   reaches the kernel through a subshell of its own (ipykernel 7) and the call raises ResearchCancelled with
   the partial results, as the interrupt does. Where the kernel has no subshell (forced here), the widget
   shows no Cancel button but says how to stop the run, and the kernel's interrupt does.
4. The same for the blocking ``research_many()`` and its batch widget: Cancel (or, without a subshell, the
   interrupt the widget names) raises BatchCancelled with every topic's partial rows.
"""

from __future__ import annotations

import ast
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_search import serve_in_thread
from playwright.sync_api import expect
from web_faults import FaultServer

from tests.jupyter_server import (
    NOTEBOOK7_ARGS,
    JupyterLab,
    cell,
    chromium_page,
    notebook_lab,
    record_progress,
    recorded_progress,
    require_chromium,
    require_notebook7,
    run_cell,
    wait_for_kernel_ready,
    wait_until_executed,
)

pytestmark = pytest.mark.browser

#: Where to keep screenshots for a person to look at (unset: not kept).
SCREENSHOTS = os.environ.get("TORQ_NB_SCREENSHOTS")

STAGES = ["initializing", "searching", "extracting", "synthesizing", "complete"]
SLOW_PAGES = 5
#: Where each front-end opens a notebook, on the same server.
FRONTENDS = {"jupyterlab": "lab/tree/{}", "notebook7": "notebooks/{}"}

# Test code in a test notebook: a source whose hits are given (a plug-in's shape), aimed at the loopback
# site. The last statement starts the job; start_research displays it (the widget with Cancel).
SOURCE_CODE = """\
import torq_nb
from torq_nb.research.models import Hit
from torq_nb.research.sources import Source

class ListedHits(Source):
    name = "listed"

    def __init__(self, urls):
        self.urls = urls

    async def search(self, query, limit, fetcher):
        return [Hit(title=f"hit {{i}}", url=url, snippet="", source=self.name) for i, url in enumerate(self.urls[:limit])]

urls = ["{base}/ok"] + ["{base}/sleep?s=60&n=" + str(n) for n in range({slow})]
"""
JOB_CELL = SOURCE_CODE + """\
job = torq_nb.start_research("slow topic", source=ListedHits(urls), allow_private_networks=True)"""
# The blocking call: the cell stays busy until the run ends, and says how it ended.
BLOCKING_CELL = SOURCE_CODE + """\
from torq_nb import ResearchCancelled
try:
    results, outcome = torq_nb.research("blocked topic", source=ListedHits(urls), allow_private_networks=True), "returned"
except ResearchCancelled as cancelled:
    results, outcome = cancelled.results, "ResearchCancelled"
print(outcome, results.df["status"].to_list())"""
#: A kernel without subshells (ipykernel 6, other kernels): the widget finds none to take its clicks.
NO_SUBSHELL = "import torq_nb.progress.widget as view\nview._subshell[:] = [None]\n"
STOP_HINT = "interrupt the kernel"

TRACKER_CELLS = [
    "import time\nfrom torq_nb.progress import ProgressTracker\ntracker = ProgressTracker('notebook 7 run')\ntracker",
    (
        "with tracker:\n"
        "    time.sleep(0.6)\n"
        "    tracker.progress('searching', 'querying sources')\n"
        "    time.sleep(0.6)\n"
        "    tracker.progress('extracting', 'reading pages')\n"
        "    for page in tracker.track(range(20)):\n"
        "        time.sleep(0.03)\n"
        "    tracker.progress('synthesizing', 'writing the summary')\n"
        "    time.sleep(0.6)\n"
    ),
]


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def output_text(page: Any, index: int) -> str:
    """The text of a finished cell's outputs."""
    return cell(page, index).locator(".jp-OutputArea-output").inner_text().strip()


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with serve_in_thread(FaultServer()) as server:
        yield server


@pytest.fixture(params=["jupyterlab", "notebook7"])
def job_page(request: pytest.FixtureRequest, tmp_path: Path, faults: FaultServer) -> Iterator[str]:
    """The address of the job notebook in JupyterLab or in Notebook 7, its server running."""
    require_chromium()
    if request.param == "notebook7":
        require_notebook7()
    cells = [JOB_CELL.format(base=faults.base, slow=SLOW_PAGES), "1 + 1",
             'print(job.status.state, job.result().df["status"].to_list())']
    extra_args = NOTEBOOK7_ARGS if request.param == "notebook7" else ()
    with notebook_lab(tmp_path / "jobs.ipynb", cells, extra_args=extra_args) as server:  # stopped (its kernel too) before the fault server
        yield server.url(FRONTENDS[request.param].format("jobs.ipynb"))


def test_cancel_button_stops_a_background_run(job_page: str, faults: FaultServer) -> None:
    with chromium_page(job_page) as page:
        wait_for_kernel_ready(page)
        record_progress(page)

        run_cell(page, 0)
        # The cell returns while the run goes on: its prompt gets its count with the widget still running.
        wait_until_executed(page, 0)
        widget = page.locator(".torq-progress")
        live = page.locator('.torq-progress[data-state="running"][data-stage="extracting"]')
        live.wait_for(timeout=60_000)
        # The fast page is done; the slow ones hang (for 60 s, beyond the fetch timeouts).
        expect(widget.locator(".torq-progress__counts")).to_have_text(f"1/{SLOW_PAGES + 1}", timeout=60_000)
        cancel = widget.locator(".torq-progress__cancel")
        expect(cancel).to_be_visible()

        # Another cell runs meanwhile: the kernel is free while the job works in its thread.
        run_cell(page, 1)
        wait_until_executed(page, 1)
        assert output_text(page, 1) == "2"
        assert widget.get_attribute("data-state") == "running", recorded_progress(page)

        # The click is handled because no cell is busy.
        wait_for_kernel_ready(page)
        cancel.click()
        expect(widget).to_have_attribute("data-state", "cancelled", timeout=15_000)
        expect(cancel).to_be_hidden()
        assert widget.locator(".torq-progress__status").inner_text() == "cancelled at extracting"
        # The run hung up on the hanging pages: the site has no request left in flight.
        assert wait_for(lambda: faults.in_flight == 0, timeout=10), f"{faults.in_flight} requests still open"

        run_cell(page, 2)
        wait_until_executed(page, 2)
        state, statuses = output_text(page, 2).split(" ", 1)
        seen = recorded_progress(page, "slow topic")

    assert state == "cancelled"
    assert ast.literal_eval(statuses) == ["ok"] + ["cancelled"] * SLOW_PAGES
    states = [entry["state"] for entry in seen]
    assert states[-1] == "cancelled" and "complete" not in states, seen
    assert any(entry["stage"] == "extracting" and entry["state"] == "running" and entry["cancel"] for entry in seen)


@pytest.fixture
def notebook7(tmp_path: Path) -> Iterator[JupyterLab]:
    require_chromium()
    require_notebook7()
    with notebook_lab(tmp_path / "progress.ipynb", TRACKER_CELLS, extra_args=NOTEBOOK7_ARGS) as server:
        yield server


def test_progress_widget_live_in_notebook7(notebook7: JupyterLab) -> None:
    with chromium_page(notebook7.url(FRONTENDS["notebook7"].format("progress.ipynb"))) as page:
        # Notebook 7 marks its notebook page (JupyterLab has no such attribute).
        page.locator('body[data-notebook="notebooks"]').wait_for(state="attached", timeout=60_000)
        wait_for_kernel_ready(page)
        record_progress(page)

        run_cell(page, 0)
        widget = page.locator(".torq-progress")
        expect(widget).to_have_attribute("data-state", "pending", timeout=60_000)
        run_cell(page, 1)
        expect(widget).to_have_attribute("data-state", "complete", timeout=60_000)
        wait_until_executed(page, 1)
        seen = recorded_progress(page, "notebook 7 run")
        percent_label = widget.locator(".torq-progress__percent").inner_text()

    running = [entry["stage"] for entry in seen if entry["state"] == "running"]
    assert [stage for stage in STAGES[:-1] if stage not in running] == [], seen
    assert running == sorted(running, key=STAGES.index), "stages went backwards"
    assert seen[-1]["stage"] == "complete" and seen[-1]["percent"] == "100", seen[-1]
    assert percent_label == "100%"
    # Inside the counted stage the count advanced live (it is cleared when the next stage starts).
    counts = {entry["counts"] for entry in seen if entry["stage"] == "extracting"}
    assert len({c for c in counts if c.endswith("/20")}) >= 2, seen


def test_missing_notebook7_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "notebook", None)  # `import notebook` now raises ImportError
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_notebook7()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="pip install 'notebook>=7'"):
        require_notebook7()


@pytest.fixture(
    params=[("jupyterlab", "subshell"), ("notebook7", "subshell"), ("jupyterlab", "no subshell")],
    ids=["jupyterlab", "notebook7", "jupyterlab-no-subshell"],
)
def blocking_page(request: pytest.FixtureRequest, tmp_path: Path, faults: FaultServer) -> Iterator[tuple[str, str]]:
    """(address of a notebook whose cell blocks on research(), which kernel it stands for)."""
    require_chromium()
    frontend, kernel = request.param
    if frontend == "notebook7":
        require_notebook7()
    prefix = NO_SUBSHELL if kernel == "no subshell" else ""
    cells = [prefix + BLOCKING_CELL.format(base=faults.base, slow=SLOW_PAGES)]
    extra_args = NOTEBOOK7_ARGS if frontend == "notebook7" else ()
    with notebook_lab(tmp_path / "blocking.ipynb", cells, extra_args=extra_args) as server:
        yield server.url(FRONTENDS[frontend].format("blocking.ipynb")), kernel


def test_a_blocking_research_stops_from_its_widget(blocking_page: tuple[str, str], faults: FaultServer) -> None:
    address, kernel = blocking_page
    with chromium_page(address) as page:
        wait_for_kernel_ready(page)
        record_progress(page)
        run_cell(page, 0)
        widget = page.locator(".torq-progress")
        page.locator('.torq-progress[data-state="running"][data-stage="extracting"]').wait_for(timeout=60_000)
        expect(widget.locator(".torq-progress__counts")).to_have_text(f"1/{SLOW_PAGES + 1}", timeout=60_000)
        prompt = cell(page, 0).locator(".jp-InputPrompt")
        assert "[*]" in prompt.inner_text(), "the cell should still be busy with research()"
        cancel = widget.locator(".torq-progress__cancel")
        hint = widget.locator(".torq-progress__hint")
        name = f"blocking-{kernel.replace(' ', '-')}-{address.split('/')[3]}.png"  # lab or notebooks
        if SCREENSHOTS:
            widget.screenshot(path=str(Path(SCREENSHOTS) / name))
        if kernel == "subshell":
            expect(cancel).to_be_visible()
            expect(hint).to_be_hidden()
            cancel.click()  # while the cell is busy: the kernel's subshell takes it
        else:
            expect(cancel).to_be_hidden()
            expect(hint).to_be_visible()
            assert STOP_HINT in hint.inner_text()
            page.evaluate("window.jupyterapp.commands.execute('notebook:interrupt-kernel')")  # the ■ button
        expect(widget).to_have_attribute("data-state", "cancelled", timeout=15_000)
        wait_until_executed(page, 0, timeout_ms=30_000)
        expect(cancel).to_be_hidden()
        expect(hint).to_be_hidden()
        if SCREENSHOTS:
            widget.screenshot(path=str(Path(SCREENSHOTS) / name.replace("blocking-", "cancelled-")))
        assert wait_for(lambda: faults.in_flight == 0, timeout=10), f"{faults.in_flight} requests still open"
        printed = cell(page, 0).locator('[data-mime-type="application/vnd.jupyter.stdout"]').inner_text()
        outcome, statuses = printed.strip().split(" ", 1)
        seen = recorded_progress(page, "blocked topic")

    assert outcome == "ResearchCancelled"
    assert ast.literal_eval(statuses) == ["ok"] + ["cancelled"] * SLOW_PAGES
    live = [entry for entry in seen if entry["state"] == "running" and entry["stage"] == "extracting"]
    assert live, seen
    if kernel == "subshell":
        assert all(entry["cancel"] and not entry["hint"] for entry in live), live
    else:  # never a button the kernel could not take; always the way to stop it
        assert all(not entry["cancel"] and STOP_HINT in entry["hint"] for entry in live), live


# Two topics, each with the fast page and the hanging ones: the batch holds the cell until it is stopped.
BLOCKING_BATCH_CELL = SOURCE_CODE + """\
from torq_nb import BatchCancelled
try:
    batch, outcome = torq_nb.research_many(["first topic", "second topic"], source=ListedHits(urls),
                                           allow_private_networks=True, store=None), "returned"
except BatchCancelled as cancelled:
    batch, outcome = cancelled.results, "BatchCancelled"
print(outcome, sorted(batch.df["status"].to_list()))"""


@pytest.fixture(params=["subshell", "no subshell"])
def blocking_batch_page(request: pytest.FixtureRequest, tmp_path: Path, faults: FaultServer) -> Iterator[tuple[str, str]]:
    """(address of a JupyterLab notebook whose cell blocks on research_many(), which kernel it stands for)."""
    require_chromium()
    prefix = NO_SUBSHELL if request.param == "no subshell" else ""
    cells = [prefix + BLOCKING_BATCH_CELL.format(base=faults.base, slow=SLOW_PAGES)]
    with notebook_lab(tmp_path / "batch.ipynb", cells) as server:
        yield server.url("lab/tree/batch.ipynb"), request.param


def test_a_blocking_batch_stops_from_its_widget(blocking_batch_page: tuple[str, str], faults: FaultServer) -> None:
    address, kernel = blocking_batch_page
    with chromium_page(address) as page:
        wait_for_kernel_ready(page)
        run_cell(page, 0)
        widget = page.locator(".torq-batch")
        widget.wait_for(timeout=60_000)
        # The batch waits on hanging pages (at most 4 at once on one host: the batch shares the limit).
        assert wait_for(lambda: faults.in_flight >= 3, timeout=60), faults.in_flight
        expect(widget).to_have_attribute("data-state", "running")
        assert "[*]" in cell(page, 0).locator(".jp-InputPrompt").inner_text(), "the cell should be busy with research_many()"
        cancel = widget.locator(".torq-batch__cancel")
        hint = widget.locator(".torq-batch__hint")
        if SCREENSHOTS:
            widget.screenshot(path=str(Path(SCREENSHOTS) / f"blocking-batch-{kernel.replace(' ', '-')}.png"))
        if kernel == "subshell":
            expect(cancel).to_be_visible()
            expect(hint).to_be_hidden()
            cancel.click()
        else:  # never a button the kernel could not take; always the way to stop it
            expect(cancel).to_be_hidden()
            expect(hint).to_be_visible()
            assert STOP_HINT in hint.inner_text()
            page.evaluate("window.jupyterapp.commands.execute('notebook:interrupt-kernel')")
        expect(widget).to_have_attribute("data-state", "cancelled", timeout=15_000)
        wait_until_executed(page, 0, timeout_ms=30_000)
        expect(cancel).to_be_hidden()
        expect(hint).to_be_hidden()
        assert wait_for(lambda: faults.in_flight == 0, timeout=10), f"{faults.in_flight} requests still open"
        printed = cell(page, 0).locator('[data-mime-type="application/vnd.jupyter.stdout"]').inner_text()
    outcome, statuses = printed.strip().split(" ", 1)
    assert outcome == "BatchCancelled"
    rows = ast.literal_eval(statuses)
    assert len(rows) == 2 * (SLOW_PAGES + 1) and set(rows) <= {"ok", "cancelled"}, rows  # the fast pages may be read
    assert rows.count("cancelled") >= 2 * SLOW_PAGES, rows
