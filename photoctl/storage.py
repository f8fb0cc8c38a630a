"""The file layout under the storage root: where a thumbnail, preview or upload lives.

Every stored file is named by the SHA-256 of what it derives from and fanned out by the first
two hex digits (``thumbs/ab/ab12...ef.jpg``), so no directory grows huge and the same content
always lands at the same key. Files appear at their key whole or not at all: they are written
to a temporary file in the same directory and moved (or linked) into place, so a crash never
leaves a half-written file that looks done.

This module is the one place that knows that layout. Keys are relative, POSIX-style paths
(what the database stores). A ``Store`` puts files at keys: ``LocalStore`` under a folder (the
default, ``<data dir>/storage``), object_store.py's ``S3Store`` in a bucket under a prefix, with
the same key names; ``open_store`` picks the one ``storage.root`` names.

Originals live where ingest found them, except on S3 storage, where ``ingest DIR`` also copies
each new one to ``originals/ab/<hash><suffix>``; a photo's ``source_path`` is then that object's
``s3://bucket/key`` URL, which any worker can read (``read_original``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from photoctl.atomic import atomic_write as atomic_write
from photoctl.imaging import SourceFile, read_source
from photoctl.storage_settings import S3_SCHEME

if TYPE_CHECKING:
    from photoctl.config import Settings

THUMBS = "thumbs"
PREVIEWS = "previews"
UPLOADS = "uploads"
ORIGINALS = "originals"


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


class Store(Protocol):
    """Where stored files live; every method takes a key (``thumbs/ab/<hash>.jpg``).

    Errors: OSError from a local disk (callers map a full one), TransientError when an object
    store cannot be reached or answers slowly, PermanentError naming a missing object on reads.
    """

    def writer(self, stored_key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A stream whose content appears at the key, whole, when the block ends cleanly."""
        ...

    def staging(self, kind: str) -> contextlib.AbstractContextManager[tuple[BinaryIO, Path]]:
        """A temporary local file for content whose key is known only once written."""
        ...

    def publish(self, temporary: Path, stored_key: str) -> bool:
        """Put a staged file at its key; False when that content is stored there already."""
        ...

    def read(self, stored_key: str, *, max_bytes: int, display_name: str) -> bytes: ...

    def delete(self, stored_key: str) -> None:
        """Remove the key's file; nothing happens when there is none."""
        ...

    def exists(self, stored_key: str) -> bool: ...

    def stat(self, stored_key: str) -> tuple[int, int]:
        """(size in bytes, modification time in ns) of the key's file."""
        ...

    def location(self, stored_key: str) -> bytes:
        """What a photo's source_path holds for an original stored at the key."""
        ...

    def describe(self, stored_key: str) -> str:
        """The key's place, for messages."""
        ...

    def key_of(self, location: bytes) -> str | None:
        """The key stored at ``location`` (a source_path) when it lies in this store, else None."""
        ...


class LocalStore:
    """Files under a folder of this machine (or one mounted on every machine at one path)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def writer(self, stored_key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return atomic_write(path(self.root, stored_key))

    def staging(self, kind: str) -> contextlib.AbstractContextManager[tuple[BinaryIO, Path]]:
        return staging(self.root, kind)

    def publish(self, temporary: Path, stored_key: str) -> bool:
        return publish_once(temporary, path(self.root, stored_key))

    def read(self, stored_key: str, *, max_bytes: int, display_name: str) -> bytes:
        return read_source(
            path(self.root, stored_key), max_bytes=max_bytes, display_name=display_name
        ).data

    def delete(self, stored_key: str) -> None:
        path(self.root, stored_key).unlink(missing_ok=True)

    def exists(self, stored_key: str) -> bool:
        return path(self.root, stored_key).is_file()

    def stat(self, stored_key: str) -> tuple[int, int]:
        info = os.stat(path(self.root, stored_key))
        return info.st_size, info.st_mtime_ns

    def location(self, stored_key: str) -> bytes:
        return os.fsencode(path(self.root, stored_key))

    def describe(self, stored_key: str) -> str:
        return str(path(self.root, stored_key))

    def key_of(self, location: bytes) -> str | None:
        root = os.fsencode(self.root).rstrip(b"/") + b"/"
        return os.fsdecode(location[len(root) :]) if location.startswith(root) else None


def open_store(settings: Settings) -> Store:
    """The store ``storage.root`` names (one S3 client per process and settings)."""
    if settings.storage.is_s3:
        from photoctl import object_store  # boto3 is imported only where S3 is used

        return object_store.store_for(settings.storage)
    return LocalStore(settings.storage_root)


def is_object_url(source_path: bytes) -> bool:
    """True for a photo whose original is an object (``s3://bucket/key``), not a local file."""
    return source_path.startswith(S3_SCHEME.encode())


def read_original(
    settings: Settings, source_path: bytes, *, max_bytes: int, display_name: str
) -> SourceFile:
    """A photo's original: a local file (never through a final symlink) or an S3 object."""
    if is_object_url(source_path):
        from photoctl import object_store

        return object_store.read_url(
            settings.storage, source_path.decode(), max_bytes=max_bytes, display_name=display_name
        )
    return read_source(
        source_path, max_bytes=max_bytes, display_name=display_name, follow_symlinks=False
    )
