"""Events in the database: the queries, and nothing else.

A query module (see db.py): every function takes the caller's Connection and never commits.
events.py holds the services built on these (create, close, purge); face_step.py and users.py
ask here which event a photo or a user belongs to, which scopes their matching.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, select, update

from photoctl.models import Event as EventModel
from photoctl.models import Photo, User
from photoctl.wording import plural

events_table = EventModel.__table__
photos_table = Photo.__table__
users_table = User.__table__

DAY_SECONDS = 86400.0


def retention_words(retention_days: int, date: str | None) -> str:
    """ "on 2026-07-02, 60 days after the event", or for an event without a date "60 days
    after the event closes to new participants" (Event.retention_ends_at)."""
    days = plural(retention_days, "day")
    if date is None:
        return f"{days} after the event closes to new participants"
    end = datetime.date.fromisoformat(date) + datetime.timedelta(days=retention_days)
    return f"on {end.isoformat()}, {days} after the event"


@dataclass(frozen=True)
class Event:
    id: int
    slug: str
    title: str
    date: str | None
    retention_days: int
    consent_text: str
    consent_version: str
    requires_access_code: bool
    created_at: float
    closed_at: float | None
    purged_at: float | None
    # The organizer's switch for the event page (migration 0011); the default event's is off.
    self_enrollment: bool = True
    # Bib numbers (migration 0012): read from its photos when on; without a start list the range
    # ("1-9999") and pattern bound what counts as a bib; who may search: public, code or off.
    bibs: bool = False
    bib_range: str | None = None
    bib_pattern: str | None = None
    bib_search: str = "public"

    @property
    def takes_enrollments(self) -> bool:
        """Whether the event page enrolls participants now: open, not purged, switched on."""
        return self.self_enrollment and self.closed_at is None and self.purged_at is None

    @property
    def face_data_deleted_on(self) -> str | None:
        """The (UTC) day the event's face data was purged, or None while it is kept."""
        if self.purged_at is None:
            return None
        return datetime.datetime.fromtimestamp(self.purged_at, datetime.UTC).date().isoformat()

    @property
    def retention_ends_at(self) -> float | None:
        """When face data is due for purge: ``retention_days`` after the event's date, or, for
        an event without a date, after it was closed. None: an open event without a date (the
        default event) keeps its face data until it is closed or purged by hand."""
        if self.date is not None:
            day = datetime.date.fromisoformat(self.date)
            start = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)
            return start.timestamp() + self.retention_days * DAY_SECONDS
        if self.closed_at is not None:
            return self.closed_at + self.retention_days * DAY_SECONDS
        return None

    @property
    def purged_by_organizer(self) -> bool:
        """Whether the purge came before the retention ended: an organizer's `events purge
        SLUG`, not `events purge --expired` at the end of the time face data was kept for."""
        if self.purged_at is None:
            return False
        ends = self.retention_ends_at
        return ends is None or self.purged_at < ends

    @property
    def retention_words(self) -> str:
        """When face data is deleted, as the consent text and the event page both say it."""
        return retention_words(self.retention_days, self.date)

    @property
    def state(self) -> str:
        if self.purged_at is not None:
            return "purged"
        return "closed" if self.closed_at is not None else "open"

    def as_json(self) -> dict[str, Any]:
        ends = self.retention_ends_at
        return {
            "id": self.id,
            "slug": self.slug,
            "title": self.title,
            "date": self.date,
            "retention_days": self.retention_days,
            "state": self.state,
            "requires_access_code": self.requires_access_code,
            "self_enrollment": self.self_enrollment,
            "bibs": self.bibs,
            "bib_range": self.bib_range,
            "bib_pattern": self.bib_pattern,
            "bib_search": self.bib_search,
            "consent_version": self.consent_version,
            "created_at": self.created_at,
            "closed_at": self.closed_at,
            "purged_at": self.purged_at,
            "retention_ends_at": ends,
        }


_COLUMNS = (
    events_table.c.id,
    events_table.c.slug,
    events_table.c.title,
    events_table.c.date,
    events_table.c.retention_days,
    events_table.c.consent_text,
    events_table.c.consent_version,
    events_table.c.access_code_hash.is_not(None),
    events_table.c.created_at,
    events_table.c.closed_at,
    events_table.c.purged_at,
    events_table.c.self_enrollment,
    events_table.c.bibs,
    events_table.c.bib_range,
    events_table.c.bib_pattern,
    events_table.c.bib_search,
)


def _event(row: Row[Any] | None) -> Event | None:
    if row is None:
        return None
    return event_from(tuple(row))


# For a query that reads an event beside other columns (participant_store.holder_by_gallery_hash).
EVENT_COLUMNS = _COLUMNS


def event_from(values: tuple[Any, ...]) -> Event:
    """The Event of the values of EVENT_COLUMNS, in that order."""
    fields = list(values)
    fields[7] = bool(fields[7])
    fields[11] = bool(fields[11])
    fields[12] = bool(fields[12])
    return Event(*fields)


def event_by_slug(conn: Connection, slug: str) -> Event | None:
    return _event(conn.execute(select(*_COLUMNS).where(events_table.c.slug == slug)).first())


def event_by_id(conn: Connection, event_id: int) -> Event | None:
    return _event(conn.execute(select(*_COLUMNS).where(events_table.c.id == event_id)).first())


def all_events(conn: Connection) -> list[Event]:
    rows = conn.execute(select(*_COLUMNS).order_by(events_table.c.id))
    return [event for event in map(_event, rows) if event is not None]


def access_code_hash(conn: Connection, event_id: int) -> str | None:
    return conn.execute(
        select(events_table.c.access_code_hash).where(events_table.c.id == event_id)
    ).scalar()


def replace_access_code_hash(conn: Connection, event_id: int, old: str, new: str) -> None:
    """Store ``new`` in place of ``old``; a code changed meanwhile stays as it was changed."""
    conn.execute(
        update(events_table)
        .where(events_table.c.id == event_id, events_table.c.access_code_hash == old)
        .values(access_code_hash=new)
    )


def insert_event(conn: Connection, **values: Any) -> int:
    return conn.execute(
        events_table.insert().values(**values).returning(events_table.c.id)
    ).scalar_one()


def update_event(conn: Connection, event_id: int, **values: Any) -> None:
    conn.execute(update(events_table).where(events_table.c.id == event_id).values(**values))


def set_closed(conn: Connection, event_id: int, now: float) -> bool:
    """Close an open event; False when it was closed already."""
    return (
        conn.execute(
            update(events_table)
            .where(events_table.c.id == event_id, events_table.c.closed_at.is_(None))
            .values(closed_at=now)
        ).rowcount
        > 0
    )


def set_purged(conn: Connection, event_id: int, now: float) -> None:
    """Record the purge; the first purge's time stays (a later one only cleans leftovers)."""
    conn.execute(
        update(events_table)
        .where(events_table.c.id == event_id, events_table.c.purged_at.is_(None))
        .values(purged_at=now)
    )


# Built once: every face write of a job asks. FOR SHARE (PostgreSQL; SQLite's write lock,
# taken at BEGIN IMMEDIATE, already serializes) holds back set_purged's UPDATE until the asking
# transaction ends.
_TAKES_FACE_DATA = (
    select(events_table.c.purged_at)
    .where(events_table.c.id == bindparam("event"))
    .with_for_update(read=True)
)


def takes_face_data(conn: Connection, event_id: int) -> bool:
    """Whether face data of the event may still be stored: false once it is purged.

    Every transaction that stores faces, selfies or matches asks first, in that transaction. A
    purge commits its mark, then deletes the rows: a write that asked before the mark commits
    before it (the purge's deletion comes after and takes its rows too), and one that asks after
    it sees the mark and stores nothing, whatever the worker read when its job started.
    """
    row = conn.execute(_TAKES_FACE_DATA, {"event": event_id}).first()
    return row is not None and row.purged_at is None


# Built once: every photo job asks (see face_store.py on statements built once).
_EVENT_OF_PHOTO = (
    select(*_COLUMNS)
    .select_from(events_table.join(photos_table, photos_table.c.event_id == events_table.c.id))
    .where(photos_table.c.id == bindparam("photo"))
)


def event_of_photo(conn: Connection, photo_id: int) -> Event | None:
    return _event(conn.execute(_EVENT_OF_PHOTO, {"photo": photo_id}).first())


def event_of_user(conn: Connection, user_id: int) -> Event | None:
    return _event(
        conn.execute(
            select(*_COLUMNS)
            .select_from(
                events_table.join(users_table, users_table.c.event_id == events_table.c.id)
            )
            .where(users_table.c.id == user_id)
        ).first()
    )


def counts_by_event(conn: Connection) -> dict[int, tuple[int, int]]:
    """event id -> (photos, participants) for every event that has either."""
    photos: dict[int, int] = dict(
        conn.execute(
            select(photos_table.c.event_id, func.count()).group_by(photos_table.c.event_id)
        ).all()
    )
    participants: dict[int, int] = dict(
        conn.execute(
            select(users_table.c.event_id, func.count())
            .where(users_table.c.gallery_token_hash.is_not(None))
            .group_by(users_table.c.event_id)
        ).all()
    )
    return {
        event_id: (photos.get(event_id, 0), participants.get(event_id, 0))
        for event_id in set(photos) | set(participants)
    }
