"""Repository-wide pytest set-up for the notebooks that nbval runs (``pytest --nbval-lax notebooks/``).

The notebooks call ``torq_nb.research(...)`` with no source, so they follow the environment. Before the
first notebook's kernel starts, this starts the loopback SearchServer (tests/fake_search.py: SearXNG's
JSON over the shared corpus, or over tests/fixtures/pages without it) in a background thread for the
rest of the session, and points TORQ_NB_SOURCE / TORQ_NB_SEARXNG_URL / TORQ_NB_ALLOW_PRIVATE_NETWORKS
at it. The kernels inherit that environment, so the notebooks hold no test-only code. Other tests
never see these variables: they are set only while notebook cells run.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent
#: Where the notebooks write their exports (relative to their own folder, the kernels' working directory).
EXPORTS = ROOT / "notebooks" / "exports"

sys.path.insert(0, str(ROOT / "tests"))
from fake_search import SearchServer, load_pages, search_environment, serve_in_thread  # noqa: E402


class _NotebookEnvironment:
    """Starts the loopback search on the first notebook cell and sets the variables only around notebook cells."""

    def __init__(self) -> None:
        self.running = ExitStack()
        self.server: SearchServer | None = None
        self.saved: dict[str, str | None] | None = None
        self.exports_existed = EXPORTS.exists()

    def enter(self) -> None:
        if self.server is None:
            self.server = self.running.enter_context(serve_in_thread(SearchServer(load_pages())))
        if self.saved is None:
            variables = search_environment(self.server)
            self.saved = {name: os.environ.get(name) for name in variables}
            os.environ.update(variables)

    def leave(self) -> None:
        if self.saved is not None:
            for name, value in self.saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self.saved = None

    def close(self) -> None:
        self.leave()
        self.running.close()
        self.server = None
        if not self.exports_existed:  # the session made it: leave the tree as it was
            shutil.rmtree(EXPORTS, ignore_errors=True)


_notebooks = _NotebookEnvironment()

#: The run store of this session's runs (notebook kernels and subprocesses inherit it): never the user's own.
_SESSION_STORE = Path(tempfile.mkdtemp(prefix="torq_nb-test-store-"))
os.environ["TORQ_NB_STORE"] = str(_SESSION_STORE / "store.sqlite")


@pytest.fixture(autouse=True)
def _own_run_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test's runs use a store of their own: a later test's loopback server may get an earlier one's port,
    and must not be answered with that test's stored pages."""
    from torq_nb.research.store import close_stores

    monkeypatch.setenv("TORQ_NB_STORE", str(tmp_path_factory.mktemp("store") / "store.sqlite"))
    yield
    close_stores()


def _is_notebook_cell(item: pytest.Item) -> bool:
    return item.path.suffix == ".ipynb"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Runs before pytest sets the item up, so before nbval starts a notebook's kernel."""
    if _is_notebook_cell(item):
        _notebooks.enter()
    else:
        _notebooks.leave()


def pytest_sessionfinish(session: pytest.Session) -> None:
    _notebooks.close()
    shutil.rmtree(_SESSION_STORE, ignore_errors=True)


@pytest.fixture(scope="session")
def loopback_search() -> Iterator[SearchServer]:
    """The loopback search in a background thread, for tests that run notebooks outside nbval."""
    with serve_in_thread(SearchServer(load_pages())) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright, one per test module, for tests that open exported files in it."""
    from playwright.sync_api import sync_playwright

    from tests.jupyter_server import launch_chromium

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()
