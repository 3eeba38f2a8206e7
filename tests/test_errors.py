"""Expected failures read as one short message that says what to try, in a real kernel and in a script."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient


def _closed_port() -> int:
    """A loopback port nothing listens on: a search there fails as an unreachable Wikipedia does."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _unreachable_wikipedia() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("TORQ_NB_")}
    env["TORQ_NB_WIKIPEDIA_URL"] = f"http://127.0.0.1:{_closed_port()}/w/api.php"
    return env


def test_unreachable_source_in_a_notebook_is_one_short_error(tmp_path, monkeypatch):
    for name, value in _unreachable_wikipedia().items():
        monkeypatch.setenv(name, value)
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import torq_nb"),
        nbformat.v4.new_code_cell('results = torq_nb.research("renewable energy")'),
    ])
    client = NotebookClient(notebook, timeout=120, allow_errors=True, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    [error] = [out for out in notebook.cells[1].outputs if out.output_type == "error"]
    assert error.ename == "SourceError"
    assert len(error.traceback) == 1, error.traceback  # the message, not a walk through the library
    assert "search elsewhere" in error.traceback[0] and "source='local'" in error.traceback[0]
    # The widget's snapshot shows the failure too.
    shown = [out for out in notebook.cells[1].outputs if out.output_type in ("display_data", "update_display_data")]
    assert any("failed" in out.data.get("text/plain", "") for out in shown)


def test_unreachable_source_in_a_script_has_no_library_frames(tmp_path):
    script = tmp_path / "offline.py"
    script.write_text('import torq_nb\nresults = torq_nb.research("renewable energy")\n', encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env=_unreachable_wikipedia(), cwd=tmp_path)
    assert done.returncode == 1
    frames = [line for line in done.stderr.splitlines() if line.strip().startswith("File ")]
    assert len(frames) <= 2, done.stderr  # the user's line, and the line of research() that raised
    assert not any("pipeline.py" in frame or "site-packages" in frame for frame in frames), done.stderr
    assert "search elsewhere" in done.stderr.splitlines()[-1]


@pytest.mark.parametrize("call", ['torq_nb.research("solar", depth="fast")', 'torq_nb.research("solar", source="local", pth=".")',
                                  'torq_nb.start_research("")', 'torq_nb.research_many(["a", "b"], concurrency=0)'])
def test_a_wrong_argument_in_a_script_is_raised_at_the_call(tmp_path, call):
    script = tmp_path / "wrong.py"
    script.write_text(f"import torq_nb\n{call}\n", encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={**_unreachable_wikipedia(), "TORQ_NB_STORE": "off"}, cwd=tmp_path)
    assert done.returncode == 1
    frames = [line for line in done.stderr.splitlines() if line.strip().startswith("File ")]
    assert frames[0].startswith(f'  File "{script}", line 2'), done.stderr
    assert not any(name in frame for frame in frames for name in ("provider.py", "pipeline.py", "sources")), done.stderr
    assert len(frames) <= 4, done.stderr  # the user's line, the function called (research_many: its two), the check
    assert done.stderr.splitlines()[-1].startswith(("ValueError: ", "TypeError: ")), done.stderr
