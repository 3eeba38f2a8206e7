"""Re-execute the notebooks in place against the loopback search, to refresh their committed outputs.

    python tests/refresh_notebooks.py [quickstart.ipynb ...]

It runs each notebook as nbval's session does (a loopback SearchServer in a thread, and the environment that
points torq_nb's default source at it), without saving widget state, so GitHub and nbviewer fall back to
the progress widget's text/html snapshot. A background job can finish between two cells, where nbclient
drops its final display update; a notebook is therefore written only once every progress snapshot in it
shows a finished state (up to three tries).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from fake_search import SearchServer, load_pages, search_environment, serve_in_thread
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
WIDGET = "application/vnd.jupyter.widget-view+json"
FINISHED = {"complete", "cancelled", "failed"}


def snapshot_states(notebook: nbformat.NotebookNode) -> list[str]:
    """The data-state of every progress snapshot the notebook's outputs hold."""
    return [
        output.data["text/html"].split('data-state="')[1].split('"')[0]
        for cell in notebook.cells if cell.cell_type == "code"
        for output in cell.outputs if WIDGET in output.get("data", {})
    ]


def refresh(path: Path, tries: int = 3) -> None:
    source = nbformat.read(path, as_version=4)
    for attempt in range(1, tries + 1):
        notebook = nbformat.reads(nbformat.writes(source), as_version=4)
        started = time.monotonic()
        NotebookClient(notebook, timeout=300, kernel_name="python3", store_widget_state=False,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        states = snapshot_states(notebook)
        print(f"{path.name}: try {attempt}, {time.monotonic() - started:.1f} s, snapshots {states}")
        if set(states) <= FINISHED:
            nbformat.write(notebook, path)
            return
    raise SystemExit(f"{path.name}: a progress snapshot never reached a finished state; not written")


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    with serve_in_thread(SearchServer(load_pages())) as server:
        os.environ.update(search_environment(server))
        for name in names:
            refresh(NOTEBOOKS / name)
