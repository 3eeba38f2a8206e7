"""Atomic writes: local files through a temporary file beside the target, then ``os.replace``; fsspec URLs
(``s3://``, ``gcs://``, ``memory://``, ...) as one upload of the finished document.

Locally, a failure at any point leaves the previous file (or none), never a partial one, and concurrent
writers never see each other's temporary files. For a URL the document is built in memory first and sent
in one call only once it is complete, so a failed export uploads nothing; the upload itself is atomic
where the store's single write is (S3 and GCS objects: one PUT; ``memory://``), and may leave a partial
file on stores that write in place (sftp, ftp, smb).
"""

from __future__ import annotations

import io
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def prepare_target(path: str | os.PathLike[str]) -> Path:
    """Resolve ``path``, create its missing parent folders, and fail clearly if it cannot be written."""
    if is_url(path):  # else s3://b/r.pdf would become a local folder named "s3:"
        raise ValueError(f"{path} is a URL: write it with write_file, which uploads")
    target = local_path(path)
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


def write_file(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object],
               storage_options: Mapping[str, Any] | None = None) -> Path | str:
    """The one path rule of every export writer. A local path: run ``write`` on a fresh file that replaces
    ``path`` only once it is complete (``atomic_path``) and return the Path, ``~`` expanded. An fsspec URL
    (``s3://bucket/r.pdf``, ``memory://r.csv``): build the document in memory, upload it in one write
    (``write_remote``; ``storage_options`` go to fsspec) and return the URL as given."""
    if is_url(path):
        return write_remote(str(path), write, storage_options)
    if storage_options:
        raise ValueError(f"storage_options apply to URLs (s3://..., gcs://...), not to the local path {path}")
    target = local_path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        write(fh)
    return target


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path | str:
    """Write ``data`` to ``path`` (a local path or an fsspec URL; see ``write_file``) and return where."""
    return write_file(path, lambda fh: fh.write(data))


def write_text(path: str | os.PathLike[str], text: str) -> Path | str:
    """Write ``text`` as UTF-8 to ``path`` (see ``write_bytes``) and return where."""
    return write_bytes(path, text.encode("utf-8"))


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path; ``file://`` counts as local."""
    return isinstance(path, str) and bool(_URL.match(path)) and not path.lower().startswith("file://")


def local_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a local Path, ``~`` expanded (a ``file://`` URL becomes its path)."""
    if isinstance(path, str) and path.lower().startswith("file://"):
        path = urlsplit(path).path
    return Path(path).expanduser()


def file_name(path: str | os.PathLike[str]) -> str:
    """The file name of a path or URL: the URL's last part (after its host or bucket), query and fragment left out."""
    if not is_url(path):
        return local_path(path).name
    location = str(path).split("://", 1)[1].split("?", 1)[0].split("#", 1)[0]
    return location.rstrip("/").rsplit("/", 1)[-1]


def filesystem(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem for ``url`` (with ``storage_options``) and the path inside it; a clear error
    before anything is written when the protocol is unknown or its package is not installed."""
    import fsspec
    from fsspec.core import split_protocol, url_to_fs

    protocol = split_protocol(url)[0] or ""
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise ValueError(f"cannot export to {url}: fsspec knows no protocol {protocol!r}; use a local path or a URL "
                         "such as s3://, gcs://, az://, sftp:// or memory:// (fsspec.available_protocols() lists all)"
                         ) from None
    except ImportError as exc:
        package = str(getattr(exc.__cause__, "name", None) or exc.name or protocol + "fs").split(".")[0]
        raise ImportError(f"exporting to {protocol}:// needs the package {package}: pip install {package}",
                          name=package) from None
    fs, key = url_to_fs(url, **(storage_options or {}))
    return fs, key


def write_remote(url: str, write: Callable[[IO[bytes]], object], storage_options: Mapping[str, Any] | None = None) -> str:
    """Run ``write`` on an in-memory file, then send its bytes to ``url`` in one write (``pipe_file``: a single
    PUT on object stores); return ``url``. The filesystem is resolved first, so a missing package or an unknown
    protocol fails before any work, and a ``write`` that raises uploads nothing.

    A failed upload is re-raised as one short ``OSError`` (PermissionError for refused or missing credentials)
    naming the URL, the store's reason and where credentials go, instead of the client library's traceback.
    """
    fs, key = filesystem(url, storage_options)
    buffer = io.BytesIO()
    write(buffer)
    try:
        fs.pipe_file(key, buffer.getvalue())
    except Exception as exc:  # noqa: BLE001 - any client library's error becomes one short message
        raise _upload_error(url, exc) from None
    return url


#: Words in a store's error that mean the credentials are missing or refused.
_CREDENTIALS = re.compile(r"credential|access ?denied|forbidden|signature|access ?key|token|unauthori[sz]ed|"
                          r"not authori[sz]ed|permission", re.IGNORECASE)


def _upload_error(url: str, exc: Exception) -> OSError:
    reason = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    if isinstance(exc, PermissionError) or _CREDENTIALS.search(f"{type(exc).__name__} {reason}"):
        return PermissionError(f"cannot upload {url}: {reason}; give credentials (and an endpoint_url) in "
                               "storage_options=, or in the store's usual environment variables or config files")
    if isinstance(exc, FileNotFoundError):
        return FileNotFoundError(f"cannot upload {url}: {reason}; check that the bucket or folder exists")
    return OSError(f"cannot upload {url}: {reason}")
