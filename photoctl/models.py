"""Tables: photos and the files they came from, jobs (the queue), and the worker registry.

Times are stored as UTC epoch seconds (floats): they compare the same way in SQLite and
PostgreSQL, need no timezone handling, and are cheap to index. Source paths are stored as bytes
because file names on Linux need not be valid UTF-8; ``display_path`` makes them printable.
"""

from __future__ import annotations

import enum
from typing import ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    # Every model here maps one Table (no joined or polymorphic mapping), so the query modules
    # may use ``Model.__table__`` as the Table it is; DeclarativeBase declares a FromClause.
    __table__: ClassVar[Table]


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RETRYING = "retrying"  # failed transiently, waits for run_at
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class JobKind(enum.StrEnum):
    PROCESS_PHOTO = "process_photo"
    READ_BIBS = "read_bibs"  # `bibs scan`: bibs of a photo processed before its event read them
    NOOP = "noop"  # does nothing; measures the queue itself


# Migration 0007 creates the default event first, in an empty table, so it has id 1 on both
# databases; photos and users inserted without an event (uploads, operator-made users, older
# code paths) belong to it through the column default. No code deletes an event row.
DEFAULT_EVENT_ID = 1
DEFAULT_EVENT_SLUG = "default"


class AuditAction(enum.StrEnum):
    CONSENT = "consent"
    ENROLL = "enroll"
    MATCHES = "matches"
    NOT_ME = "not_me"
    ERASE = "erase"
    PURGE = "purge"
    EVENT_CREATE = "event_create"
    EVENT_CLOSE = "event_close"
    EVENT_EDIT = "event_edit"
    BIB_SEARCHES = "bib_searches"  # a day's count of bib searches, never the numbers searched


class Event(Base):
    """An event: its photos, its participants, the consent they gave and how long faces stay.

    ``closed_at`` ends enrollment (photos are still taken in); ``purged_at`` records that the
    event's face data (faces, embeddings, selfies, matches, its Rekognition collection) is gone.
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(Text)
    date: Mapped[str | None] = mapped_column(String(10))  # ISO date
    retention_days: Mapped[int] = mapped_column(Integer)
    consent_text: Mapped[str] = mapped_column(Text)
    consent_version: Mapped[str] = mapped_column(String(64))  # sha256 hex of consent_text
    access_code_hash: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    closed_at: Mapped[float | None] = mapped_column(Float)
    purged_at: Mapped[float | None] = mapped_column(Float)
    # Whether the event page takes enrollments (migration 0011): the default event's is off
    # until an organizer turns it on, since it would match a stranger's face against every
    # photo ingested without --event.
    self_enrollment: Mapped[bool] = mapped_column(Boolean, server_default=true())
    # Bib numbers (migration 0012): read from the event's photos when on. Without a start list,
    # ``bib_range`` ("1-9999") and ``bib_pattern`` (a regular expression for bibs with letters)
    # bound what counts as a bib. ``bib_search``: who may look photos up by bib on the event
    # page: public (anyone), code (with the event's access code) or off.
    bibs: Mapped[bool] = mapped_column(Boolean, server_default=false())
    bib_range: Mapped[str | None] = mapped_column(String(32))
    bib_pattern: Mapped[str | None] = mapped_column(Text)
    bib_search: Mapped[str] = mapped_column(String(8), server_default="public")

    __table_args__ = {"sqlite_autoincrement": True}


class Photo(Base):
    """One distinct image (by content hash). Its processing state is its job's state."""

    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    source_path: Mapped[bytes] = mapped_column(LargeBinary)
    filename: Mapped[str] = mapped_column(Text)
    album: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    taken_at: Mapped[str | None] = mapped_column(String(32))
    camera: Mapped[str | None] = mapped_column(Text)
    # Relative to the storage root (settings.storage_file resolves them); rows written before
    # migration 0005 may hold absolute paths, which resolve to themselves.
    thumb_path: Mapped[str | None] = mapped_column(Text)
    preview_path: Mapped[str | None] = mapped_column(Text)
    ingested_at: Mapped[float] = mapped_column(Float)
    processed_at: Mapped[float | None] = mapped_column(Float)
    # Checkpoint: the engine whose faces for this photo are stored. A rerun of the job (retry,
    # rescue after a crash) finds it set and does not detect or index the photo again.
    faces_engine: Mapped[str | None] = mapped_column(String(32))
    # Why the face service refused this photo (it still has thumbnails and is listed); None
    # when its faces were found, or no engine looked at it.
    faces_error: Mapped[str | None] = mapped_column(Text)
    uploaded_by: Mapped[int | None] = mapped_column(Integer)  # user id, for uploads
    # Checkpoint of the bib step: when this photo's bibs were read (None: not yet, or its event
    # reads none), and how many digit-like texts it held that no rule accepted as a bib.
    bibs_read_at: Mapped[float | None] = mapped_column(Float)
    bib_texts_unread: Mapped[int | None] = mapped_column(Integer)
    # The same content ingested for a second event stays a photo of the first one.
    event_id: Mapped[int] = mapped_column(
        ForeignKey("events.id"), index=True, server_default=str(DEFAULT_EVENT_ID)
    )

    # AUTOINCREMENT on SQLite: an id is never handed out twice, even after the newest row is
    # deleted, so nothing keyed by an id (cache entries, a client's bookmark) can point at a
    # different row later. PostgreSQL sequences never go back anyway.
    __table_args__ = (
        # Only the photos the face service refused: `stats` counts them (migration 0013).
        Index(
            "ix_photos_faces_error",
            "faces_error",
            postgresql_where=text("faces_error IS NOT NULL"),
            sqlite_where=text("faces_error IS NOT NULL"),
        ),
        {"sqlite_autoincrement": True},
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the token
    password_hash: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    enrolled_at: Mapped[float | None] = mapped_column(Float)
    # A user is matched only against the photos of their event. Participants (who enrolled
    # themselves on the event page) have a gallery token; operator-made users have none.
    event_id: Mapped[int] = mapped_column(
        ForeignKey("events.id"), index=True, server_default=str(DEFAULT_EVENT_ID)
    )
    gallery_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    consent_version: Mapped[str | None] = mapped_column(String(64))
    consented_at: Mapped[float | None] = mapped_column(Float)
    # Face data erased (by the participant or by the event's purge); the row stays so that the
    # gallery link can say so.
    erased_at: Mapped[float | None] = mapped_column(Float)
    erased_by: Mapped[str | None] = mapped_column(String(16))  # participant | purge

    # A deleted user's id must never come back: cached lists are keyed and tagged by user id.
    __table_args__ = {"sqlite_autoincrement": True}


class LoginToken(Base):
    """A token handed out by /api/login (the API token made by the CLI lives on users)."""

    __tablename__ = "login_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[float] = mapped_column(Float)


class Face(Base):
    """A face found in a photo, with what its engine needs to match it."""

    __tablename__ = "faces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"))
    engine: Mapped[str] = mapped_column(String(32))
    face_index: Mapped[int] = mapped_column(Integer)  # position in the photo, for idempotency
    # Box as fractions of the image's width and height, whatever size the engine looked at.
    box_left: Mapped[float] = mapped_column(Float)
    box_top: Mapped[float] = mapped_column(Float)
    box_width: Mapped[float] = mapped_column(Float)
    box_height: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)  # local engine
    external_id: Mapped[str | None] = mapped_column(String(64), index=True)  # Rekognition FaceId

    __table_args__ = (
        UniqueConstraint("photo_id", "engine", "face_index"),
        {"sqlite_autoincrement": True},
    )


class SelfieFace(Base):
    """The enrolled face of a user (biometric data: deleted with the user)."""

    __tablename__ = "selfie_faces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    engine: Mapped[str] = mapped_column(String(32))
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    external_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)


class Match(Base):
    """A user appears in a photo; stored once per (photo, user), with the best similarity."""

    __tablename__ = "matches"

    photo_id: Mapped[int] = mapped_column(
        ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    face_id: Mapped[int] = mapped_column(ForeignKey("faces.id", ondelete="CASCADE"))
    similarity: Mapped[float] = mapped_column(Float)  # percent, 100 = identical
    matched_at: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16), server_default="photo")  # photo | selfie
    # When the match became visible to the user (the photo's job committed, caches dropped).
    findable_at: Mapped[float | None] = mapped_column(Float, index=True)


class Rejection(Base):
    """ "Not me": the user said they are not in this photo; matching never pairs them again."""

    __tablename__ = "rejections"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    photo_id: Mapped[int] = mapped_column(
        ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[float] = mapped_column(Float)


class StartListEntry(Base):
    """A runner on an event's start list: the bibs that exist (personal data: the name is deleted
    with the event's face data at its purge, never shown on a page, never logged)."""

    __tablename__ = "start_list"

    event_id: Mapped[int] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), primary_key=True
    )
    bib: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)


class BibRead(Base):
    """A bib number read in a photo, with its box (fractions of the image) and confidence."""

    __tablename__ = "bib_reads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    bib: Mapped[str] = mapped_column(String(16))
    engine: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[float] = mapped_column(Float)  # 0..1
    box_left: Mapped[float] = mapped_column(Float)
    box_top: Mapped[float] = mapped_column(Float)
    box_width: Mapped[float] = mapped_column(Float)
    box_height: Mapped[float] = mapped_column(Float)
    read_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        UniqueConstraint("photo_id", "bib"),  # a rerun of the step stores each bib once
        Index("ix_bib_reads_event_bib", "event_id", "bib"),
        {"sqlite_autoincrement": True},
    )


class ParticipantBib(Base):
    """A participant's own bib: their gallery also holds the photos where it was read."""

    __tablename__ = "participant_bibs"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    bib: Mapped[str] = mapped_column(String(16), primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_participant_bibs_event_bib", "event_id", "bib"),)


class AuditEntry(Base):
    """The audit log: append-only (no code updates or deletes a row), never holding embeddings,
    tokens, images or addresses. ``participant_id`` is no foreign key: entries outlive users."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    participant_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text, server_default="{}")  # small JSON object

    __table_args__ = {"sqlite_autoincrement": True}


class Meta(Base):
    """Facts about the database itself, such as its identity (``database_id``), one row each."""

    __tablename__ = "photoctl_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RateLimiter(Base):
    """Shared state of a call limiter (one row per limited service), for every process."""

    __tablename__ = "rate_limiters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_slot_at: Mapped[float] = mapped_column(Float)  # earliest time the next call may start
    rate: Mapped[float] = mapped_column(Float)  # calls per second now allowed (adapts)
    slowed_at: Mapped[float] = mapped_column(Float)  # last reaction to a throttle


class LimiterSlot(Base):
    """One of max_concurrency places for a call in flight; leased so a crash frees it."""

    __tablename__ = "limiter_slots"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[float] = mapped_column(Float)


class ServiceCall(Base):
    """Calls to a limited service (Rekognition) per UTC day, event and operation, by answer.

    Counted by the call limiter as each call ends: accepted calls are the billed ones; throttled
    and failed ones show how hard the quota and the service pushed back.
    """

    __tablename__ = "service_calls"

    service: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    # The event's slug; "" for calls counted before migration 0009 (of no one event).
    event: Mapped[str] = mapped_column(String(64), primary_key=True, server_default="")
    operation: Mapped[str] = mapped_column(String(64), primary_key=True)  # IndexFaces, ...
    accepted: Mapped[int] = mapped_column(Integer)
    throttled: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)


class SourceFile(Base):
    """A file seen by ingest; lets a re-run skip it by path, size and mtime without reading it."""

    __tablename__ = "source_files"

    path: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)


class IngestRoot(Base):
    """A folder given to `photoctl ingest`, resolved: serve hands out originals only from these
    (and the storage root), so a source file later swapped for a link cannot expose others."""

    __tablename__ = "ingest_roots"

    path: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)  # realpath, no trailing /
    added_at: Mapped[float] = mapped_column(Float)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), default=JobKind.PROCESS_PHOTO)
    photo_id: Mapped[int | None] = mapped_column(
        ForeignKey("photos.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_at: Mapped[float] = mapped_column(Float)
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        # The claim statement scans waiting jobs in run_at order; stats count by state.
        Index("ix_jobs_state_run_at", "state", "run_at"),
        Index("ix_jobs_state_finished_at", "state", "finished_at"),
        # jobs list (newest first, by state or not), stats' counts and oldest waiting job
        # (migration 0013).
        Index("ix_jobs_created_at", "created_at"),
        Index("ix_jobs_state_created_at", "state", "created_at"),
        Index("ix_jobs_kind_state", "kind", "state"),
    )


class Worker(Base):
    """One worker process on some machine; alive while its heartbeat is recent."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)
    stopped_at: Mapped[float | None] = mapped_column(Float)
    jobs_done: Mapped[int] = mapped_column(Integer, default=0)
    jobs_failed: Mapped[int] = mapped_column(Integer, default=0)


def display_path(raw: bytes | str) -> str:
    """A file path as a printable string: undecodable bytes and control characters escaped."""
    if isinstance(raw, bytes):
        text = raw.decode("utf-8", "backslashreplace")
    else:
        text = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if any(ch < " " or ch == "\x7f" for ch in text):
        text = text.encode("unicode_escape").decode("ascii")
    return text
