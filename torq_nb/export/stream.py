"""Rows written to a file while a run goes: ``research(topic, stream_to="rows.ndjson")``.

A long run or a batch can then be watched (``tail -F``, ``pl.read_ndjson`` in another cell) and what it had
finished survives a crash. The rules, chosen so the file is a valid table after every row:

- The format follows the suffix: ``.ndjson`` / ``.jsonl`` (one JSON object a line) or ``.csv`` (a header line
  first). The values and the columns are those of the export (``torq_nb.export.tabular``): the same Polars
  writers, the same column order, CSV cells neutralised the same way.
- The file is started afresh when the run starts: an existing file is replaced, never appended to (another
  run's rows or header would corrupt it), its folder made if missing. The new file appears whole (an atomic
  replace): empty for NDJSON (``pl.read_ndjson(path, schema=...)`` reads it as no rows), the header for CSV.
  Being a new file, ``tail -F`` (by name) follows it where ``tail -f`` would keep the old one.
- Each row is one whole line, written with one ``write`` system call (unbuffered) that returns before the next
  row; a write that fails part-way (a full disk) is cut back off. The kernel copies a long row (over a memory
  page, 4 KiB) into the file page by page: a reader that reads during that write may see the row's start
  (read up to the last newline), and a SIGKILL that lands inside it may leave it cut. Rows are not fsynced: a
  power cut may lose the last ones.
- Rows come in the order pages finish, not in rank order; sort by ``rank`` (and ``topic``) for the export's.
- The caller closes the stream when the run has ended, however it ends; ``close`` may be called twice. One
  thread writes and closes it: the run's (its rows come from its event loop).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, TypeVar

import polars as pl

from torq_nb.export.atomic import atomic_path, is_url, local_path
from torq_nb.export.tabular import neutralize_formulas

__all__ = ["STREAM_SUFFIXES", "RowStream", "StreamWarning", "start_streamed", "stream_format"]

StreamFormat = Literal["ndjson", "csv"]

#: The suffixes a stream accepts, and the format each names.
STREAM_SUFFIXES: dict[str, StreamFormat] = {".ndjson": "ndjson", ".jsonl": "ndjson", ".csv": "csv"}


class StreamWarning(UserWarning):
    """Rows could no longer be written to the stream file; the run went on."""


def stream_format(path: object) -> StreamFormat:
    """The format ``path`` streams in, from its suffix; a TypeError or ValueError that says what to give instead.

    Called at the research call, before any search starts."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"stream_to must be a file path such as 'rows.ndjson', not {path!r:.80}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError(f"stream_to must be a text path such as 'rows.ndjson', not {text!r:.80}")
    if is_url(text):
        raise ValueError(f"stream_to takes a local file, not the URL {text!r:.120}: rows are streamed to local files "
                         "only; stream to a local file and export the results to the URL when the run ends")
    suffix = local_path(text).suffix.lower()
    try:
        return STREAM_SUFFIXES[suffix]
    except KeyError:
        raise ValueError(f"cannot stream to {local_path(text).name}: unknown suffix {suffix or '(none)'!r}; "
                         f"stream_to takes {', '.join(STREAM_SUFFIXES)}") from None


class RowStream:
    """An open stream file for rows of ``schema`` (column names and Polars types, in the file's order).

    ``write(row)`` takes a row dict (missing columns are null) and appends it as one whole line, at once. A write
    that fails (a full disk, a removed mount) is one StreamWarning and closes the stream: the run goes on and
    still returns all its results, the file keeps the rows written before.
    """

    def __init__(self, path: str | os.PathLike[str], schema: Mapping[str, pl.DataType]) -> None:
        self.format = stream_format(path)
        self.schema = dict(schema)
        with atomic_path(path) as fresh:  # the file appears whole: empty, or (CSV) with its header
            if self.format == "csv":
                fresh.write_bytes(self._encode(pl.DataFrame(schema=self.schema), header=True))
        self.path = local_path(path)
        # Unbuffered: a row is one write system call, in the file at once, no flush to forget.
        self._file: io.FileIO | None = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed by close()
        self._size = os.fstat(self._file.fileno()).st_size  # the length of the whole rows written

    def _encode(self, frame: pl.DataFrame, header: bool) -> bytes:
        """``frame``'s lines, by the export's Polars writers.

        A Ctrl-C that arrives while Polars writes is a KeyboardInterrupt in the thread that is writing, besides
        the main thread's own (seen with Polars 2.1). Off the main thread the lines are made again: the main thread
        handles the interrupt (it cancels the run, whose last rows still come here)."""
        while True:
            buffer = io.BytesIO()
            try:
                if self.format == "csv":
                    neutralize_formulas(frame).write_csv(buffer, include_header=header)
                else:
                    frame.write_ndjson(buffer)
                return buffer.getvalue()
            except KeyboardInterrupt:
                if threading.current_thread() is threading.main_thread():
                    raise

    def write(self, row: Mapping[str, Any]) -> None:
        """Append ``row`` as one whole line, in the file when this returns."""
        if self._file is None:  # closed, or a write failed: the rows are in the results
            return
        lines = self._encode(pl.DataFrame([row], schema=self.schema), header=False)
        try:
            rest = memoryview(lines)
            while rest:  # a regular file takes it in one call unless it is failing
                rest = rest[self._file.write(rest):]
            self._size += len(lines)
        except OSError as error:
            with contextlib.suppress(OSError):  # cut off the part of the row that got in
                os.ftruncate(self._file.fileno(), self._size)
            self._file.close()
            self._file = None
            warnings.warn(StreamWarning(f"cannot stream rows to {self.path} any more ({error}); the run goes "
                                        "on and its results hold every row"), stacklevel=2)

    def close(self) -> None:
        """Close the file (again: nothing)."""
        if self._file is not None:
            self._file.close()
            self._file = None


class _Job(Protocol):
    def add_done_callback(self, callback: Callable[[], object]) -> None: ...


J = TypeVar("J", bound=_Job)


def start_streamed(stream_to: str | os.PathLike[str] | None, schema: Mapping[str, pl.DataType],
                   start: Callable[[Callable[[Mapping[str, Any]], None] | None], J]) -> J:
    """``start(write)`` a job whose rows go to ``stream_to`` through ``write`` (None without a stream): the
    file is started afresh first, and closed when the job ends, or at once if it cannot start."""
    if stream_to is None:
        return start(None)
    rows = RowStream(stream_to, schema)
    try:
        job = start(rows.write)
    except BaseException:
        rows.close()
        raise
    job.add_done_callback(rows.close)
    return job
