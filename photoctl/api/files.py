"""Opening the files serve hands out, so that a path in the database cannot be turned into
a way to read something else.

A photo's original lives where ingest found it, in a folder others can write to. A file there
swapped for a symlink (to ``photoctl.db``, to ``/etc/passwd``) must not be served, and must not
even be opened when it is the database: a process that opens and closes an SQLite file loses
every POSIX lock it held on it, after which another process may checkpoint and delete the WAL
under serve's feet (an upload answered 202 was then lost). So a file is served only when:

- its last component is not a link (checked with lstat, and ``O_NOFOLLOW`` at the open),
- it is a regular file (a FIFO would block the request; ``O_NONBLOCK`` guards the open),
- it is not the database file or one of its companions (by device and inode, before opening),
- the path the kernel resolved for the open file lies inside the storage root, or inside a
  registered ingest root but not inside the data dir (originals only),
- it starts like an image (a hard link to anything else is refused).

The response streams from the descriptor that was checked, never by re-opening the path.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fastapi.responses import Response, StreamingResponse

from photoctl.api.download_names import content_disposition
from photoctl.db import sqlite_file
from photoctl.errors import PhotoctlError
from photoctl.imaging import looks_like_image

_CHUNK_BYTES = 256 * 1024
# Descriptors that must never be closed: if a swap between lstat and open handed us the
# database's inode anyway, closing it would drop this process's SQLite locks. Never expected
# to grow past a handful; kept only to say so in code.
_NEVER_CLOSED: list[int] = []


class Served(Protocol):
    """What a route answers with: a file opened here, or an object (api/object_files.py)."""

    name: str
    size: int

    def chunks(self) -> Iterator[bytes]: ...

    def response(
        self, media_type: str | None = None, download_name: str | None = None
    ) -> Response: ...


class FileRefused(PhotoctlError):
    """The file is missing or is not one serve may hand out."""


@dataclass
class ServedFile:
    fd: int
    size: int
    name: str

    def response(
        self, media_type: str | None = None, download_name: str | None = None
    ) -> StreamingResponse:
        media_type = media_type or mimetypes.guess_type(self.name)[0] or "application/octet-stream"
        headers = {"Content-Length": str(self.size)}
        if download_name:
            headers["Content-Disposition"] = content_disposition(download_name)
        return StreamingResponse(self.chunks(), media_type=media_type, headers=headers)

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes; the descriptor is closed once they are read (or the reading stops)."""
        try:
            remaining = self.size
            offset = 0
            while remaining > 0:
                chunk = os.pread(self.fd, min(_CHUNK_BYTES, remaining), offset)
                if not chunk:
                    break
                offset += len(chunk)
                remaining -= len(chunk)
                yield chunk
        finally:
            os.close(self.fd)


def _protected_inodes(database_url: str) -> set[tuple[int, int]]:
    database = sqlite_file(database_url)
    if database is None:
        return set()
    found = set()
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            info = os.stat(database + suffix)
        except OSError:
            continue
        found.add((info.st_dev, info.st_ino))
    return found


def _inside(path: bytes, folder: bytes) -> bool:
    return path == folder or path.startswith(folder.rstrip(b"/") + b"/")


def _real_path(fd: int, fallback: bytes) -> bytes:
    try:
        return os.fsencode(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:  # no /proc: resolve the path instead (a race is possible there)
        return os.path.realpath(fallback)


def open_served_file(
    path: bytes,
    *,
    storage_root: Path,
    data_dir: Path,
    database_url: str,
    inside_ingest_root: Callable[[bytes], bool] | None,
) -> ServedFile:
    """Open ``path`` for serving if the rules of the module docstring allow it.

    ``inside_ingest_root`` answers for an original (None: only the storage root is allowed).
    Raises FileRefused.
    """
    if not path:
        raise FileRefused("no file")
    protected = _protected_inodes(database_url)
    try:
        before = os.lstat(path)
    except OSError:
        raise FileRefused("gone") from None
    if not stat.S_ISREG(before.st_mode) or (before.st_dev, before.st_ino) in protected:
        raise FileRefused("not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise FileRefused("cannot open") from None
    info = os.fstat(fd)
    if (info.st_dev, info.st_ino) in protected:
        _NEVER_CLOSED.append(fd)
        raise FileRefused("swapped for the database")
    try:
        if (info.st_dev, info.st_ino) != (before.st_dev, before.st_ino):
            raise FileRefused("swapped while opening")
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused("not a regular file")
        real = _real_path(fd, path)
        storage = os.fsencode(os.path.realpath(storage_root))
        if not _inside(real, storage):
            data = os.fsencode(os.path.realpath(data_dir))
            allowed = (
                inside_ingest_root is not None
                and not _inside(real, data)
                and inside_ingest_root(real)
            )
            if not allowed:
                raise FileRefused("outside the ingest roots and the storage root")
        if not looks_like_image(os.pread(fd, 16, 0)):
            raise FileRefused("not an image")
    except BaseException:
        os.close(fd)
        raise
    return ServedFile(fd, info.st_size, os.fsdecode(os.path.basename(path)))
