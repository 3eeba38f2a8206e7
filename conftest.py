"""Repository-wide pytest set-up for the notebooks that nbval runs (``pytest --nbval-lax notebooks/``).

The notebooks call ``torq_nb.research(...)`` with no source, so they follow the environment. Before the
first notebook's kernel starts, this starts the loopback SearchServer (tests/fake_search.py: SearXNG's
JSON over the shared corpus, or over tests/fixtures/pages without it) in a background thread for the
rest of the session, and points TORQ_NB_SOURCE / TORQ_NB_SEARXNG_URL / TORQ_NB_ALLOW_PRIVATE_NETWORKS
at it. The kernels inherit that environment, so the notebooks hold no test-only code. Other tests
never see these variables: they are set only while notebook cells run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
#: Where the notebooks write their exports (relative to their own folder, the kernels' working directory).
EXPORTS = ROOT / "notebooks" / "exports"

sys.path.insert(0, str(ROOT / "tests"))
from fake_search import SearchServer, load_pages


class LoopbackSearch:
    """A SearchServer running on its own event loop in a daemon thread, for code that is not async.

    ``with LoopbackSearch() as server: ...`` serves until the block ends; ``environment()`` is the
    set of variables that points torq_nb's default source at it.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="loopback-search", daemon=True)
        self.server = SearchServer(load_pages())

    def __enter__(self) -> SearchServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.__aenter__(), self._loop).result(timeout=30)
        return self.server

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.__aexit__(None, None, None), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def environment(self) -> dict[str, str]:
        return {
            "TORQ_NB_SOURCE": "searxng",
            "TORQ_NB_SEARXNG_URL": self.server.searxng_url,
            "TORQ_NB_ALLOW_PRIVATE_NETWORKS": "1",
        }


class _NotebookEnvironment:
    """Starts the loopback search on the first notebook cell and sets the variables only around notebook cells."""

    def __init__(self) -> None:
        self.search: LoopbackSearch | None = None
        self.saved: dict[str, str | None] | None = None
        self.exports_existed = EXPORTS.exists()

    def enter(self) -> None:
        if self.search is None:
            self.search = LoopbackSearch()
            self.search.__enter__()
        if self.saved is None:
            variables = self.search.environment()
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
        if self.search is not None:
            self.search.__exit__(None, None, None)
            self.search = None
        if not self.exports_existed:  # the session made it: leave the tree as it was
            shutil.rmtree(EXPORTS, ignore_errors=True)


_notebooks = _NotebookEnvironment()


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


@pytest.fixture(scope="session")
def loopback_search() -> Iterator[LoopbackSearch]:
    """The loopback search in a background thread, for tests that run notebooks outside nbval."""
    search = LoopbackSearch()
    with search:
        yield search
