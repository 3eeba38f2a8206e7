"""LocalFiles: the offline source. It ranks a folder of .html, .htm, .md and .txt files (and their .gz forms)
against the query with BM25 (bm25s), and hands back each file's own content, so nothing is fetched.

The index of a folder is built once, off the event loop, and kept for the process; a file added, removed
or modified (size or mtime) is picked up at the next search, re-reading only what changed.

Nothing outside the folder is read: only regular files whose resolved path lies inside it, opened so that a
symlink swapped in after the check is not followed (see `open_inside`). File names need not be UTF-8; file
contents are decoded as fetched pages are (`torq_nb.research.fetch.decode_text`).

bm25s, lxml, mistune and trafilatura are imported on first use, so that importing the source (the torq-nb
command's ``--help`` does) stays light.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import re
import stat
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar
from urllib.parse import unquote_to_bytes, urlsplit

from torq_nb.research.models import Hit, Page
from torq_nb.research.sources.base import Location, Source, SourceError, html_to_text, xml_safe

if TYPE_CHECKING:
    import bm25s

    from torq_nb.research.fetch import Fetcher

log = logging.getLogger(__name__)

#: File types indexed, by suffix (each also gzip-compressed: page.html.gz).
CONTENT_TYPES = {".html": "text/html", ".htm": "text/html", ".md": "text/markdown", ".txt": "text/plain"}
#: Files larger than this (after decompression) are skipped, with a warning in the log.
MAX_FILE_BYTES = 20 * 1024 * 1024
#: Snippets are the best-matching passage, cut at a word boundary to about this many characters.
SNIPPET_CHARS = 300

#: What reading a file can raise: OS errors, too large / not supported (ValueError), damaged gzip data.
_READ_ERRORS = (OSError, ValueError, EOFError, zlib.error)
_BLANK_LINES = re.compile(r"\n\s*\n")  # between paragraphs of text and Markdown
_LINE_BREAK = re.compile(r"\n")  # between paragraphs of trafilatura's output


def _stemmer() -> Callable[[list[str]], list[str]] | None:
    """PyStemmer's English stemmer when installed (`pip install PyStemmer`); plain tokens otherwise."""
    try:
        import Stemmer  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    stem: Callable[[list[str]], list[str]] = Stemmer.Stemmer("english").stemWords
    return stem


STEMMER = _stemmer()


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lower-cased word tokens without English stop words, stemmed when a stemmer is installed."""
    import bm25s

    tokens: list[list[str]] = bm25s.tokenize(
        texts, stopwords="en", stemmer=STEMMER, return_ids=False, show_progress=False
    )
    return tokens


@dataclass(frozen=True)
class IndexedFile:
    """One indexed file: its title and plain-text passages (what is ranked). Its content is read again for
    a hit, so that a large folder's index does not hold every file in memory."""

    path: Path
    stamp: tuple[int, int]
    content_type: str
    title: str
    passages: tuple[str, ...]


@dataclass(frozen=True)
class FolderIndex:
    """A folder's files as of one scan (path -> (mtime_ns, size)) and their BM25 index."""

    stamps: dict[Path, tuple[int, int]]
    docs: list[IndexedFile]
    retriever: bm25s.BM25


_INDEXES: dict[Path, FolderIndex] = {}
_BUILD_LOCK = threading.Lock()


class LocalFiles(Source):
    """Search the files of the folder `path`, recursively (when chosen by name: else $TORQ_NB_LOCAL_PATH)."""

    name: ClassVar[str] = "local"
    location: ClassVar[Location] = Location(
        "path", "TORQ_NB_LOCAL_PATH", "the folder of .html, .htm, .md and .txt files to search", metavar="DIR"
    )

    def __init__(self, path: str | Path | None = None) -> None:
        if path is None or not str(path).strip():
            raise ValueError(
                "LocalFiles needs a folder of .html, .md or .txt files: LocalFiles('path/to/folder'), or "
                f"source='local' with path= or the {self.location.env} environment variable."
            )
        self.path = Path(path).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalFiles({shown(self.path)!r})"

    async def search(self, query: str, limit: int, fetcher: Fetcher) -> list[Hit]:
        if limit < 1 or not query.strip():
            return []
        return await asyncio.to_thread(self._search, query, limit)

    async def fetch(self, hit: Hit, fetcher: Fetcher) -> Page:
        """Read a hit's file again (hits normally carry their content, so this is rarely needed)."""
        parts = urlsplit(hit.url)
        if parts.scheme != "file":
            return Page(url=hit.url, status="error", error=f"LocalFiles serves only files under {shown(self.path)}.")
        path = Path(os.fsdecode(unquote_to_bytes(parts.path)))  # the URL holds the name's bytes, any encoding
        try:
            raw, content_type = await asyncio.to_thread(_read, self.path, path)
        except _READ_ERRORS as error:
            return Page(url=hit.url, status="error", error=f"cannot read {shown(path)}: {error}")
        return Page(url=hit.url, status="ok", final_url=hit.url, content_type=content_type, text=raw)

    def _search(self, query: str, limit: int) -> list[Hit]:
        index = self.index()
        query_tokens = tokenize([query])
        if not query_tokens[0]:
            return []
        results = index.retriever.retrieve(query_tokens, k=min(limit, len(index.docs)), show_progress=False)
        hits = []
        for position, score in zip(results.documents[0], results.scores[0], strict=True):
            if score <= 0:
                break
            doc = index.docs[int(position)]
            try:
                content, _ = _read(self.path, doc.path)
            except _READ_ERRORS as error:  # removed, replaced or damaged since the scan
                log.warning("LocalFiles: skipping %s: %s", shown(doc.path), error)
                continue
            hits.append(
                Hit(
                    title=doc.title,
                    url=doc.path.as_uri(),
                    snippet=_best_passage([p for p in doc.passages if p != doc.title] or [doc.title], query_tokens),
                    source=self.name,
                    score=float(score),
                    content=content,
                    content_type=doc.content_type,
                )
            )
        return hits

    def index(self) -> FolderIndex:
        """The folder's index, built or brought up to date as needed (thread-safe; blocking)."""
        folder = shown(self.path)
        if not self.path.is_dir():
            raise SourceError(
                f"LocalFiles: the folder {folder} does not exist (or is not a folder). "
                "Pass the folder that holds your .html, .md or .txt files."
            )
        stamps, outside = _scan(self.path)
        if not stamps:
            skipped = f" ({outside} skipped: they lead outside the folder)" if outside else ""
            raise SourceError(
                f"LocalFiles: no .html, .htm, .md or .txt files (or .gz of them) under {folder}{skipped}."
            )
        with _BUILD_LOCK:
            previous = _INDEXES.get(self.path)
            if previous is not None and previous.stamps == stamps:
                return previous
            known = {doc.path: doc for doc in previous.docs} if previous else {}
            docs = [
                doc
                for path, stamp in stamps.items()
                if (doc := _reuse(known.get(path), stamp) or _load(self.path, path, stamp)) is not None
            ]
            if not docs:
                raise SourceError(f"LocalFiles: none of the files under {folder} could be read; see the log.")
            tokens = tokenize([f"{doc.title}\n" + "\n".join(doc.passages) for doc in docs])
            if not any(tokens):
                raise SourceError(f"LocalFiles: the files under {folder} contain no searchable words.")
            import bm25s

            retriever = bm25s.BM25()
            retriever.index(tokens, show_progress=False)
            index = FolderIndex(stamps=stamps, docs=docs, retriever=retriever)
            _INDEXES[self.path] = index
            return index


def _scan(folder: Path) -> tuple[dict[Path, tuple[int, int]], int]:
    """Supported regular files inside `folder` (hidden ones skipped), by resolved path, with their (mtime_ns,
    size) in a stable order; and how many candidates were skipped because they lead outside the folder.

    A symlink to a file inside the folder stands for that file (indexed once); one that leads out is skipped."""
    stamps: dict[Path, tuple[int, int]] = {}
    outside = 0
    for path in sorted(folder.rglob("*")):
        if _hidden(path, folder) or _content_type(path) is None:
            continue
        real = _resolve(path)
        if real is None:
            continue
        if not real.is_relative_to(folder):
            log.info("LocalFiles: skipping %s: it leads outside %s", shown(path), shown(folder))
            outside += 1
            continue
        try:
            info = real.stat()
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and not _hidden(real, folder) and _content_type(real) is not None:
            stamps.setdefault(real, (info.st_mtime_ns, info.st_size))
    return dict(sorted(stamps.items())), outside


def _resolve(path: Path) -> Path | None:
    """`path` with every symlink followed, or None for a symlink loop (Python < 3.13 raises RuntimeError)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return None


def _hidden(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def shown(path: Path | str) -> str:
    """A path as text for titles and messages: a name that is not UTF-8 gets U+FFFD, never a lone surrogate
    (which no file, DataFrame or terminal can take)."""
    return os.fsencode(path).decode("utf-8", errors="replace")


_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
_WALK_BY_DIR_FD = bool(_NO_FOLLOW) and os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")


def open_inside(folder: Path, path: Path) -> IO[bytes]:
    """Open `path` for reading if it is a regular file whose resolved path lies inside `folder` (resolved).

    Raises ValueError when it leads outside or is no regular file (a FIFO, a device, a folder), OSError when
    it cannot be opened. Where the system allows (POSIX), the resolved path is opened one component at a time
    from the folder without following symlinks, so a link swapped in after the check is refused, not followed.
    """
    real = _resolve(path)
    if real is None:
        raise ValueError("it is a symlink loop")
    if not real.is_relative_to(folder):
        raise ValueError(f"it leads outside {shown(folder)}; LocalFiles reads only files inside its folder")
    if _WALK_BY_DIR_FD:
        parts = real.relative_to(folder).parts
        if not parts:
            raise ValueError("it is the folder itself, not a file")
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in parts[:-1]:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | _NO_FOLLOW, dir_fd=directory)
                os.close(directory)
                directory = inner
            # Only a regular file is opened at all (opening a device can do things); O_NONBLOCK: should a FIFO
            # be swapped in after this look, opening it does not wait for a writer, and it is refused below.
            mode = os.stat(parts[-1], dir_fd=directory, follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                raise ValueError("it changed since it was checked: it is a link now")
            if not stat.S_ISREG(mode):
                raise ValueError("it is not a regular file")
            fd = os.open(parts[-1], os.O_RDONLY | _NO_FOLLOW | os.O_NONBLOCK, dir_fd=directory)
        except OSError as error:
            raise OSError(error.errno, f"{error.strerror} (it changed since it was checked, or is a link)") from None
        finally:
            os.close(directory)
    else:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError("it is not a regular file")
    return os.fdopen(fd, "rb")


def _content_type(path: Path) -> str | None:
    name = path.name.lower().removesuffix(".gz")
    return CONTENT_TYPES.get(Path(name).suffix)


def _reuse(doc: IndexedFile | None, stamp: tuple[int, int]) -> IndexedFile | None:
    return doc if doc is not None and doc.stamp == stamp else None


def _read(folder: Path, path: Path) -> tuple[str, str]:
    """A file's decoded text and content type (gzip undone; decoded as a fetched page is: BOM, <meta charset>,
    UTF-8, else the detected charset); every read of the source goes through here, and so through `open_inside`."""
    from torq_nb.research.fetch import decode_text

    content_type = _content_type(path)
    if content_type is None:
        raise ValueError("not an .html, .htm, .md or .txt file")
    with open_inside(folder, path) as stream:
        if path.name.lower().endswith(".gz"):
            data = gzip.GzipFile(fileobj=stream).read(MAX_FILE_BYTES + 1)
        else:
            data = stream.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
    return decode_text(data, content_type=content_type), content_type


def _load(folder: Path, path: Path, stamp: tuple[int, int]) -> IndexedFile | None:
    """Read and take apart one file; None (logged) when it cannot be read."""
    try:
        raw, content_type = _read(folder, path)
    except _READ_ERRORS as error:
        log.warning("LocalFiles: skipping %s: %s", shown(path), error)
        return None
    fallback_title = shown(path.name).split(".")[0].replace("_", " ").replace("-", " ")
    if content_type == "text/html":
        title, passages = _html_parts(raw)
    elif content_type == "text/markdown":
        title, passages = _markdown_parts(raw)
    else:
        title, passages = "", _paragraphs(raw, _BLANK_LINES)
    return IndexedFile(path, stamp, content_type, title or fallback_title, passages)


def _html_parts(raw: str) -> tuple[str, tuple[str, ...]]:
    """Title (<title>, else the first <h1>) and main-text paragraphs (trafilatura; all text if it finds none)."""
    import lxml.html
    import trafilatura
    from lxml.etree import ParserError

    title = ""
    try:
        root = lxml.html.document_fromstring(xml_safe(raw))
        for element in root.iter("title", "h1"):
            title = " ".join(element.text_content().split()) if isinstance(element, lxml.html.HtmlElement) else ""
            if title:
                break
    except (ParserError, ValueError):
        pass
    text = trafilatura.extract(raw, fast=True, include_comments=False) or trafilatura.html2txt(raw) or ""
    return title, _paragraphs(text, _LINE_BREAK)


def _markdown_parts(raw: str) -> tuple[str, tuple[str, ...]]:
    """Title (the first heading) and plain-text blocks, each block rendered by mistune and stripped of markup."""
    import mistune

    title = ""
    blocks = []
    for block in _BLANK_LINES.split(raw):
        rendered = str(mistune.html(block))
        text = html_to_text(rendered)
        if not text:
            continue
        if not title and re.match(r"\s*<h[1-6]", rendered):
            title = text
        blocks.append(text)
    return title, tuple(blocks)


def _paragraphs(text: str, separator: re.Pattern[str]) -> tuple[str, ...]:
    """The non-empty parts of plain text between separators, spaces collapsed."""
    return tuple(part for part in (" ".join(chunk.split()) for chunk in separator.split(text)) if part)


def _best_passage(passages: list[str], query_tokens: list[list[str]]) -> str:
    """The passage that best matches the query (BM25 over the document's passages), cut to SNIPPET_CHARS."""
    if not passages:
        return ""
    tokens = tokenize(passages)
    if not any(tokens):
        return _shorten(passages[0], SNIPPET_CHARS)
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    results = retriever.retrieve(query_tokens, k=1, show_progress=False)
    best = passages[int(results.documents[0][0])] if results.scores[0][0] > 0 else passages[0]
    return _shorten(best, SNIPPET_CHARS)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "…"
