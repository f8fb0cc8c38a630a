"""Bib numbers in the database, as participants use them: the queries, and nothing else.

A query module (see db.py): functions take the caller's Connection and never commit. The
services are in participants.py (a participant's own bibs, their gallery) and bib_search.py
(a search on the event page).

Lists are those of gallery.py: processed photos only, newest first, keyed by the last id of the
previous page. A participant's gallery is the union of the photos their face matched and the
photos where one of their bibs was read in their event, minus the photos they said "not me" to;
each photo says why it is there (``found_by``: face, bib or both).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, and_, case, delete, exists, null, or_, select

from photoctl import db
from photoctl.gallery import PhotoFiles, PhotoItem
from photoctl.models import BibRead, Match, Meta, ParticipantBib, Photo, Rejection, StartListEntry

photos = Photo.__table__
matches = Match.__table__
rejections = Rejection.__table__
bib_reads = BibRead.__table__
participant_bibs = ParticipantBib.__table__
start_list = StartListEntry.__table__
meta = Meta.__table__


@dataclass(frozen=True)
class GalleryItem(PhotoItem):
    """A photo of a participant's page: ``found_by`` says why it is in their gallery ("face",
    "bib" or "both"); None on a bib's result page, which is nobody's gallery."""

    found_by: str | None = None


FOUND_BY_FACE = "face"
FOUND_BY_BIB = "bib"
FOUND_BY_BOTH = "both"

# What may be searched: letters and digits, as bib_reads.bib holds them (String(16)). Anything
# else is refused before a query is made, whatever its length.
MAX_BIB_CHARS = 16
_BIB = re.compile(r"[A-Z0-9]{1,16}")
_TYPED_MAX = 40  # what a person may type around it (spaces, a '#')


def normalize_bib(text: str) -> str | None:
    """A bib as stored and searched (no spaces, letters upper case, no leading zeros, as
    photoctl/bibs/rules.py stores them), or None when ``text`` cannot be a bib."""
    if len(text) > _TYPED_MAX:
        return None
    cleaned = re.sub(r"\s+", "", text).lstrip("#").upper()
    if cleaned.isascii() and cleaned.isdigit():
        cleaned = str(int(cleaned))
    else:
        letters = re.fullmatch(r"([A-Z]+)0*(\d+)", cleaned)
        if letters:
            cleaned = f"{letters[1]}{int(letters[2])}"
    return cleaned if _BIB.fullmatch(cleaned) else None


def _columns(similarity: Any, found_by: Any) -> tuple[Any, ...]:
    return (
        photos.c.id,
        photos.c.filename,
        photos.c.album,
        photos.c.taken_at,
        photos.c.width,
        photos.c.height,
        similarity,
        found_by,
    )


def _page(
    conn: Connection, query: Select[Any], limit: int, cursor: int | None
) -> tuple[list[GalleryItem], int | None]:
    if cursor is not None:
        query = query.where(photos.c.id < cursor)
    rows = conn.execute(query.order_by(photos.c.id.desc()).limit(limit + 1)).all()
    items = [GalleryItem(*row) for row in rows[:limit]]
    return items, items[-1].id if len(rows) > limit else None


def _read_in(event_id: int, bib: str) -> Any:
    return exists().where(
        bib_reads.c.photo_id == photos.c.id,
        bib_reads.c.event_id == event_id,
        bib_reads.c.bib == bib,
    )


def bib_photos(
    conn: Connection, event_id: int, bib: str, limit: int, cursor: int | None
) -> tuple[list[GalleryItem], int | None]:
    """The event's processed photos where ``bib`` was read, newest first; (page, next cursor).

    A number no photo shows (on the start list or not) is the same empty page: one query,
    whatever the number.
    """
    query = select(*_columns(null(), null())).where(
        photos.c.event_id == event_id, photos.c.processed_at.is_not(None), _read_in(event_id, bib)
    )
    return _page(conn, query, limit, cursor)


def bib_photo_files(conn: Connection, event_id: int, bib: str, photo_id: int) -> PhotoFiles | None:
    """The files of a processed photo of the event where ``bib`` was read; None otherwise."""
    row = conn.execute(
        select(
            photos.c.source_path, photos.c.thumb_path, photos.c.preview_path, photos.c.filename
        ).where(
            photos.c.id == photo_id,
            photos.c.event_id == event_id,
            photos.c.processed_at.is_not(None),
            _read_in(event_id, bib),
        )
    ).first()
    return None if row is None else PhotoFiles(bytes(row[0]), row[1], row[2], row[3] or "")


# -- a participant's own bibs ------------------------------------------------------------------


def add_participant_bib(
    conn: Connection, user_id: int, event_id: int, bib: str, now: float
) -> bool:
    """Link a bib to the participant; False if it was linked already."""
    # RETURNING, not rowcount: the driver may not count an INSERT … ON CONFLICT DO NOTHING.
    return (
        conn.execute(
            db.insert_ignoring_conflicts(conn, participant_bibs).returning(
                participant_bibs.c.user_id
            ),
            {"user_id": user_id, "bib": bib, "event_id": event_id, "created_at": now},
        ).first()
        is not None
    )


def bibs_of(conn: Connection, user_id: int) -> list[str]:
    """The participant's bibs, in the order they were added."""
    return list(
        conn.execute(
            select(participant_bibs.c.bib)
            .where(participant_bibs.c.user_id == user_id)
            .order_by(participant_bibs.c.created_at, participant_bibs.c.bib)
        ).scalars()
    )


def forget_participant_bibs(conn: Connection, user_id: int, bib: str | None = None) -> int:
    """Unlink one of the participant's bibs (or all of them); returns how many went."""
    statement = delete(participant_bibs).where(participant_bibs.c.user_id == user_id)
    if bib is not None:
        statement = statement.where(participant_bibs.c.bib == bib)
    return conn.execute(statement).rowcount


def users_with_bibs(conn: Connection, event_id: int, bibs: list[str]) -> list[int]:
    """Participants of the event holding one of these bibs: the ones whose cached gallery a
    photo newly read with them changes."""
    if not bibs:
        return []
    return list(
        conn.execute(
            select(participant_bibs.c.user_id)
            .where(participant_bibs.c.event_id == event_id, participant_bibs.c.bib.in_(bibs))
            .distinct()
        ).scalars()
    )


# -- a participant's gallery: face matches and bib reads ----------------------------------------


def _by_face(user_id: int) -> Any:
    return exists().where(matches.c.photo_id == photos.c.id, matches.c.user_id == user_id)


def _by_bib(user_id: int) -> Any:
    return exists().where(
        bib_reads.c.photo_id == photos.c.id,
        participant_bibs.c.user_id == user_id,
        participant_bibs.c.event_id == bib_reads.c.event_id,
        participant_bibs.c.bib == bib_reads.c.bib,
    )


def _not_rejected(user_id: int) -> Any:
    return ~exists().where(rejections.c.photo_id == photos.c.id, rejections.c.user_id == user_id)


def _in_gallery(user_id: int) -> Any:
    return and_(
        photos.c.processed_at.is_not(None),
        or_(_by_face(user_id), _by_bib(user_id)),
        _not_rejected(user_id),
    )


def gallery_photos(
    conn: Connection, user_id: int, limit: int, cursor: int | None
) -> tuple[list[GalleryItem], int | None]:
    """The participant's photos (face matches and bib reads, "not me" left out), newest first,
    each with ``found_by``; (page, next cursor)."""
    similarity = (
        select(matches.c.similarity)
        .where(matches.c.photo_id == photos.c.id, matches.c.user_id == user_id)
        .scalar_subquery()
    )
    by_face, by_bib = _by_face(user_id), _by_bib(user_id)
    found_by = case(
        (and_(by_face, by_bib), FOUND_BY_BOTH),
        (by_face, FOUND_BY_FACE),
        else_=FOUND_BY_BIB,
    )
    query = select(*_columns(similarity, found_by)).where(_in_gallery(user_id))
    return _page(conn, query, limit, cursor)


def gallery_photo_files(conn: Connection, user_id: int, photo_id: int) -> PhotoFiles | None:
    """The files of a photo in the participant's gallery (by face or bib); None otherwise."""
    row = conn.execute(
        select(
            photos.c.source_path, photos.c.thumb_path, photos.c.preview_path, photos.c.filename
        ).where(photos.c.id == photo_id, _in_gallery(user_id))
    ).first()
    return None if row is None else PhotoFiles(bytes(row[0]), row[1], row[2], row[3] or "")


def reject_bib_photo(conn: Connection, user_id: int, photo_id: int, now: float) -> bool:
    """ "Not me" to a photo in the gallery by a bib read: remembered as a rejection, which keeps
    it out for good (the bib stays linked). False if the photo is not there by a bib."""
    in_by_bib = conn.execute(
        select(photos.c.id).where(photos.c.id == photo_id, _by_bib(user_id), _not_rejected(user_id))
    ).first()
    if in_by_bib is None:
        return False
    conn.execute(
        db.insert_ignoring_conflicts(conn, rejections),
        [{"user_id": user_id, "photo_id": photo_id, "created_at": now}],
    )
    return True


# -- an event's purge -------------------------------------------------------------------------


def forget_event_bib_links(conn: Connection, event_id: int) -> dict[str, int]:
    """Delete the event's participants' bib links at its purge (their galleries are erased with
    it); returns how many went. The start list's names go by store.forget_start_list_names; the
    bibs read in photos stay with the photos (no name is attached to them)."""
    return {
        "participant_bibs": conn.execute(
            delete(participant_bibs).where(participant_bibs.c.event_id == event_id)
        ).rowcount,
    }


# -- bib searches per day, for the audit log ---------------------------------------------------

_SEARCHES_KEY = "bib_searches:{event_id}:{day}"


def count_search(conn: Connection, event_id: int, day: str) -> None:
    """Count one bib search of the event on ``day`` (YYYY-MM-DD, UTC).

    The count is kept in photoctl_meta (the audit log is append-only); audit.py shows it on the
    day's bib_searches entry.
    """
    key = _SEARCHES_KEY.format(event_id=event_id, day=day)
    inserted = conn.execute(
        db.insert_ignoring_conflicts(conn, meta).returning(meta.c.key), {"key": key, "value": "1"}
    ).first()
    if inserted is None:
        # Text in the table: read and written back under the write lock db.write holds (BEGIN
        # IMMEDIATE on SQLite; on PostgreSQL the row lock of FOR UPDATE).
        current = conn.execute(
            select(meta.c.value).where(meta.c.key == key).with_for_update()
        ).scalar_one()
        conn.execute(meta.update().where(meta.c.key == key).values(value=str(int(current) + 1)))


def restart_count(conn: Connection, event_id: int, day: str) -> None:
    """The day's count is this one search."""
    key = _SEARCHES_KEY.format(event_id=event_id, day=day)
    conn.execute(meta.update().where(meta.c.key == key).values(value="1"))


def search_counts(conn: Connection, keys: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """The counted searches of each (event id, day)."""
    wanted = {_SEARCHES_KEY.format(event_id=e, day=d): (e, d) for e, d in keys}
    found: dict[tuple[int, str], int] = {}
    for chunk in db.in_chunks(list(wanted)):
        for key, value in conn.execute(
            select(meta.c.key, meta.c.value).where(meta.c.key.in_(chunk))
        ):
            found[wanted[key]] = int(value)
    return found
