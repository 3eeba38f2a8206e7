"""The run store: every fetched page, search answer, extracted text, summary and finished run, in one SQLite file.

A re-run of the same research reads from it: pages fetched less than ``max_age`` ago are served without
a request, older ones are revalidated with a conditional request (If-None-Match / If-Modified-Since; a
304 serves the stored body), and ``refresh=True`` fetches everything again. ``runs()`` lists the finished
runs and ``load_run(run_id)`` gives one back.

Where: ``$TORQ_NB_STORE`` (a file path; ``off`` turns the store off), else ``torq_nb/store.sqlite`` in the
user's cache folder (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
``%LOCALAPPDATA%`` on Windows). Every research function takes ``store=`` (a path, a RunStore, or None for no
store).

Several kernels and processes may use one file at once: WAL journal (readers never wait for the writer),
a busy timeout, short transactions, and one connection per process and thread. Inside a run the store's
work happens on one thread of its own, so it works from any event loop (ResearchJob runs on another
thread's) and never blocks the loop on a locked file.

Bounded: data older than ``retention`` (30 days) goes, and past ``max_bytes`` (500 MB) the oldest entries
go first; freed pages are returned to the file system (incremental auto-vacuum).

A damaged or locked file raises ``StoreError``, whose message names the file and what to do. During a run
the same problem is one ``StoreWarning``: the run goes on without the store and its results are returned.
"""

from __future__ import annotations

import enum
import io
import json
import os
import sqlite3
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from torq_nb.research.models import Document, Hit, Page

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    import polars as pl

    from torq_nb.research.results import ResearchResults
    from torq_nb.research.sources.base import Source
    from torq_nb.research.synthesize import SourceText

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_STORE",
    "STORE_ENV",
    "RunStore",
    "StoreArgument",
    "StoreError",
    "StoreSession",
    "StoreWarning",
    "close_stores",
    "default_store_path",
    "resolve_store",
    "runs",
]

STORE_ENV = "TORQ_NB_STORE"
#: Values of TORQ_NB_STORE that turn the store off.
_OFF = frozenset({"off", "none", "0", "false", "no"})
#: How old a stored page (or search answer) may be and still be used without asking the server.
DEFAULT_MAX_AGE = timedelta(days=1)
DEFAULT_MAX_BYTES = 500_000_000
DEFAULT_RETENTION = timedelta(days=30)
DEFAULT_TIMEOUT = 10.0
#: The schema version (PRAGMA user_version) this code reads and writes.
_VERSION = 1
#: Pruning by size deletes down to this share of max_bytes, so the next runs do not prune again at once.
_PRUNE_TO = 0.9
T = TypeVar("T")


class DefaultStore(enum.Enum):
    """The default store: ``$TORQ_NB_STORE``, else ``store.sqlite`` in the user's cache folder."""

    DEFAULT = "default"

    def __repr__(self) -> str:
        return "DEFAULT_STORE"


DEFAULT_STORE = DefaultStore.DEFAULT
#: What ``store=`` accepts: the default store, a RunStore, a path to one, or None for no store.
StoreArgument: TypeAlias = "RunStore | str | os.PathLike[str] | DefaultStore | None"


class StoreError(Exception):
    """The run store cannot be used; the message names the file, the cause and what to do."""


class StoreWarning(UserWarning):
    """A run went on without its store (a StoreError happened); its results are returned but not all kept."""


def default_store_path() -> Path | None:
    """``$TORQ_NB_STORE`` (None if it turns the store off), else store.sqlite in the user's cache folder."""
    configured = os.environ.get(STORE_ENV, "").strip()
    if configured.lower() in _OFF:
        return None
    if configured:
        return Path(configured).expanduser()
    return _cache_folder() / "torq_nb" / "store.sqlite"


def _cache_folder() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    return Path(os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache")


_opened: dict[Path, RunStore] = {}
_opened_lock = threading.Lock()


def resolve_store(store: StoreArgument = DEFAULT_STORE) -> RunStore | None:
    """The RunStore that ``store=`` means: one RunStore per path and process, so runs share its connection."""
    if store is None or isinstance(store, RunStore):
        return store
    if store is DEFAULT_STORE:
        path = default_store_path()
        if path is None:
            return None
    elif isinstance(store, (str, os.PathLike)):
        path = Path(store).expanduser()
    else:
        raise TypeError(
            f"store must be a path, a RunStore or None (no store), not {store!r}; for example store='runs.sqlite'"
        )
    key = path.absolute()
    with _opened_lock:
        if key not in _opened:
            _opened[key] = RunStore(key)
        return _opened[key]


def close_stores() -> None:
    """Close the stores opened by path (``store=`` paths and the default): their connections and threads."""
    with _opened_lock:
        stores = list(_opened.values())
        _opened.clear()
    for store in stores:
        store.close()


def _seconds(value: float | timedelta, name: str) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a number of seconds (0 or more) or a timedelta, not {value!r}")
    return float(value)


def _now() -> float:
    return time.time()


def _utc(stamp: float | None) -> datetime | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, timezone.utc)


@dataclass(frozen=True)
class StoredPage:
    """A page as the store keeps it: the decoded text with its HTTP validators and when it was fetched."""

    url: str
    final_url: str | None
    http_status: int | None
    content_type: str | None
    text: str
    etag: str | None
    last_modified: str | None
    fetched_at: float
    elapsed_ms: float | None
    redirects: tuple[str, ...]
    #: Fetched by a policy that refuses private networks, so its address was checked as public.
    public: bool

    def page(self, url: str) -> Page:
        """The stored page as a fetch result for ``url``."""
        return Page(url=url, status="ok", final_url=self.final_url, http_status=self.http_status,
                    content_type=self.content_type, text=self.text, fetched_at=_utc(self.fetched_at),
                    elapsed_ms=self.elapsed_ms, redirects=self.redirects)

    def validators(self) -> dict[str, str]:
        """The conditional-request headers that revalidate this page."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


_SCHEMA = """
CREATE TABLE IF NOT EXISTS pages (
    url TEXT PRIMARY KEY, final_url TEXT, http_status INTEGER, content_type TEXT, body BLOB NOT NULL,
    etag TEXT, last_modified TEXT, fetched_at REAL NOT NULL, elapsed_ms REAL, redirects TEXT NOT NULL,
    public INTEGER NOT NULL, stored_at REAL NOT NULL, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS searches (
    source TEXT NOT NULL, query TEXT NOT NULL, lim INTEGER NOT NULL, hits BLOB NOT NULL,
    stored_at REAL NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (source, query, lim));
CREATE TABLE IF NOT EXISTS documents (
    digest TEXT PRIMARY KEY, doc BLOB NOT NULL, stored_at REAL NOT NULL, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS summaries (
    digest TEXT PRIMARY KEY, summary TEXT NOT NULL, stored_at REAL NOT NULL, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, topic TEXT NOT NULL, depth TEXT NOT NULL, source TEXT NOT NULL,
    started_at REAL, duration REAL, pages INTEGER, hits INTEGER, summary TEXT NOT NULL,
    rows BLOB NOT NULL, info TEXT NOT NULL, stored_at REAL NOT NULL, size INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS pages_age ON pages (stored_at, size);
CREATE INDEX IF NOT EXISTS searches_age ON searches (stored_at, size);
CREATE INDEX IF NOT EXISTS documents_age ON documents (stored_at, size);
CREATE INDEX IF NOT EXISTS summaries_age ON summaries (stored_at, size);
CREATE INDEX IF NOT EXISTS runs_age ON runs (stored_at, size);
"""
#: The tables that hold data, each with its key columns (all have stored_at and size).
_TABLES = {"pages": "url", "searches": "source, query, lim", "documents": "digest", "summaries": "digest",
           "runs": "run_id"}


class RunStore:
    """A SQLite file of fetched pages, search answers, extracted texts, summaries and finished runs.

    ``path``: the file (made, with its folder, on first use). ``max_bytes`` and ``retention`` bound it:
    data older than ``retention`` goes, and past ``max_bytes`` the oldest entries go first. ``timeout``:
    seconds to wait for another process's write to finish before a "locked" StoreError.
    Nothing is opened until first use. A RunStore may be shared by threads and event loops, and pickled
    (to another process, a Dask worker): the copy opens its own connection to the same file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        retention: float | timedelta = DEFAULT_RETENTION,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if path is None:
            path = default_store_path()
            if path is None:
                raise ValueError(f"{STORE_ENV} turns the store off; give RunStore a path")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive number of bytes, not {max_bytes!r}; e.g. 500_000_000")
        self.path = Path(path).expanduser().absolute()
        self.max_bytes = max_bytes
        self.retention = _seconds(retention, "retention")
        self.timeout = _seconds(timeout, "timeout")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._pruned_by: int | None = None  # the process that pruned this store on saving a run

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (str(self.path), self.max_bytes, self.retention, self.timeout))

    # connections ------------------------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (a new one after a fork: a connection must not cross processes)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        with self._errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:  # a new store is the user's own (0600; SQLite gives its -wal and -shm files the same mode)
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > _VERSION:
                    raise StoreError(
                        f"The torq_nb run store {self.path} was written by a newer torq_nb (schema {version}, this "
                        f"one reads {_VERSION}). Upgrade torq_nb, or point {STORE_ENV} (or store=) at another file."
                    )
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect only while the file is empty
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                if version < _VERSION:
                    with _transaction(conn):
                        for statement in _SCHEMA.split(";"):
                            if statement.strip():
                                conn.execute(statement)
                        conn.execute(f"PRAGMA user_version = {_VERSION}")
            except BaseException:
                conn.close()
                raise
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn SQLite's errors into a StoreError that names this file and says what to do."""
        try:
            yield
        except sqlite3.Error as error:
            raise StoreError(self._explain(error)) from error
        except OSError as error:
            raise StoreError(
                f"The torq_nb run store {self.path} cannot be created ({error}). Point {STORE_ENV} (or store=) at a "
                "file in a writable folder, or turn the store off with store=None."
            ) from error

    def _explain(self, error: sqlite3.Error) -> str:
        name = getattr(error, "sqlite_errorname", "") or ""
        other = f"point {STORE_ENV} (or store=) at another file, or turn the store off with store=None"
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(error):
            return (f"The torq_nb run store {self.path} is locked: another process kept it busy for more than "
                    f"{self.timeout:g} s ({error}). Try again when it is done, or {other}.")
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "not a database" in str(error) or "malformed" in str(error):
            return (f"The torq_nb run store {self.path} is damaged or is not a SQLite database ({error}). Delete the "
                    f"file (its stored pages and past runs are lost; research works without them), or {other}.")
        if name.startswith(("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_PERM")):
            return (f"The torq_nb run store {self.path} cannot be written ({error}). Free some disk space or check "
                    f"the file's permissions, or {other}.")
        return f"The torq_nb run store {self.path} failed ({error}); {other}."

    def _do(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` with this thread's connection; SQLite's errors become StoreErrors."""
        conn = self._connection()
        with self._errors():
            return work(conn)

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking store method on the store's own thread, so the event loop stays free."""
        import asyncio  # here, not at the top: torq_nb.api imports this module, and ``import torq_nb`` stays light
        from concurrent.futures import ThreadPoolExecutor

        with self._lock:
            if self._executor is None or self._pid != os.getpid():
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="torq_nb-store")
                self._pid = os.getpid()
            executor = self._executor
        return await asyncio.get_running_loop().run_in_executor(executor, function, *args)

    def close(self) -> None:
        """Close this thread's connection and the store's thread (a later use opens them again)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    # pages ------------------------------------------------------------------------------------------------------
    def page(self, url: str) -> StoredPage | None:
        """The stored page fetched from ``url`` (with its query), or None."""
        row = self._do(lambda conn: conn.execute(
            "SELECT url, final_url, http_status, content_type, body, etag, last_modified, fetched_at, elapsed_ms,"
            " redirects, public FROM pages WHERE url = ?", (url,)).fetchone())
        if row is None:
            return None
        return StoredPage(row[0], row[1], row[2], row[3], zlib.decompress(row[4]).decode("utf-8"), row[5], row[6],
                          row[7], row[8], tuple(json.loads(row[9])), bool(row[10]))

    def save_page(self, page: StoredPage) -> None:
        """Keep ``page`` (replacing what was stored for its URL)."""
        body = zlib.compress(page.text.encode("utf-8", "surrogatepass"), 1)  # level 1: 4x on HTML, at 100+ MB/s
        values = (page.url, page.final_url, page.http_status, page.content_type, body, page.etag, page.last_modified,
                  page.fetched_at, page.elapsed_ms, json.dumps(page.redirects), int(page.public), _now(),
                  len(body) + len(page.url) + 100)
        self._write("INSERT OR REPLACE INTO pages VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", values)

    def revalidated(self, url: str, fetched_at: float, etag: str | None, last_modified: str | None) -> None:
        """A conditional request for ``url`` got 304: the stored body is current as of ``fetched_at``."""
        self._write("UPDATE pages SET fetched_at = ?, stored_at = ?, etag = coalesce(?, etag),"
                    " last_modified = coalesce(?, last_modified) WHERE url = ?",
                    (fetched_at, _now(), etag, last_modified, url))

    # searches ---------------------------------------------------------------------------------------------------
    def search(self, source: str, query: str, limit: int) -> tuple[list[Hit], float] | None:
        """The stored answer of ``source`` (its identity, see ``source_identity``) to ``query``, and when it came."""
        row = self._do(lambda conn: conn.execute(
            "SELECT hits, stored_at FROM searches WHERE source = ? AND query = ? AND lim = ?",
            (source, query, limit)).fetchone())
        if row is None:
            return None
        return [_hit(item) for item in json.loads(zlib.decompress(row[0]))], row[1]

    def save_search(self, source: str, query: str, limit: int, hits: list[Hit]) -> None:
        blob = zlib.compress(json.dumps([_hit_dict(hit) for hit in hits]).encode("utf-8", "surrogatepass"), 6)
        self._write("INSERT OR REPLACE INTO searches VALUES (?,?,?,?,?,?)",
                    (source, query, limit, blob, _now(), len(blob) + len(query) + 100))

    # extracted documents ----------------------------------------------------------------------------------------
    def document(self, digest: str) -> Document | None:
        """The text extracted before from a page body whose ``document_key`` is ``digest``, if kept."""
        row = self._do(lambda conn: conn.execute("SELECT doc FROM documents WHERE digest = ?", (digest,)).fetchone())
        if row is None:
            return None
        data = json.loads(zlib.decompress(row[0]))
        return Document(data["text"], data["title"], data["author"],
                        date.fromisoformat(data["published"]) if data["published"] else None)

    def save_document(self, digest: str, doc: Document) -> None:
        """Keep the text extracted from the page body whose ``document_key`` is ``digest``."""
        data = {"text": doc.text, "title": doc.title, "author": doc.author,
                "published": doc.published.isoformat() if doc.published else None}
        blob = zlib.compress(json.dumps(data).encode("utf-8", "surrogatepass"), 6)
        self._write("INSERT OR REPLACE INTO documents VALUES (?,?,?,?)",
                    (digest, blob, _now(), len(blob) + 100))

    # summaries --------------------------------------------------------------------------------------------------
    def summary(self, synthesizer: object, topic: str, texts: Sequence[SourceText]) -> str | None:
        """The summary this synthesizer (same class and settings) wrote before of these very texts, if kept."""
        digest = summary_key(synthesizer, topic, texts)
        row = self._do(lambda conn: conn.execute("SELECT summary FROM summaries WHERE digest = ?",
                                                 (digest,)).fetchone())
        return None if row is None else str(row[0])

    def save_summary(self, synthesizer: object, topic: str, texts: Sequence[SourceText], summary: str) -> None:
        self._write("INSERT OR REPLACE INTO summaries VALUES (?,?,?,?)",
                    (summary_key(synthesizer, topic, texts), summary, _now(), len(summary) + 100))

    # runs -------------------------------------------------------------------------------------------------------
    def save_run(self, results: ResearchResults) -> str:
        """Keep a finished run (table as Parquet, summary, progress, metadata); returns its run id. The first run
        a process saves prunes the store (``prune``)."""
        buffer = io.BytesIO()
        results.df.write_parquet(buffer, compression="zstd")
        rows = buffer.getvalue()
        fields = results.to_dict(rows=False)  # the one serialiser; topic, summary and the rows have columns here
        info = json.dumps({"progress": fields["progress"], "metadata": fields["metadata"]}, default=str)
        started = results.progress.started_at if results.progress else None
        pages = int((results.df["status"] == "ok").sum()) if "status" in results.df.columns else 0
        values = (results.operation_id, results.topic, results.depth, results.source,
                  datetime.fromisoformat(started).timestamp() if started else _now(),
                  results.progress.duration if results.progress else None, pages, results.df.height,
                  results.summary, rows, info, _now(), len(rows) + len(info) + len(results.summary) + 100)
        self._write("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", values)
        if self._pruned_by != os.getpid():  # once per process: a prune scans every table, and a run adds little
            self._pruned_by = os.getpid()
            self.prune()
        return results.operation_id

    def runs(self) -> pl.DataFrame:
        """The stored runs, newest first: topic, depth, source, when, pages (read), duration (s), run_id."""
        import polars as pl

        rows = self._do(lambda conn: conn.execute(
            "SELECT topic, depth, source, started_at, pages, duration, run_id FROM runs"
            " ORDER BY started_at DESC").fetchall())
        schema = {"topic": pl.String(), "depth": pl.String(), "source": pl.String(),
                  "when": pl.Datetime("us", "UTC"), "pages": pl.Int32(), "duration": pl.Float64(),
                  "run_id": pl.String()}
        return pl.DataFrame([(*row[:3], _utc(row[3]), *row[4:]) for row in rows], schema=schema, orient="row")

    def load(self, run_id: str) -> ResearchResults:
        """The stored run ``run_id`` (or the one run whose id starts with it, at least 4 characters, as git takes a
        commit's) as ResearchResults; a KeyError if there is none, or more than one."""
        import polars as pl

        from torq_nb.research.results import SCHEMA, ResearchResults

        def find(conn: sqlite3.Connection) -> list[Any]:
            query = "SELECT topic, depth, source, summary, rows, info, run_id FROM runs WHERE "
            rows = conn.execute(query + "run_id = ?", (run_id,)).fetchall()
            if rows or len(run_id) < 4:
                return rows
            return conn.execute(query + "substr(run_id, 1, ?) = ? LIMIT 2", (len(run_id), run_id)).fetchall()

        rows = self._do(find)
        if len(rows) != 1:
            what = "more than one run whose id starts with" if rows else "no run"
            more = " (give at least 4 characters of its id)" if len(run_id) < 4 else ""
            raise KeyError(f"{what} {run_id!r} in the store {self.path}{more}")
        row = rows[0]
        run_id = row[6]
        df = pl.read_parquet(io.BytesIO(row[4]))
        # A run stored by an older torq_nb lacks later columns: they come back empty, in the documented order.
        df = df.with_columns(pl.lit(None, dtype).alias(name) for name, dtype in SCHEMA.items() if name not in df.columns)
        df = df.select(*SCHEMA, *(name for name in df.columns if name not in SCHEMA))
        return ResearchResults.from_dict({**json.loads(row[5]), "topic": row[0], "depth": row[1], "source": row[2],
                                          "summary": row[3], "operation_id": run_id, "results": df})

    # size -------------------------------------------------------------------------------------------------------
    def size(self) -> int:
        """The bytes of data held (the file is about this large, plus SQLite's own overhead)."""
        return self._do(lambda conn: sum(
            int(conn.execute(f"SELECT coalesce(sum(size), 0) FROM {table}").fetchone()[0]) for table in _TABLES))

    def prune(self) -> int:
        """Delete what is older than ``retention``, then the oldest entries past ``max_bytes``; returns how many."""

        def work(conn: sqlite3.Connection) -> int:
            deleted = 0
            with _transaction(conn):
                cutoff = _now() - self.retention
                for table in _TABLES:
                    deleted += conn.execute(f"DELETE FROM {table} WHERE stored_at < ?", (cutoff,)).rowcount
                total = sum(conn.execute(f"SELECT coalesce(sum(size), 0) FROM {t}").fetchone()[0] for t in _TABLES)
                if total > self.max_bytes:
                    union = " UNION ALL ".join(f"SELECT '{t}', rowid, stored_at, size FROM {t}" for t in _TABLES)
                    doomed: dict[str, list[int]] = {t: [] for t in _TABLES}
                    for table, rowid, _, size in conn.execute(f"SELECT * FROM ({union}) ORDER BY 3"):
                        if total <= self.max_bytes * _PRUNE_TO:
                            break
                        doomed[table].append(rowid)
                        total -= size
                    for table, rowids in doomed.items():
                        for start in range(0, len(rowids), 500):
                            chunk = rowids[start : start + 500]
                            conn.execute(f"DELETE FROM {table} WHERE rowid IN ({','.join('?' * len(chunk))})", chunk)
                        deleted += len(rowids)
            if deleted:
                conn.execute("PRAGMA incremental_vacuum")
            return deleted

        return self._do(work)

    def _write(self, sql: str, values: tuple[Any, ...]) -> None:
        def work(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(sql, values)

        self._do(work)


def _rebuild(path: str, max_bytes: int, retention: float, timeout: float) -> RunStore:
    return RunStore(path, max_bytes=max_bytes, retention=retention, timeout=timeout)


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One short write transaction; BEGIN IMMEDIATE takes the write lock at once (waiting up to the busy timeout),
    so two writers never deadlock upgrading read locks."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _hit_dict(hit: Hit) -> dict[str, Any]:
    return {"title": hit.title, "url": hit.url, "snippet": hit.snippet, "source": hit.source, "score": hit.score,
            "published": hit.published.isoformat() if hit.published else None, "content": hit.content,
            "content_type": hit.content_type}


def _hit(data: Mapping[str, Any]) -> Hit:
    published = date.fromisoformat(data["published"]) if data.get("published") else None
    return Hit(**{**data, "published": published})


def _identity(thing: object) -> str:
    """The class of ``thing`` and its public settings (endpoint, language, model...): what makes two give alike.
    A setting JSON cannot hold is taken by its repr (one that names a memory address then never matches: safe)."""
    cls = type(thing)
    settings = {name: value for name, value in vars(thing).items() if not name.startswith("_")}
    rules = getattr(cls, "algorithm", None)  # a synthesizer's rule version (ExtractiveSynthesizer.algorithm)
    version = f" algorithm={rules}" if rules is not None else ""
    return f"{cls.__module__}.{cls.__qualname__}{version} {json.dumps(settings, sort_keys=True, default=repr)}"


def source_identity(source: Source) -> str | None:
    """The key of a source's search answers: its class and a digest of its public settings (a plug-in's API key
    must not lie in the file as text).

    None for local files: they are on this disk and may have been edited, so their searches are not stored.
    """
    import hashlib

    from torq_nb.research.sources.local import LocalFiles

    if isinstance(source, LocalFiles):
        return None
    cls = type(source)
    return f"{cls.__module__}.{cls.__qualname__} {hashlib.sha256(_identity(source).encode()).hexdigest()}"


def summary_key(synthesizer: object, topic: str, texts: Sequence[SourceText]) -> str:
    """The key of a summary: the synthesizer's class and settings, the topic, and every text it was given."""
    import hashlib

    digest = hashlib.sha256(f"{_identity(synthesizer)}\0{topic}\0".encode())
    for text in texts:
        digest.update(f"{text.rank}\0{text.title}\0{text.url}\0{text.text}\0".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


_extractor_id: str | None = None


def document_key(page: Page) -> str:
    """The key of the text extracted from ``page``: its body and the extraction code (torq_nb and trafilatura)."""
    import hashlib

    global _extractor_id
    if _extractor_id is None:
        from torq_nb.research import extract

        code = hashlib.sha256(Path(extract.__file__).read_bytes()).hexdigest()[:16]
        _extractor_id = f"{code} trafilatura {metadata.version('trafilatura')}"
    digest = hashlib.sha256(f"{_extractor_id}\0{page.final_url or page.url}\0{page.content_type}\0".encode())
    digest.update((page.text or "").encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


class StoreSession:
    """The store as one run (or one batch of runs) uses it: how old a page may be, whether to refetch, and
    store problems turned into one StoreWarning, after which the run goes on without the store.

    ``store``: a RunStore or None (every lookup misses, nothing is kept). ``max_age``: seconds (or a
    timedelta) a stored page or search answer stays fresh. ``refresh``: fetch and search again, keeping the
    new answers. Share one session between the runs of a batch, and pass it to their Fetcher.
    """

    def __init__(self, store: RunStore | None, *, max_age: float | timedelta = DEFAULT_MAX_AGE,
                 refresh: bool = False) -> None:
        if store is not None and not isinstance(store, RunStore):
            raise TypeError(f"StoreSession takes a RunStore or None, not {store!r}; resolve_store() makes one")
        if not isinstance(refresh, bool):
            raise TypeError(f"refresh must be True or False, not {refresh!r}")
        self.store = store
        self.max_age = _seconds(max_age, "max_age")
        self.refresh = refresh
        self._broken: StoreError | None = None
        self._warned = False
        self._identities: dict[int, tuple[Source, str | None]] = {}  # by id(source), the source kept alive

    async def _use(self, function: Callable[..., T], *args: Any) -> T | None:
        if self.store is None or self._broken is not None:
            return None
        try:
            return await self.store.call(self._unless_broken, function, *args)
        except StoreError as error:
            if not self._warned:
                self._warned = True
                # Shown for every run it happens to (warn() would show it once per place in the code, and a
                # second run with the same broken store would say nothing); filters still apply.
                warnings.warn_explicit(StoreWarning(f"{error} This run goes on without the store: its results are "
                                                    "returned, but not kept for re-runs."), StoreWarning,
                                       "torq_nb", 0, module=__name__, registry={})
            return None

    def _unless_broken(self, function: Callable[..., T], *args: Any) -> T | None:
        """On the store's thread: skip the work once the store has failed (calls queued behind a locked write
        would each wait out the busy timeout again)."""
        if self._broken is not None:
            return None
        try:
            return function(*args)
        except StoreError as error:
            self._broken = error
            raise

    def _identity(self, source: Source) -> str | None:
        """``source_identity(source)``, worked out once per source in this session (it hashes the settings)."""
        known = self._identities.get(id(source))
        if known is None or known[0] is not source:
            known = self._identities[id(source)] = (source, source_identity(source))
        return known[1]

    def fresh(self, fetched_at: float) -> bool:
        return _now() - fetched_at <= self.max_age

    async def page(self, url: str, *, public_only: bool) -> StoredPage | None:
        """The stored page for ``url`` to serve or revalidate (None under refresh). ``public_only``: only a page
        whose address was checked as public will do (the fetcher refuses private networks)."""
        if self.refresh or self.store is None:
            return None
        stored = await self._use(self.store.page, url)
        if stored is None or (public_only and not stored.public):
            return None
        return stored

    async def save_page(self, url: str, page: Page, headers: Mapping[str, str], *, public: bool) -> None:
        if self.store is None or page.text is None:
            return
        fetched = page.fetched_at.timestamp() if page.fetched_at else _now()
        stored = StoredPage(url, page.final_url, page.http_status, page.content_type, page.text, headers.get("ETag"),
                            headers.get("Last-Modified"), fetched, page.elapsed_ms, page.redirects, public)
        await self._use(self.store.save_page, stored)

    async def revalidated(self, stored: StoredPage, headers: Mapping[str, str], elapsed_ms: float | None) -> StoredPage:
        """A 304 for ``stored``: the stored body, current now (the store notes it)."""
        renewed = replace(stored, fetched_at=_now(), elapsed_ms=elapsed_ms,
                          etag=headers.get("ETag") or stored.etag,
                          last_modified=headers.get("Last-Modified") or stored.last_modified)
        if self.store is not None:
            await self._use(self.store.revalidated, stored.url, renewed.fetched_at, headers.get("ETag"),
                            headers.get("Last-Modified"))
        return renewed

    async def source_page(self, source: Source, url: str) -> Page | None:
        """A fresh page that ``source`` made for the hit at ``url`` from its API (None under refresh)."""
        identity = self._identity(source)
        if self.refresh or self.store is None or identity is None:
            return None
        stored = await self._use(self.store.page, f"{identity} {url}")
        return stored.page(url) if stored is not None and self.fresh(stored.fetched_at) else None

    async def save_source_page(self, source: Source, url: str, page: Page) -> None:
        identity = self._identity(source)
        if identity is not None:
            await self.save_page(f"{identity} {url}", page, {}, public=True)

    async def search(self, source: Source, query: str, limit: int) -> list[Hit] | None:
        """A fresh stored answer of ``source`` to ``query`` (None if there is none, or under refresh)."""
        identity = self._identity(source)
        if self.refresh or self.store is None or identity is None:
            return None
        found = await self._use(self.store.search, identity, query, limit)
        if found is None or not self.fresh(found[1]):
            return None
        return found[0]

    async def save_search(self, source: Source, query: str, limit: int, hits: list[Hit]) -> None:
        identity = self._identity(source)
        if self.store is not None and identity is not None:
            await self._use(self.store.save_search, identity, query, limit, hits)

    async def document(self, page: Page, extract: Callable[[Page], Awaitable[Document | None]]) -> Document | None:
        """The text of this very page body: extracted before (kept in the store), else ``extract(page)``'s, then
        kept. The body is hashed once, on the store's thread."""
        if self.store is None:
            return await extract(page)
        digest = await self._use(document_key, page)
        doc = await self._use(self.store.document, digest) if digest is not None else None
        if doc is None:
            doc = await extract(page)
            if doc is not None and digest is not None:
                await self._use(self.store.save_document, digest, doc)
        return doc

    async def summary(self, synthesizer: object, topic: str, texts: Sequence[SourceText]) -> str | None:
        """The summary written before by this synthesizer of these very texts (None under refresh)."""
        if self.store is None or self.refresh:
            return None
        return await self._use(self.store.summary, synthesizer, topic, texts)

    async def save_summary(self, synthesizer: object, topic: str, texts: Sequence[SourceText], summary: str) -> None:
        if self.store is not None:
            await self._use(self.store.save_summary, synthesizer, topic, texts, summary)

    async def save_run(self, results: ResearchResults) -> None:
        """Keep a finished run for ``runs()`` and ``load_run()``."""
        if self.store is not None:
            await self._use(self.store.save_run, results)


def runs(store: StoreArgument = DEFAULT_STORE) -> pl.DataFrame:
    """The past runs in the store, newest first, as a Polars DataFrame: topic, depth, source, when, pages (read),
    duration (seconds) and run_id (for ``torq_nb.load_run(run_id)``)."""
    found = resolve_store(store)
    if found is None:
        raise ValueError(f"no run store: {STORE_ENV} turns it off; pass store='path/to/store.sqlite'")
    return found.runs()
