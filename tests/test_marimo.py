"""marimo as a host, for real: ``marimo run`` on loopback driven by Debian's Chromium, against a loopback SearXNG.

The README's way works there as in JupyterLab: ``research()`` and ``research_many()`` show their live widget
while their cell runs (with the stop hint, since marimo takes no click while a cell is busy), a tracker as a cell's value and
``display(tracker)`` are the live widget, the results card lays its table out, and a background job's Cancel
button stops it with partial results.
"""

from __future__ import annotations

import time
from pathlib import Path

from fake_search import SearchServer, load_pages, search_environment, serve_in_thread
from playwright.sync_api import expect, sync_playwright

from tests.jupyter_server import launch_chromium, marimo_run, require_chromium

APP = '''\
import marimo

app = marimo.App()


@app.cell
def _():
    import torq_nb
    return (torq_nb,)


@app.cell
def _(torq_nb):
    results = torq_nb.research("solar energy storage")
    return (results,)


@app.cell
def _(results):
    results
    return


@app.cell
def _(torq_nb):
    tracker = torq_nb.ProgressTracker("pipeline as a value", stages=["load", "train"])
    tracker
    return


@app.cell
def _(torq_nb):
    from IPython.display import display
    shown = torq_nb.ProgressTracker("pipeline through display()", stages=["load", "train"])
    display(shown)
    return


@app.cell
def _(results, torq_nb):
    batch = torq_nb.research_many(["solar energy storage", "grid batteries"], store=None)
    return (batch,)


@app.cell
def _(batch, torq_nb):
    job = torq_nb.start_research("grid batteries")
    job
    return


if __name__ == "__main__":
    app.run()
'''

#: The batch widget's state, and whether it offers Cancel or the stop hint.
BATCH = """els => els.map(e => ({
    state: e.dataset.state,
    cancel: !e.querySelector('.torq-batch__cancel').hidden,
    hint: e.querySelector('.torq-batch__hint').textContent,
}))"""
#: Every widget's operation, state and stage, and whether it offers Cancel or the stop hint.
WIDGETS = """els => els.map(e => ({
    operation: e.querySelector('.torq-progress__operation').textContent,
    state: e.dataset.state, stage: e.dataset.stage,
    cancel: !e.querySelector('.torq-progress__cancel').hidden,
    hint: (e.querySelector('.torq-progress__hint') || {}).textContent || '',
}))"""


def test_marimo_shows_every_view_live_and_cancel_works(tmp_path: Path) -> None:
    require_chromium()
    app = tmp_path / "app.py"
    app.write_text(APP)
    with serve_in_thread(SearchServer(load_pages())) as server, sync_playwright() as playwright:
        server.delay = 1.0  # every answer waits: the run lasts long enough to be watched and cancelled
        env = {**search_environment(server), "TORQ_NB_STORE": str(tmp_path / "store.sqlite")}
        with marimo_run(app, tmp_path / "marimo.log", env) as address:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 1400})
                page.goto(address)
                widgets = page.locator(".torq-progress")
                seen: list[list[dict[str, object]]] = []
                batches: list[list[dict[str, object]]] = []
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline:
                    seen.append(widgets.evaluate_all(WIDGETS))
                    batches.append(page.locator(".torq-batch").evaluate_all(BATCH))
                    if len(seen[-1]) == 4 and seen[-1][3]["state"] == "running" and seen[-1][3]["cancel"]:
                        break
                    time.sleep(0.2)
                research_seen = [shown[0] for shown in seen if shown]
                assert any(w["state"] == "running" for w in research_seen), research_seen
                # While research() holds the cell, marimo cannot take a click: the widget says how to stop it.
                running = next(w for w in research_seen if w["state"] == "running")
                assert not running["cancel"] and "marimo's ■ stop button" in str(running["hint"])
                final = seen[-1]
                assert final[0]["state"] == "complete"
                assert [w["operation"] for w in final[1:3]] == ["pipeline as a value", "pipeline through display()"]
                # research_many() is live in its cell too, with the stop hint while it holds the cell.
                batch_seen = [shown[0] for shown in batches if shown]
                assert any(b["state"] == "running" and not b["cancel"] and "marimo's ■ stop button" in str(b["hint"])
                           for b in batch_seen), batch_seen
                assert batch_seen[-1]["state"] == "complete" and not batch_seen[-1]["hint"], batch_seen[-1]

                job = widgets.filter(has_text="grid batteries")
                job.locator(".torq-progress__cancel").click()
                expect(job).to_have_attribute("data-state", "cancelled", timeout=30_000)

                # The results card keeps its columns apart ("127.0.0.1ok" was the domain and status run together).
                first_row = page.locator(".torq-results tbody tr").first
                padding = first_row.evaluate(
                    "row => [...row.cells].map(c => parseFloat(getComputedStyle(c).paddingLeft)"
                    " + parseFloat(getComputedStyle(c).paddingRight))"
                )
                assert min(padding) >= 8, (padding, first_row.text_content())
                # Its heading, paragraphs and links keep their look under marimo's reset styles.
                looks = page.locator(".torq-results").first.evaluate("""card => {
                    const style = (selector) => getComputedStyle(card.querySelector(selector));
                    return {h3: parseFloat(style('h3').fontSize), p: parseFloat(style('p').fontSize),
                            margin: parseFloat(style('p').marginTop), link: style('a').textDecorationLine};
                }""")
                assert looks["h3"] >= 1.2 * looks["p"] and looks["margin"] > 0 and looks["link"] == "underline", looks
                page.screenshot(path=str(tmp_path / "marimo.png"), full_page=True)
            finally:
                browser.close()
