"""Participants in the database: the queries, and nothing else.

A participant is a row of ``users`` with a gallery token hash: made by the person on the event
page, not by an operator, so matching, gallery queries and deletion work on them unchanged.
A query module (see db.py): functions take the caller's Connection and never commit;
participants.py holds the services.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, bindparam, delete, func, select, update

from photoctl.event_store import EVENT_COLUMNS, Event, event_from, events_table
from photoctl.faces import vector_cache
from photoctl.models import Job, JobState, Photo, User

users_table = User.__table__
photos_table = Photo.__table__
jobs_table = Job.__table__

ERASED_BY_PARTICIPANT = "participant"
ERASED_BY_PURGE = "purge"


@dataclass(frozen=True)
class Participant:
    id: int
    event_id: int
    created_at: float
    erased_at: float | None
    erased_by: str | None  # "participant" | "purge"


_COLUMNS = (
    users_table.c.id,
    users_table.c.event_id,
    users_table.c.created_at,
    users_table.c.erased_at,
    users_table.c.erased_by,
)


def _participant(row: Any) -> Participant | None:
    if row is None:
        return None
    return Participant(row[0], row[1], row[2], row[3], row[4])


def insert_participant(
    conn: Connection,
    *,
    event_id: int,
    name: str,
    token_hash: str,
    gallery_token_hash: str,
    consent_version: str,
    now: float,
) -> int:
    return conn.execute(
        users_table.insert()
        .values(
            name=name,
            is_admin=False,
            token_hash=token_hash,
            created_at=now,
            event_id=event_id,
            gallery_token_hash=gallery_token_hash,
            consent_version=consent_version,
            consented_at=now,
        )
        .returning(users_table.c.id)
    ).scalar_one()


def delete_participant(conn: Connection, participant_id: int) -> None:
    """Remove a participant whose enrollment failed (nothing of them is kept)."""
    # Its selfie, if one was stored, goes by the cascade: every process drops the selfies.
    vector_cache.bump_user_event(conn, participant_id, selfies_deleted=True)
    conn.execute(
        delete(users_table).where(
            users_table.c.id == participant_id, users_table.c.gallery_token_hash.is_not(None)
        )
    )


def by_gallery_token_hash(conn: Connection, digest: str) -> Participant | None:
    return _participant(
        conn.execute(select(*_COLUMNS).where(users_table.c.gallery_token_hash == digest)).first()
    )


@functools.cache
def _holder_query() -> Select[Any]:
    # Built once: building a select costs more than running this one (0.27 of 0.4 ms).
    return (
        select(*_COLUMNS, *EVENT_COLUMNS)
        .select_from(users_table.join(events_table, events_table.c.id == users_table.c.event_id))
        .where(users_table.c.gallery_token_hash == bindparam("digest"))
    )


def holder_by_gallery_hash(conn: Connection, digest: str) -> tuple[Participant, Event] | None:
    """The participant holding this gallery token hash and their event, in one query (every
    gallery request asks it first)."""
    row = conn.execute(_holder_query(), {"digest": digest}).first()
    if row is None:
        return None
    values = tuple(row)
    width = len(_COLUMNS)
    return Participant(*values[:width]), event_from(values[width:])


def by_id(conn: Connection, participant_id: int) -> Participant | None:
    return _participant(
        conn.execute(
            select(*_COLUMNS).where(
                users_table.c.id == participant_id, users_table.c.gallery_token_hash.is_not(None)
            )
        ).first()
    )


def mark_erased(conn: Connection, participant_id: int, by: str, now: float) -> bool:
    """Record that a participant's face data is gone; False if it was recorded already."""
    return (
        conn.execute(
            update(users_table)
            .where(users_table.c.id == participant_id, users_table.c.erased_at.is_(None))
            .values(erased_at=now, erased_by=by)
        ).rowcount
        > 0
    )


def erased_at_for_update(conn: Connection, participant_id: int) -> float | None:
    """The participant's erasure time (None: not erased), their row locked for this transaction."""
    return conn.execute(
        select(users_table.c.erased_at).where(users_table.c.id == participant_id).with_for_update()
    ).scalar_one_or_none()


def mark_event_erased(conn: Connection, event_id: int, now: float) -> int:
    """Every participant of the event not erased yet is erased by its purge; returns how many."""
    return conn.execute(
        update(users_table)
        .where(
            users_table.c.event_id == event_id,
            users_table.c.gallery_token_hash.is_not(None),
            users_table.c.erased_at.is_(None),
        )
        .values(erased_at=now, erased_by=ERASED_BY_PURGE)
    ).rowcount


def processing_count(conn: Connection, event_id: int) -> int:
    """Photos of the event whose processing has not ended (neither done nor failed)."""
    waiting = (JobState.QUEUED, JobState.RETRYING, JobState.RUNNING)
    return conn.execute(
        select(func.count(func.distinct(jobs_table.c.photo_id)))
        .select_from(jobs_table.join(photos_table, photos_table.c.id == jobs_table.c.photo_id))
        .where(photos_table.c.event_id == event_id, jobs_table.c.state.in_(waiting))
    ).scalar_one()


def event_user_ids(conn: Connection, event_id: int) -> list[int]:
    """Every user of the event, participants and operator-made ones."""
    return list(
        conn.execute(select(users_table.c.id).where(users_table.c.event_id == event_id)).scalars()
    )
