"""Main-text extraction: turn a fetched Page into a Document (text, title, author, date).

HTML goes through trafilatura, in two passes: first its own extractor alone (``fast=True``, the
most accurate and quickest setting on the article corpus), then, if that finds nothing, with
trafilatura's readability/jusText fallbacks; if both come back empty (tiny or odd pages) the
visible text of ``<body>`` minus scripts, styles and navigation is used. So is it for a page of
more than 40,000 tags, which trafilatura would spend tens of seconds on (about 0.1 ms a tag).
``text/plain`` and ``text/markdown`` pass through, titled by their first heading or line.
``extract`` never raises: a page with no readable text (or a binary body) gives ``None``.

Measured on the 181-page article corpus (``benchmarks/bench_extract.py``; F1 over 4-token
shingles): 0.962, against 0.953 for ``trafilatura.extract`` with its defaults, which keep
reader comments.

Why a process pool (``Extractor``): extraction is pure CPU (lxml plus Python), so threads share
one core through the GIL. On the corpus, 2 idle cores, workers started: sequential 42 pages/s,
2 threads 47 (1.1x), 2 processes 72 (1.7x). Start methods: fork starts fastest but ran the
slowest batches and can deadlock a child of a Jupyter kernel, which runs threads; spawn and
forkserver start alike (0.4 s). forkserver wins because its server imports this module once and
forks every later worker from it: the first pool in a process pays the imports (0.35 s idle,
several seconds on a loaded machine), later pools and replacement workers start in 0.1-0.4 s.
So: forkserver where the platform has it, else spawn; all workers started at once (``warm_up()``,
or the first page); one pool kept for many runs (``shared_extractor()``).

Workers never import the user's main module (where the fork server exists: not on Windows, whose
spawn workers prepare it as multiprocessing always does). multiprocessing re-runs the parent's main script in
every spawn or forkserver child (the preparation data names it: ``init_main_from_path`` or
``init_main_from_name``) so that functions defined there can be unpickled; a worker here only runs
``extract`` on a ``Page``, both from this package. So the fork server preloads this module and not
``__main__``, and each worker is launched with preparation data that leaves the main module out
(``_WorkerPopen``; the stdlib has no switch for it). A script without
``if __name__ == "__main__":`` therefore runs once, as fast and as quietly as a guarded one.

Workers end with the process that started them, however it ends (SIGKILL included): each watches
``multiprocessing.parent_process().sentinel``, a pipe that reads end-of-file when the parent is gone,
and exits; the fork server exits once neither the parent nor a worker holds its "alive" pipe. (Not
PR_SET_PDEATHSIG: a worker's parent in the process tree is the fork server, and the fork server's is
whichever thread of the user's process started it, often a short-lived one; the signal would follow
that thread.) The fork server starts with SIGINT blocked, as the stdlib's resource tracker does, and
workers ignore it: a Ctrl-C, or Jupyter's interrupt, which reaches the kernel's whole process group,
never kills a worker or prints its traceback, even while the pool starts. If workers die anyway, a
fresh pool is tried once, then extraction carries on in a thread.
"""

from __future__ import annotations

import asyncio
import atexit
import io
import logging
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import date
from multiprocessing import context as mp_context
from multiprocessing import spawn, util
from types import TracebackType
from typing import TYPE_CHECKING

import lxml.html
import trafilatura
from lxml import etree

from torq_nb.research.models import Document, Page

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Extractor", "extract", "shared_extractor"]

log = logging.getLogger(__name__)

_PLAIN_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown"})
# Characters lxml refuses and binary bodies are made of: C0 controls except tab/newline/CR, and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A body where more than this share of characters is a C0/C1 control or U+FFFD is binary, not text.
_NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")
_BINARY_SHARE = 0.1
_LOOKS_LIKE_HTML = re.compile(r"<\s*(!doctype|html|head|body|p|div|article|span|br|title)\b", re.IGNORECASE)
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_NOT_CONTENT = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg")
# Elements whose text starts a new line in the fallback's output.
_BLOCKS = frozenset(
    {"p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "br", "hr", "figure"}
)
_TITLE_MAX = 300
# trafilatura takes about 0.1 ms per element: past this many tags (a 2 MB table, a book on one page)
# the plain body text is taken instead, so that one page cannot hold a worker for a minute.
_MAX_TAGS = 40_000
# A pool that breaks this many times (workers killed, or unable to start) gives way to a thread.
_MAX_BREAKS = 2


def extract(page: Page) -> Document | None:
    """The main text and metadata of a fetched page, or None when it holds no readable text."""
    raw = page.text
    if page.status != "ok" or not raw or not raw.strip():
        return None
    if _is_binary(raw):
        return None
    text = _CONTROL.sub("", raw)
    media_type = (page.content_type or "").split(";", 1)[0].strip().lower()
    if media_type in _PLAIN_TYPES or (not media_type and not _LOOKS_LIKE_HTML.search(text[:4096])):
        return _from_plain(text)
    return _from_html(text, page.final_url or page.url)


def _is_binary(text: str) -> bool:
    sample = text[:8192]
    return len(_NOT_TEXT.findall(sample)) > _BINARY_SHARE * len(sample)


def _from_plain(text: str) -> Document | None:
    body = re.sub(r"\n{3,}", "\n\n", text.replace("\r\n", "\n").replace("\r", "\n")).strip()
    if not body:
        return None
    heading = _MD_HEADING.search(body)
    title = heading.group(1) if heading else body.split("\n", 1)[0]
    return Document(text=body, title=title.strip()[:_TITLE_MAX] or None)


def _from_html(html: str, url: str | None) -> Document | None:
    if html.count("<") > _MAX_TAGS:
        return _body_text(html)
    found = _trafilatura(html, url, fast=True) or _trafilatura(html, url, fast=False)
    if found is not None and found.text and found.text.strip():
        return Document(
            text=found.text.strip(),
            title=_clean(found.title),
            author=_clean(found.author),
            published=_parse_date(found.date),
        )
    return _body_text(html)


def _trafilatura(html: str, url: str | None, *, fast: bool) -> trafilatura.settings.Document | None:
    try:
        result = trafilatura.bare_extraction(
            html, url=url, fast=fast, include_comments=False, include_tables=True, with_metadata=True
        )
    except Exception as exc:  # noqa: BLE001 -- trafilatura has many internal paths; hostile HTML must never fail a run
        log.debug("trafilatura failed on %s: %r", url, exc)
        return None
    return result if isinstance(result, trafilatura.settings.Document) else None


def _body_text(html: str) -> Document | None:
    """The visible text of the page, block by block: the last resort for pages trafilatura skips."""
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return None
    etree.strip_elements(root, *_NOT_CONTENT, etree.Comment, etree.ProcessingInstruction, with_tail=False)
    title_el = root.find(".//title")
    title = _clean(title_el.text_content()) if isinstance(title_el, lxml.html.HtmlElement) else None
    body = root.find(".//body")
    if body is None:
        body = root
    for el in body.iter():
        tag = el.tag.lower() if isinstance(el.tag, str) else ""
        if tag in _BLOCKS or tag in ("td", "th"):
            el.tail = ("\n" if tag in _BLOCKS else " ") + (el.tail or "")
    lines = (" ".join(line.split()) for line in "".join(str(t) for t in body.itertext()).split("\n"))
    text = "\n".join(line for line in lines if line)
    if not text:
        return None
    return Document(text=text, title=title)


def _clean(value: str | None) -> str | None:
    if not value:
        return None
    value = " ".join(value.split())
    return value[:_TITLE_MAX] or None


def _parse_date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _preparation_data(name: str) -> dict[str, object]:
    """What a worker needs to set itself up (sys.path, cwd, authkey, ...), without the main module."""
    data = spawn.get_preparation_data(name)
    data.pop("init_main_from_path", None)
    data.pop("init_main_from_name", None)
    return data


if "forkserver" in multiprocessing.get_all_start_methods():
    from multiprocessing import forkserver, popen_forkserver, resource_tracker

    class _WorkerPopen(popen_forkserver.Popen):
        """The fork server's Popen, but the child is told nothing about the parent's main module.

        ``popen_forkserver.Popen._launch`` (identical in Python 3.10-3.13) with ``_preparation_data``
        in place of ``spawn.get_preparation_data``: the stdlib offers no switch to leave main out.
        """

        def _launch(self, process_obj: multiprocessing.process.BaseProcess) -> None:
            prep_data = _preparation_data(process_obj.name)
            buf = io.BytesIO()
            mp_context.set_spawning_popen(self)
            try:
                mp_context.reduction.dump(prep_data, buf)  # type: ignore[attr-defined]
                mp_context.reduction.dump(process_obj, buf)  # type: ignore[attr-defined]
            finally:
                mp_context.set_spawning_popen(None)
            self.sentinel, w = forkserver.connect_to_new_process(self._fds)  # type: ignore[attr-defined]
            # The child's parent_process().sentinel reads end-of-file once no copy of this pipe's write end is open.
            _parent_w = os.dup(w)
            close = util.close_fds  # type: ignore[attr-defined]
            self.finalizer = util.Finalize(self, close, (_parent_w, self.sentinel))
            with open(w, "wb", closefd=True) as f:
                f.write(buf.getbuffer())
            self.pid = forkserver.read_signed(self.sentinel)

    class _WorkerProcess(mp_context.ForkServerProcess):
        @staticmethod
        def _Popen(process_obj: multiprocessing.process.BaseProcess) -> _WorkerPopen:
            return _WorkerPopen(process_obj)

    class _WorkerContext(mp_context.ForkServerContext):
        """The forkserver context, with worker processes that never import the main module."""

        Process = _WorkerProcess

    _WORKER_CONTEXT: multiprocessing.context.BaseContext | None = _WorkerContext()
else:  # Windows: spawn, which prepares the main module as multiprocessing always does
    _WORKER_CONTEXT = None


def _pool_context() -> multiprocessing.context.BaseContext:
    """forkserver where available (fork is unsafe in a threaded kernel), else spawn.

    The fork server imports this module (and so trafilatura) once, before it forks any worker: every
    pool after the first, and every worker that replaces a dead one, starts in milliseconds instead of
    paying the imports again. It is started here with SIGINT blocked, which it and every worker forked
    from it inherit, so a Ctrl-C during their start-up never reaches them.
    """
    if _WORKER_CONTEXT is None:
        return multiprocessing.get_context("spawn")
    _WORKER_CONTEXT.set_forkserver_preload([__name__])  # no effect if the server already runs
    # The fork server starts the resource tracker first, which unblocks SIGINT once it has started its own.
    resource_tracker.ensure_running()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return _WORKER_CONTEXT


def _wait_for_fork_server() -> None:
    """Return once the fork server has imported its modules and forks: start a trivial process and wait.

    Nothing else waits meanwhile (no pool's lock is held); if this process exits first, the server drops the
    request unanswered and exits too.
    """
    probe = _WorkerProcess(target=int, name="torq_nb-fork-server-probe", daemon=True)
    probe.start()
    probe.join()


def _end_with_parent() -> None:
    """In a worker: exit as soon as the process that started it is gone, however it ended."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="torq_nb-parent-watch", daemon=True).start()


def _warm_up() -> None:
    """Worker initializer: end with the parent, ignore SIGINT, load trafilatura's caches, keep its
    per-page complaints quiet.

    trafilatura logs an ERROR for every page it cannot parse; here that is expected and handled.
    """
    _end_with_parent()
    # Jupyter interrupts the kernel's whole process group: a worker must not die of the user's Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("trafilatura", "htmldate", "courlan", "justext", "readability"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    trafilatura.bare_extraction("<html><body><p>warm up</p></body></html>", fast=True)


def _main_is_importable() -> bool:
    """False for a main script that spawn's workers cannot load again, such as one piped in on stdin."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return getattr(main, "__spec__", None) is not None or path is None or os.path.isfile(path)


def _default_workers() -> int:
    """The cores this process may use, at most 4: a run has 10-50 pages, and each worker holds ~100 MB."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


class Extractor:
    """Runs extract() off the event loop, using both cores (a process pool; reused across runs).

    The pool starts on the first page (or ``warm_up()``) and lives until ``close()``. Cancelling an awaiting task
    returns at once: a page still queued is dropped, one already in a worker finishes there and
    its result is discarded. Workers ignore SIGINT (a kernel interrupt reaches the whole process
    group). If a worker dies, the page is retried in a fresh pool; if that dies too, extraction
    continues in a thread.
    """

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers or _default_workers()
        self._pool: ProcessPoolExecutor | None = None  # once its workers have started
        self._starting: threading.Event | None = None  # set when the pool being started is ready (or is not)
        self._breaks = 0
        self._broken = False
        self._closed = False
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Start the worker processes now, e.g. in a thread while the search runs.

        The first pool in a process waits for the fork server to import torq_nb and trafilatura. If the
        Extractor is closed, or the interpreter exits, meanwhile, this returns quietly, and neither waits
        for the other.
        """
        self._executor()

    def _executor(self) -> ProcessPoolExecutor | None:
        """The pool with its workers started (this thread starts them, or waits for the one that does);
        None to extract in a thread."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this Extractor is closed; create a new one")
            if self._pool is not None or self._broken:
                return self._pool
            waiting = self._starting
            if waiting is None:
                if _WORKER_CONTEXT is None and not _main_is_importable():
                    log.info("the main script cannot be re-imported by worker processes; extracting in a thread")
                    self._broken = True
                    return None
                self._starting = threading.Event()
                context = _pool_context()
        if waiting is not None:
            waiting.wait()
            with self._lock:
                return self._pool
        return self._start(context)

    def _start(self, context: multiprocessing.context.BaseContext) -> ProcessPoolExecutor | None:
        """Start a pool and all its workers, holding no lock: close() and the interpreter's exit never wait
        for the fork server's imports (seconds on a loaded machine), and the pool is published, for pages
        to be submitted on the event loop, only once no submission has a process to start."""
        pool = None
        try:
            if context is _WORKER_CONTEXT:
                _wait_for_fork_server()
            pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_warm_up)
            # The pool starts a process per submission while none is idle: this starts them all at once.
            for _ in range(self.workers):
                pool.submit(int)
        except BrokenProcessPool:
            pass  # a worker died starting: the first page finds the pool broken and replaces it
        except Exception:
            # The interpreter is exiting (or close() came first): the pool refuses work (RuntimeError), or the
            # fork server's files are gone already (FileNotFoundError, OSError). Quiet then; else it is a fault.
            if not self._closed and threading.main_thread().is_alive():
                raise
        finally:
            with self._lock:
                starting, self._starting = self._starting, None
                keep = pool is not None and not self._closed and threading.main_thread().is_alive()
                if keep:
                    self._pool = pool
            if starting is not None:
                starting.set()
        if not keep:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            return None
        return pool

    async def extract(self, page: Page) -> Document | None:
        """extract(page) in a worker process; the event loop stays free meanwhile."""
        # Starting the pool waits for the fork server's imports (seconds, the first time): not on the loop.
        while (pool := self._pool or await asyncio.to_thread(self._executor)) is not None:
            try:
                return await asyncio.wrap_future(pool.submit(extract, page))
            except BrokenProcessPool:
                self._replace(pool)
        return await asyncio.to_thread(extract, page)

    def _replace(self, pool: ProcessPoolExecutor) -> None:
        """A worker died: the next call starts a fresh pool, or, after repeated deaths, uses a thread."""
        with self._lock:
            if self._pool is pool:  # every task that was waiting on it sees the same break: count it once
                self._pool = None
                self._breaks += 1
                if self._breaks >= _MAX_BREAKS:
                    self._broken = True
                    log.warning("extraction worker processes keep dying; extracting in a thread from now on")
        pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Stop the worker processes: queued pages are dropped, running ones finish first."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_shared: Extractor | None = None
_shared_lock = threading.Lock()


def shared_extractor() -> Extractor:
    """One Extractor per interpreter, so research runs in a kernel pay the workers' start-up once."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Extractor()
            atexit.register(_shared.close)
        return _shared
