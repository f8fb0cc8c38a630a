"""The photo catalog: which files have been seen, which photos exist, what processing found.

Queries about photos and source files live here, as queue.py holds those about jobs, so that
the services (ingest, pipeline, stats) never build SQL themselves.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, select, update

from photoctl.db import dialect_insert, in_chunks, insert_ignoring_conflicts
from photoctl.faces import vector_cache
from photoctl.models import DEFAULT_EVENT_ID, IngestRoot, Job, JobKind, JobState, Photo, SourceFile
from photoctl.models import display_path as display_path

photos = Photo.__table__
source_files = SourceFile.__table__
ingest_roots = IngestRoot.__table__
jobs = Job.__table__


@dataclass(frozen=True)
class NewFile:
    path: bytes
    size_bytes: int
    mtime_ns: int
    content_hash: str
    display_name: str | None = None  # the uploader's file name; None: the path's last part
    # Where the photo's original is kept when not at ``path``: its copy in the storage bucket.
    stored_at: bytes | None = None


@dataclass(frozen=True)
class Registration:
    new_photo_ids: list[int]
    duplicate_paths: list[bytes]


@dataclass(frozen=True)
class PhotoRecord:
    id: int
    content_hash: str
    source_path: bytes
    filename: str
    album: str | None


@dataclass(frozen=True)
class ProcessedPhoto:
    photo_id: int
    width: int
    height: int
    taken_at: str | None
    camera: str | None
    thumb_path: str
    preview_path: str
    faces_error: str | None = None  # the face service refused the photo: why


def known_files(conn: Connection, paths: Sequence[bytes]) -> dict[bytes, tuple[int, int]]:
    """For the paths already seen by ingest: (size_bytes, mtime_ns) when they were registered."""
    known: dict[bytes, tuple[int, int]] = {}
    for chunk in in_chunks(paths):
        rows = conn.execute(
            select(source_files.c.path, source_files.c.size_bytes, source_files.c.mtime_ns).where(
                source_files.c.path.in_(chunk)
            )
        )
        known.update({bytes(path): (size, mtime) for path, size, mtime in rows})
    return known


def existing_hashes(conn: Connection, hashes: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in in_chunks(hashes):
        found.update(
            conn.execute(
                select(photos.c.content_hash).where(photos.c.content_hash.in_(chunk))
            ).scalars()
        )
    return found


def register_files(
    conn: Connection,
    files: Sequence[NewFile],
    album: str | None,
    now: float | None = None,
    *,
    uploaded_by: int | None = None,
    event_id: int = DEFAULT_EVENT_ID,
) -> Registration:
    """Create a photo for each new content hash and remember every file's path, size and mtime.

    Concurrent ingests of the same content cannot both create a photo: the insert ignores
    hash conflicts, and only the rows it really inserted count as new.
    """
    now = time.time() if now is None else now
    first_by_hash: dict[str, NewFile] = {}
    for file in files:
        first_by_hash.setdefault(file.content_hash, file)
    new_ids: dict[str, int] = {}
    rows = [
        {
            "content_hash": digest,
            "source_path": file.stored_at or file.path,
            "filename": file.display_name or display_path(file.path.rsplit(b"/", 1)[-1]),
            "album": album,
            "size_bytes": file.size_bytes,
            "ingested_at": now,
            "uploaded_by": uploaded_by,
            "event_id": event_id,
        }
        for digest, file in first_by_hash.items()
    ]
    for chunk in in_chunks(rows):
        inserted = conn.execute(_statement(conn, "new_photos"), list(chunk))
        new_ids.update({digest: photo_id for photo_id, digest in inserted})
    photo_ids = dict(new_ids)
    for hashes in in_chunks([d for d in first_by_hash if d not in new_ids]):
        for photo_id, digest, source_path in conn.execute(
            select(photos.c.id, photos.c.content_hash, photos.c.source_path).where(
                photos.c.content_hash.in_(hashes)
            )
        ):
            photo_ids[digest] = photo_id
            found = first_by_hash[digest].path
            if not bytes(source_path).startswith(b"/") and found.startswith(b"/"):
                # Ingested before paths were stored absolute (relative to some old working
                # directory): seeing the content again at an absolute path repairs the photo.
                conn.execute(
                    photos.update().where(photos.c.id == photo_id).values(source_path=found)
                )
    _remember_files(
        conn,
        [
            {
                "path": f.path,
                "size_bytes": f.size_bytes,
                "mtime_ns": f.mtime_ns,
                "photo_id": photo_ids[f.content_hash],
            }
            for f in files
        ],
    )
    duplicates = [
        f.path
        for f in files
        if f.content_hash not in new_ids or first_by_hash[f.content_hash] is not f
    ]
    return Registration(new_photo_ids=list(new_ids.values()), duplicate_paths=duplicates)


def _remember_files(conn: Connection, rows: list[dict]) -> None:
    if not rows:
        return
    statement = _statement(conn, "remember_files")
    for chunk in in_chunks(rows):
        conn.execute(statement, list(chunk))


# The inserts of every ingest and upload, built once per dialect: building them cost an upload
# more than running them.
_STATEMENTS: dict[tuple[str, str], Any] = {}


def _statement(conn: Connection, name: str) -> Any:
    key = (conn.dialect.name, name)
    if key not in _STATEMENTS:
        if name == "new_photos":
            _STATEMENTS[key] = insert_ignoring_conflicts(conn, photos).returning(
                photos.c.id, photos.c.content_hash
            )
        else:
            statement = dialect_insert(conn, source_files)
            _STATEMENTS[key] = statement.on_conflict_do_update(
                index_elements=[source_files.c.path],
                set_={
                    "size_bytes": statement.excluded.size_bytes,
                    "mtime_ns": statement.excluded.mtime_ns,
                    "photo_id": statement.excluded.photo_id,
                },
            )
    return _STATEMENTS[key]


def register_roots(conn: Connection, paths: Iterable[bytes], now: float | None = None) -> None:
    """Remember resolved folders given to ingest (see ``models.IngestRoot``)."""
    now = time.time() if now is None else now
    rows = [{"path": path, "added_at": now} for path in sorted(set(paths))]
    if rows:
        conn.execute(insert_ignoring_conflicts(conn, ingest_roots), rows)


def inside_ingest_root(conn: Connection, real_path: bytes) -> bool:
    """True if a resolved absolute path lies below a registered ingest root."""
    ancestors = []
    parent = real_path
    while True:
        parent = parent.rsplit(b"/", 1)[0]
        ancestors.append(parent or b"/")
        if not parent:
            break
    found = conn.execute(
        select(ingest_roots.c.path).where(ingest_roots.c.path.in_(ancestors)).limit(1)
    ).first()
    return found is not None


# Built once: every photo job runs these (see face_store.py on statements built once).
_PHOTO = select(
    photos.c.id, photos.c.content_hash, photos.c.source_path, photos.c.filename, photos.c.album
).where(photos.c.id == bindparam("photo"))
_SOURCE_FILE_STATE = select(
    source_files.c.size_bytes, source_files.c.mtime_ns, source_files.c.photo_id
).where(source_files.c.path == bindparam("path"))


def get_photo(conn: Connection, photo_id: int) -> PhotoRecord | None:
    row = conn.execute(_PHOTO, {"photo": photo_id}).first()
    if row is None:
        return None
    return PhotoRecord(row.id, row.content_hash, bytes(row.source_path), row.filename, row.album)


def source_file_state(conn: Connection, path: bytes) -> tuple[int, int, int] | None:
    """(size_bytes, mtime_ns, photo_id) of a file as ingest last registered it, None if never."""
    row = conn.execute(_SOURCE_FILE_STATE, {"path": path}).first()
    return None if row is None else (row.size_bytes, row.mtime_ns, row.photo_id)


@dataclass(frozen=True)
class ContentChange:
    """What became of a photo whose file changed after ingest (see record_changed_content)."""

    photo: PhotoRecord | None  # the photo to process now; None: nothing of it is left to process
    content_changed: bool  # the photo now stands for new content: its old faces are stale
    duplicate_of: int | None = None  # the file now holds the content of this other photo


def record_changed_content(
    conn: Connection, photo: PhotoRecord, size_bytes: int, mtime_ns: int, content_hash: str
) -> ContentChange:
    """Record what a photo's file holds now that its size or mtime differ from ingest's.

    A photo is its file's content, named by hash, so:

    - same hash (touched, copied over with the same bytes): only size and mtime are refreshed;
    - a hash no photo has: the photo takes the new content (hash and size), the job goes on and
      processes what is on disk now;
    - the hash of another photo: the file is now a duplicate of that one, and its source-file
      row points there. This photo goes on from another file that still holds its content if
      ingest saw one; otherwise its content is nowhere any more, and the caller fails the job
      with a reason instead of making thumbnails of a different photo under its name.
    """
    path = photo.source_path
    file_row = source_files.c.path == path
    if content_hash == photo.content_hash:
        conn.execute(
            update(source_files).where(file_row).values(size_bytes=size_bytes, mtime_ns=mtime_ns)
        )
        return ContentChange(photo, content_changed=False)
    other = conn.execute(select(photos.c.id).where(photos.c.content_hash == content_hash)).scalar()
    if other is None:
        conn.execute(
            update(photos)
            .where(photos.c.id == photo.id)
            .values(content_hash=content_hash, size_bytes=size_bytes)
        )
        conn.execute(
            update(source_files).where(file_row).values(size_bytes=size_bytes, mtime_ns=mtime_ns)
        )
        changed = PhotoRecord(photo.id, content_hash, path, photo.filename, photo.album)
        return ContentChange(changed, content_changed=True)
    conn.execute(
        update(source_files)
        .where(file_row)
        .values(size_bytes=size_bytes, mtime_ns=mtime_ns, photo_id=other)
    )
    remaining = conn.execute(
        select(source_files.c.path)
        .where(source_files.c.photo_id == photo.id)
        .order_by(source_files.c.path)
        .limit(1)
    ).scalar()
    if remaining is None:
        return ContentChange(None, content_changed=False, duplicate_of=other)
    remaining = bytes(remaining)
    filename = display_path(remaining.rsplit(b"/", 1)[-1])
    conn.execute(
        update(photos)
        .where(photos.c.id == photo.id)
        .values(source_path=remaining, filename=filename)
    )
    moved = PhotoRecord(photo.id, photo.content_hash, remaining, filename, photo.album)
    return ContentChange(moved, content_changed=False, duplicate_of=other)


def record_processed(conn: Connection, result: ProcessedPhoto, now: float | None = None) -> None:
    now = time.time() if now is None else now
    conn.execute(
        update(photos)
        .where(photos.c.id == result.photo_id)
        .values(
            width=result.width,
            height=result.height,
            taken_at=result.taken_at,
            camera=result.camera,
            thumb_path=result.thumb_path,
            preview_path=result.preview_path,
            faces_error=result.faces_error,
            processed_at=now,
        )
    )


def photo_counts(
    conn: Connection, job_counts: dict[tuple[str, str], int] | None = None
) -> dict[str, int]:
    """Photos by the state of their processing job (pending = queued, retrying or running).

    ``job_counts`` is queue.count_by_kind_and_state when the caller has read it already.
    """
    total = conn.execute(select(func.count()).select_from(photos)).scalar_one()
    # A photo has one process_photo job (ingest enqueues one for each new photo; retries and
    # changed files reuse it), so its jobs are counted, on ix_jobs_kind_state: a COUNT(DISTINCT)
    # sorted every job's photo id (0.4-0.6 s at a million jobs).
    if job_counts is None:
        rows = conn.execute(
            select(jobs.c.state, func.count())
            .where(jobs.c.kind == JobKind.PROCESS_PHOTO)
            .group_by(jobs.c.state)
        ).all()
        by_state: dict[str, int] = dict(rows)
    else:
        by_state = {
            state: count
            for (kind, state), count in job_counts.items()
            if kind == JobKind.PROCESS_PHOTO
        }
    done = by_state.get("done", 0)
    failed = by_state.get("failed", 0)
    return {
        "total": total,
        "done": done,
        "failed": failed,
        "pending": max(0, total - done - failed),
    }


def faces_failed_count(conn: Connection) -> int:
    """Photos processed without faces because the face service refused them (faces_error;
    the partial index ix_photos_faces_error holds those photos only)."""
    return conn.execute(
        select(func.count()).select_from(photos).where(photos.c.faces_error.is_not(None))
    ).scalar_one()


def photo_id_by_hash(conn: Connection, content_hash: str) -> int:
    return conn.execute(
        select(photos.c.id).where(photos.c.content_hash == content_hash)
    ).scalar_one()


@dataclass(frozen=True)
class StoredUpload:
    photo_id: int
    source_path: bytes
    thumb_path: str | None
    preview_path: str | None


def failed_uploads(conn: Connection, finished_before: float) -> list[StoredUpload]:
    """Uploads never processed whose job failed before the cutoff (and no other job wants)."""
    failed = and_(
        jobs.c.photo_id == photos.c.id,
        jobs.c.state == JobState.FAILED,
        jobs.c.finished_at < finished_before,
    )
    wanted = and_(jobs.c.photo_id == photos.c.id, jobs.c.state != JobState.FAILED)
    rows = conn.execute(
        select(photos.c.id, photos.c.source_path, photos.c.thumb_path, photos.c.preview_path)
        .where(photos.c.uploaded_by.is_not(None), photos.c.processed_at.is_(None))
        .where(exists().where(failed), ~exists().where(wanted))
    )
    return [StoredUpload(row[0], bytes(row[1]), row[2], row[3]) for row in rows]


def delete_photos(conn: Connection, photo_ids: Sequence[int]) -> None:
    """Delete photos; their faces, matches and source files go with them (ON DELETE CASCADE)."""
    vector_cache.bump_photos_events(conn, photo_ids)
    for chunk in in_chunks(photo_ids):
        conn.execute(delete(photos).where(photos.c.id.in_(chunk)))
