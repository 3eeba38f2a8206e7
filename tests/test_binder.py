"""binder/ proved the way mybinder.org builds it: a fresh virtual environment gets exactly
binder/requirements.txt (pip, from the package index) and then binder/postBuild, both run from a copy of
the repository's root; then quickstart.ipynb runs top to bottom in that environment's own kernel, against
the loopback search (no Docker engine here, so the venv stands in for the image).

Slow (a few minutes of pip installs): marked ``binder``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path
from typing import Any

import nbformat
import pytest
from fake_search import SearchServer, search_environment

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"

pytestmark = pytest.mark.binder

#: Appended to the test's copy of the notebook only: where the kernel's Python and torq_nb live.
PROBE = "import sys, torq_nb\nprint(sys.prefix); print(torq_nb.__file__)"


def repository_copy(destination: Path) -> Path:
    """The files a push would carry (tracked, plus new files not ignored), as they are in the work tree."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(command, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done.stdout


def outputs(notebook: Any, output_type: str | None = None) -> list[Any]:
    return [
        o
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if output_type is None or o.output_type == output_type
    ]


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git checkout to copy the repository as pushed")
def test_binder_environment_runs_the_quickstart(tmp_path: Path, loopback_search: SearchServer) -> None:
    repo = repository_copy(tmp_path / "repo")
    shutil.rmtree(repo / "notebooks" / "exports", ignore_errors=True)  # a user's earlier exports prove nothing
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True, clear=True)
    bin_dir = environment / "bin"
    # As in the image: the environment's bin first on PATH, nothing of this test process's Python leaking in.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV", "JUPYTER"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(environment),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        HOME=str(tmp_path / "home"),
    )
    (tmp_path / "home").mkdir()

    # The image's pip is current; the venv's bundled one may predate PEP 685 (extras such as justext's
    # lxml[html_clean] would then be dropped silently), so bring it up to date first.
    run([str(bin_dir / "python"), "-m", "pip", "install", "--upgrade", "pip"], repo, env, timeout=120)
    run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--no-cache-dir", "-r", "binder/requirements.txt"],
        repo,
        env,
        timeout=420,
    )
    built = run(["bash", "binder/postBuild"], repo, env, timeout=300)
    assert "torq_nb" in built and "installed" in built

    notebook = nbformat.read(repo / "notebooks" / "quickstart.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
    nbformat.write(notebook, repo / "notebooks" / "quickstart-run.ipynb")
    env.update(search_environment(loopback_search))
    run(
        [
            str(bin_dir / "jupyter"),
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "quickstart-run.ipynb",
            "--output",
            "quickstart-executed.ipynb",
            "--ExecutePreprocessor.timeout=300",
        ],
        repo / "notebooks",
        env,
        timeout=420,
    )

    executed = nbformat.read(repo / "notebooks" / "quickstart-executed.ipynb", as_version=4)
    assert outputs(executed, "error") == []
    # The kernel was the fresh environment's, with torq_nb installed into it (not this checkout's sources).
    prefix, package = outputs(executed, "stream")[-1].text.splitlines()
    assert Path(prefix) == environment
    assert Path(package).is_relative_to(environment) and "site-packages" in package
    # The run researched the loopback corpus to the end, and the saved output keeps that final state.
    widget = next(o for o in outputs(executed) if "application/vnd.jupyter.widget-view+json" in o.get("data", {}))
    assert 'data-state="complete"' in widget.data["text/html"]
    assert any(request.path == "/search" for request in loopback_search.requests)
    # The exports it made are real files of their formats.
    exports = repo / "notebooks" / "exports"
    assert (exports / "report.pdf").read_bytes().startswith(b"%PDF-")
    assert (exports / "report.md").read_text(encoding="utf-8").startswith("# Research: renewable energy")
    header = (exports / "results.csv").read_text(encoding="utf-8-sig").splitlines()[0]
    assert header.split(",")[:3] == ["rank", "title", "url"]
    # The chart rendered to a PNG, and the PDF is shown inline.
    assert any("image/png" in o.get("data", {}) for o in outputs(executed))
    assert any("application/pdf" in o.get("data", {}) for o in outputs(executed))
