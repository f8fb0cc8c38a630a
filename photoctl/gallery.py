"""Read queries behind the HTTP API: a user's photos, the gallery, who may see which file.

Lists are newest first (by photo id, which grows with ingest order) with a cursor that is the
last id of the previous page, so pages stay stable while new photos arrive. Only processed
photos are listed: their thumbnail and preview exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, exists, null, select

from photoctl.models import Match, Photo

photos = Photo.__table__
matches = Match.__table__


@dataclass(frozen=True)
class PhotoItem:
    id: int
    filename: str
    album: str | None
    taken_at: str | None
    width: int | None
    height: int | None
    similarity: float | None


@dataclass(frozen=True)
class PhotoFiles:
    source_path: bytes
    thumb_path: str | None  # relative to the storage root: settings.storage_file(...)
    preview_path: str | None
    filename: str = ""  # the name it was ingested or uploaded under, for a download


def _page(conn: Connection, query: Select[Any], limit: int) -> tuple[list[PhotoItem], int | None]:
    rows = conn.execute(query.order_by(photos.c.id.desc()).limit(limit + 1)).all()
    items = [PhotoItem(*row) for row in rows[:limit]]
    next_cursor = items[-1].id if len(rows) > limit else None
    return items, next_cursor


def _columns(similarity: ColumnElement[Any]) -> tuple[ColumnElement[Any], ...]:
    return (
        photos.c.id,
        photos.c.filename,
        photos.c.album,
        photos.c.taken_at,
        photos.c.width,
        photos.c.height,
        similarity,
    )


def my_photos(
    conn: Connection, user_id: int, limit: int, cursor: int | None
) -> tuple[list[PhotoItem], int | None]:
    query = (
        select(*_columns(matches.c.similarity))
        .select_from(matches.join(photos, photos.c.id == matches.c.photo_id))
        .where(matches.c.user_id == user_id, photos.c.processed_at.is_not(None))
    )
    if cursor is not None:
        query = query.where(photos.c.id < cursor)
    return _page(conn, query, limit)


def all_photos(
    conn: Connection,
    album: str | None,
    limit: int,
    cursor: int | None,
    only_user: int | None = None,
) -> tuple[list[PhotoItem], int | None]:
    """The gallery; ``only_user`` restricts it to the photos that user appears in."""
    query = select(*_columns(null())).where(photos.c.processed_at.is_not(None))
    if album is not None:
        query = query.where(photos.c.album == album)
    if only_user is not None:
        query = query.where(
            exists().where(and_(matches.c.photo_id == photos.c.id, matches.c.user_id == only_user))
        )
    if cursor is not None:
        query = query.where(photos.c.id < cursor)
    return _page(conn, query, limit)


def photo_files(conn: Connection, photo_id: int, viewer_id: int | None) -> PhotoFiles | None:
    """The photo's files if the viewer may see them (``viewer_id`` None: anyone may)."""
    query = select(
        photos.c.source_path, photos.c.thumb_path, photos.c.preview_path, photos.c.filename
    ).where(photos.c.id == photo_id, photos.c.processed_at.is_not(None))
    if viewer_id is not None:
        query = query.where(
            exists().where(and_(matches.c.photo_id == photos.c.id, matches.c.user_id == viewer_id))
        )
    row = conn.execute(query).first()
    return None if row is None else PhotoFiles(bytes(row[0]), row[1], row[2], row[3] or "")
