"""Atomic file writes: a temporary file beside the target, then ``os.replace``.

A failure at any point leaves the previous file (or none), never a partial one, and concurrent
writers never see each other's temporary files.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def prepare_target(path: str | os.PathLike[str]) -> Path:
    """Resolve ``path``, create its missing parent folders, and fail clearly if it cannot be written."""
    target = Path(path).expanduser()
    parent = target.parent
    if target.is_dir():
        raise IsADirectoryError(f"cannot export to {target}: it is a folder; give a file name such as {target / 'report.pdf'}")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot create the folder {parent} for {target.name}: {exc.strerror}", str(parent)) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(13, f"cannot write {target}: the folder {parent} is not writable; choose another path or fix its permissions", str(parent))
    return target


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary path in the target's folder; on success it replaces ``path``.

    The temporary file is created empty with the usual permissions (0666 minus the umask), so the
    result looks like any other file the user writes. On any exception it is removed.
    """
    target = prepare_target(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except PermissionError as exc:
        raise PermissionError(13, f"cannot write {target}: {exc.strerror} in {target.parent}", str(target.parent)) from None
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the target path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path).expanduser()


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically and return the target path."""
    return write_bytes(path, text.encode("utf-8"))
