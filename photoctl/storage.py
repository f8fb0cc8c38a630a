"""The file layout under the storage root: where a thumbnail, preview or upload lives.

Every stored file is named by the SHA-256 of what it derives from and fanned out by the first
two hex digits (``thumbs/ab/ab12...ef.jpg``), so no directory grows huge and the same content
always lands at the same key. Files appear at their key whole or not at all: they are written
to a temporary file in the same directory and moved (or linked) into place, so a crash never
leaves a half-written file that looks done.

This module is the one place that knows that layout. Keys are relative, POSIX-style paths
(what the database stores; ``Settings.storage_file`` resolves them); the object-storage issue
will put another backend behind the same names.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

THUMBS = "thumbs"
PREVIEWS = "previews"
UPLOADS = "uploads"


def key(kind: str, content_hash: str, suffix: str = ".jpg") -> str:
    """The relative key of a ``kind`` file for a content hash: ``<kind>/ab/<hash><suffix>``."""
    return f"{kind}/{content_hash[:2]}/{content_hash}{suffix}"


def path(root: Path, stored_key: str) -> Path:
    """Where a key lives under the storage root on this machine."""
    return root / stored_key


def relative_key(root: Path, stored: Path) -> str:
    """The key of a file under the storage root (what the database stores)."""
    return stored.relative_to(root).as_posix()


@contextlib.contextmanager
def atomic_write(destination: Path) -> Iterator[BinaryIO]:
    """A stream whose content replaces ``destination`` only when the block ends without error.

    The temporary file sits beside the destination so the final ``os.replace`` is a rename on
    one file system; on any error it is removed and the destination is left as it was. OSError
    from creating the directory or the file propagates (callers map a full disk).
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def staging(root: Path, kind: str) -> Iterator[tuple[BinaryIO, Path]]:
    """A temporary file under ``<root>/<kind>`` for content whose key is known only once written.

    Yields (stream, temporary path); the temporary file is removed when the block ends, whether
    or not ``publish_once`` linked it into place.
    """
    directory = root / kind
    directory.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream, Path(temporary)
    finally:
        Path(temporary).unlink(missing_ok=True)


def publish_once(temporary: Path, destination: Path) -> bool:
    """Put a staged file at its key; False when that content is stored there already.

    A hard link, not a rename: it fails if the file exists, so only the caller that created
    the file knows it did (and may remove it again).
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(temporary, destination)
    except FileExistsError:
        return False
    return True
