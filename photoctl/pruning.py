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
from dataclasses import dataclass

from sqlalchemy import Engine

from photoctl import catalog, db, queue, storage
from photoctl.config import Settings

log = logging.getLogger(__name__)


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
        doomed = catalog.failed_uploads(conn, cutoff) if include_failed else []
        count = queue.prune_jobs(conn, older_than_seconds, include_failed=include_failed, now=now)
        catalog.delete_photos(conn, [upload.photo_id for upload in doomed])  # faces, files cascade
    store = storage.open_store(settings)
    for upload in doomed:
        stored_key = store.key_of(upload.source_path)
        if stored_key and stored_key.startswith(f"{storage.UPLOADS}/"):  # photoctl's own copy
            store.delete(stored_key)
        for derived in (upload.thumb_path, upload.preview_path):
            if derived:
                store.delete(derived)
    if doomed:
        log.info("deleted %d failed uploads and their stored files", len(doomed))
    return PruneReport(jobs=count, uploads_deleted=len(doomed))
