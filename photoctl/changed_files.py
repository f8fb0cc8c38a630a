"""A photo's file may have changed since ingest: the bytes a job processes are the file's now.

Ingest hashed each file once; by the time a worker runs the job, the file may hold other bytes
(an edited export, a re-copied card). A worker reads the file once (never blocking on a FIFO,
never through a final symlink), compares its size and mtime with what ingest registered, and
only when they differ hashes it again and records the new content, forgetting the faces found
in the old one (catalog.record_changed_content says what happens to duplicates). Apart from the
worker loop (worker.py), which only decides what to do with the job when this raises.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Protocol, TypeVar

from sqlalchemy import Engine

from photoctl import catalog, db, face_store, storage
from photoctl.config import Settings
from photoctl.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")


class RunDatabase(Protocol):
    """Runs a database action, waiting out an outage (a worker's ``_db``)."""

    def __call__(self, action: Callable[[], T]) -> T: ...


def current_source(
    engine: Engine,
    settings: Settings,
    photo: catalog.PhotoRecord,
    run_db: RunDatabase,
    worker_name: str,
) -> tuple[catalog.PhotoRecord, bytes]:
    """The photo and the bytes to process: what its file holds now, not what ingest hashed.

    The file is read once (never blocking on a FIFO, never through a final symlink) and its
    size and mtime compared with those ingest registered; only when they differ is it hashed
    again, and a new content recorded (catalog.record_changed_content says how).
    """
    for _ in range(3):  # a photo moves to another of its files at most a few times
        name = catalog.display_path(photo.source_path)
        # An original in an object store is content-addressed (it cannot change) or was
        # registered from a bucket: it is read the same way, by ranged/streamed GET.
        source = storage.read_original(
            settings, photo.source_path, max_bytes=settings.ingest.max_bytes, display_name=name
        )

        def known(path: bytes = photo.source_path) -> tuple[int, int, int] | None:
            with db.read(engine) as conn:
                return catalog.source_file_state(conn, path)

        # A re-ingest may have registered the new content already (the file's row then
        # names another photo): that is a change too.
        seen = run_db(known)
        if seen is None or seen == (source.size_bytes, source.mtime_ns, photo.id):
            return photo, source.data
        digest = hashlib.sha256(source.data).hexdigest()

        def record(
            current: catalog.PhotoRecord = photo,
            digest: str = digest,
            size: int = source.size_bytes,
            mtime_ns: int = source.mtime_ns,
        ) -> catalog.ContentChange:
            with db.write(engine) as conn:
                change = catalog.record_changed_content(conn, current, size, mtime_ns, digest)
                if change.content_changed:
                    face_store.forget_photo_faces(conn, current.id)
                return change

        change = run_db(record)
        if change.photo is None:
            raise PermanentError(
                f"{name}: content changed after ingest and is now the same as photo "
                f"{change.duplicate_of}; the content ingested as photo {photo.id} is no "
                "longer on disk"
            )
        if change.content_changed:
            log.info(
                "[%s] %s changed after ingest: photo %d now has content %s",
                worker_name,
                name,
                photo.id,
                digest[:12],
            )
        if change.photo.source_path == photo.source_path:
            return change.photo, source.data
        log.info(
            "[%s] %s now holds photo %d's content; photo %d continues from %s",
            worker_name,
            name,
            change.duplicate_of,
            photo.id,
            change.photo.filename,
        )
        photo = change.photo
    raise TransientError(f"{catalog.display_path(photo.source_path)}: files keep changing")
