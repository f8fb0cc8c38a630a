"""`jobs prune`: old finished jobs go, and with --include-failed so do failed uploads' files.

An upload whose job failed (not an image, corrupt, too large) and that was never processed is
nothing but a stored file nobody can see: pruning its failed job also deletes the photo row and
the stored upload (on disk, or the object in the storage bucket), with any thumbnail or preview
an earlier attempt wrote. Rows go first, in one transaction with the jobs; files after the commit,
so a crash in between leaves an unreferenced file, never a row pointing at a deleted one. Only
files photoctl stored are deleted: an original in someone's folder or bucket is never touched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Row, and_, delete, exists, select

from photoctl import db, queue, storage
from photoctl.config import Settings
from photoctl.models import Job, JobState, Photo

log = logging.getLogger(__name__)

photos = Photo.__table__
jobs = Job.__table__


@dataclass(frozen=True)
class PruneReport:
    jobs: int
    uploads_deleted: int


def prune(
    engine: Engine,
    settings: Settings,
    older_than_seconds: float,
    *,
    include_failed: bool = False,
    now: float | None = None,
) -> PruneReport:
    now = time.time() if now is None else now
    cutoff = now - older_than_seconds
    with db.write(engine) as conn:
        doomed: Sequence[Row[Any, Any, Any, Any]] = []
        if include_failed:
            failed = and_(
                jobs.c.photo_id == photos.c.id,
                jobs.c.state == JobState.FAILED,
                jobs.c.finished_at < cutoff,
            )
            still_wanted = and_(jobs.c.photo_id == photos.c.id, jobs.c.state != JobState.FAILED)
            doomed = conn.execute(
                select(
                    photos.c.id, photos.c.source_path, photos.c.thumb_path, photos.c.preview_path
                )
                .where(photos.c.uploaded_by.is_not(None), photos.c.processed_at.is_(None))
                .where(exists().where(failed), ~exists().where(still_wanted))
            ).all()
        count = queue.prune_jobs(conn, older_than_seconds, include_failed=include_failed, now=now)
        ids = [row.id for row in doomed]
        for chunk in db.in_chunks(ids):
            conn.execute(delete(photos).where(photos.c.id.in_(chunk)))  # faces, files cascade
    store = storage.open_store(settings)
    for row in doomed:
        stored_key = store.key_of(bytes(row.source_path))
        if stored_key and stored_key.startswith(f"{storage.UPLOADS}/"):  # photoctl's own copy
            store.delete(stored_key)
        for derived in (row.thumb_path, row.preview_path):
            if derived:
                store.delete(derived)
    if doomed:
        log.info("deleted %d failed uploads and their stored files", len(doomed))
    return PruneReport(jobs=count, uploads_deleted=len(doomed))
