"""Bib numbers in the database: start lists, bibs read in photos, the bib step's checkpoint.

A query module (see db.py): every function takes the caller's Connection and never commits.
Start-list names are personal data: no function here returns them (only the bibs), and
``forget_start_list_names`` is what a purge calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, distinct, func, insert, select, update

from photoctl.bibs.rules import BibRead
from photoctl.models import BibRead as BibReadModel
from photoctl.models import Event, Photo, StartListEntry
from photoctl.queue import jobs

start_list = StartListEntry.__table__
bib_reads = BibReadModel.__table__
photos = Photo.__table__
events = Event.__table__

Box = tuple[float, float, float, float]


def replace_start_list(
    conn: Connection, event_id: int, runners: Sequence[tuple[str, str | None]]
) -> None:
    """The event's start list becomes ``runners`` (bib, name or None); the old one goes."""
    conn.execute(delete(start_list).where(start_list.c.event_id == event_id))
    if runners:
        conn.execute(
            insert(start_list),
            [{"event_id": event_id, "bib": bib, "name": name} for bib, name in runners],
        )


def start_list_bibs(conn: Connection, event_id: int) -> frozenset[str] | None:
    """The event's start list as bibs, or None when it has none (the range rules then)."""
    rows = conn.execute(select(start_list.c.bib).where(start_list.c.event_id == event_id))
    bibs = frozenset(row[0] for row in rows)
    return bibs or None


def forget_start_list_names(conn: Connection, event_id: int) -> int:
    """Delete the names of the event's start list (personal data), keeping its bibs; returns
    how many names there were."""
    result = conn.execute(
        update(start_list)
        .where(start_list.c.event_id == event_id, start_list.c.name.is_not(None))
        .values(name=None)
    )
    return result.rowcount or 0


def drop_reads_except(conn: Connection, event_id: int, keep: Callable[[str], bool]) -> int:
    """Delete the event's bib reads whose bib ``keep`` refuses (after its start list, range or
    pattern changed: numbers that are not bibs now are not stored as bibs); returns how many."""
    found = conn.execute(
        select(distinct(bib_reads.c.bib)).where(bib_reads.c.event_id == event_id)
    ).scalars()
    gone = [bib for bib in found if not keep(bib)]
    dropped = 0
    for start in range(0, len(gone), 500):
        result = conn.execute(
            delete(bib_reads).where(
                bib_reads.c.event_id == event_id, bib_reads.c.bib.in_(gone[start : start + 500])
            )
        )
        dropped += result.rowcount or 0
    return dropped


def bibs_read_at(conn: Connection, photo_id: int) -> float | None:
    """The bib step's checkpoint: when the photo's bibs were read, or None."""
    return conn.execute(select(photos.c.bibs_read_at).where(photos.c.id == photo_id)).scalar()


def store_reads(
    conn: Connection,
    photo_id: int,
    event_id: int,
    engine: str,
    found: Sequence[BibRead],
    size: tuple[int, int],
    unread: int,
    now: float,
) -> None:
    """Store the bibs read in a photo (boxes as fractions of ``size``, the original's width and
    height) and set the checkpoint; what an earlier read of the photo stored is replaced."""
    width, height = size
    conn.execute(delete(bib_reads).where(bib_reads.c.photo_id == photo_id))
    if found:
        conn.execute(
            insert(bib_reads),
            [
                {
                    "photo_id": photo_id,
                    "event_id": event_id,
                    "bib": read.bib,
                    "engine": engine,
                    "confidence": read.confidence,
                    "box_left": read.box[0] / width,
                    "box_top": read.box[1] / height,
                    "box_width": (read.box[2] - read.box[0]) / width,
                    "box_height": (read.box[3] - read.box[1]) / height,
                    "read_at": now,
                }
                for read in found
            ],
        )
    conn.execute(
        update(photos)
        .where(photos.c.id == photo_id)
        .values(bibs_read_at=now, bib_texts_unread=unread)
    )


def photos_to_read(conn: Connection, event_id: int) -> list[int]:
    """Processed photos of the event whose bibs were not read, and with no bib job waiting."""
    waiting = select(jobs.c.photo_id).where(
        jobs.c.kind == "read_bibs", jobs.c.state.in_(("queued", "running"))
    )
    rows = conn.execute(
        select(photos.c.id)
        .where(
            photos.c.event_id == event_id,
            photos.c.processed_at.is_not(None),
            photos.c.bibs_read_at.is_(None),
            photos.c.id.not_in(waiting.where(jobs.c.photo_id.is_not(None))),
        )
        .order_by(photos.c.id)
    )
    return [row[0] for row in rows]


@dataclass(frozen=True)
class PhotoOfBib:
    id: int
    filename: str
    confidence: float
    box: Box  # left, top, width, height as fractions of the photo

    def as_json(self) -> dict[str, Any]:
        left, top, width, height = self.box
        return {
            "id": self.id,
            "filename": self.filename,
            "confidence": round(self.confidence, 3),
            "box": {"left": left, "top": top, "width": width, "height": height},
        }


def _photo_rows(conn: Connection, event_id: int, bib: str | None) -> list[Any]:
    query = (
        select(
            bib_reads.c.bib,
            photos.c.id,
            photos.c.filename,
            bib_reads.c.confidence,
            bib_reads.c.box_left,
            bib_reads.c.box_top,
            bib_reads.c.box_width,
            bib_reads.c.box_height,
        )
        .join(photos, photos.c.id == bib_reads.c.photo_id)
        .where(bib_reads.c.event_id == event_id)
        .order_by(bib_reads.c.bib, photos.c.id)
    )
    if bib is not None:
        query = query.where(bib_reads.c.bib == bib)
    return list(conn.execute(query))


def photos_of_bib(conn: Connection, event_id: int, bib: str) -> list[PhotoOfBib]:
    """The photos where ``bib`` was read, oldest first."""
    return [
        PhotoOfBib(row[1], row[2], row[3], (row[4], row[5], row[6], row[7]))
        for row in _photo_rows(conn, event_id, bib)
    ]


def all_bibs(conn: Connection, event_id: int) -> dict[str, list[PhotoOfBib]]:
    """Every bib read in the event and its photos, by bib."""
    found: dict[str, list[PhotoOfBib]] = {}
    for row in _photo_rows(conn, event_id, None):
        found.setdefault(row[0], []).append(
            PhotoOfBib(row[1], row[2], row[3], (row[4], row[5], row[6], row[7]))
        )
    return found


@dataclass(frozen=True)
class BibCounts:
    photos_read: int
    photos_with_bibs: int
    photos_unreadable: int  # read, with digit-like text that no rule accepted as a bib
    distinct_bibs: int
    start_list: int  # runners on the start list (0: none)
    runners_found: int  # of those, with at least one photo

    @property
    def runners_share(self) -> float | None:
        return self.runners_found / self.start_list if self.start_list else None

    def as_json(self) -> dict[str, Any]:
        share = self.runners_share
        return {
            "photos_read": self.photos_read,
            "photos_with_bibs": self.photos_with_bibs,
            "photos_with_unreadable_text": self.photos_unreadable,
            "distinct_bibs": self.distinct_bibs,
            "start_list_runners": self.start_list,
            "runners_with_photos": self.runners_found,
            "runners_with_photos_share": None if share is None else round(share, 4),
        }


def counts(conn: Connection, event_ids: Iterable[int] | None = None) -> BibCounts:
    """Bib figures of some events (None: every event)."""
    ids = None if event_ids is None else list(event_ids)

    def scoped(column: Any) -> Any:
        return True if ids is None else column.in_(ids)

    read = conn.execute(
        select(
            func.count(),
            func.count().filter(photos.c.bib_texts_unread > 0),
        ).where(photos.c.bibs_read_at.is_not(None), scoped(photos.c.event_id))
    ).one()
    with_bibs, distinct_bibs = conn.execute(
        select(func.count(distinct(bib_reads.c.photo_id)), func.count(distinct(bib_reads.c.bib)))
        .select_from(bib_reads)
        .where(scoped(bib_reads.c.event_id))
    ).one()
    listed = conn.execute(
        select(func.count()).select_from(start_list).where(scoped(start_list.c.event_id))
    ).scalar_one()
    found_runners = conn.execute(
        select(func.count())
        .select_from(start_list)
        .where(
            scoped(start_list.c.event_id),
            select(bib_reads.c.id)
            .where(
                and_(
                    bib_reads.c.event_id == start_list.c.event_id,
                    bib_reads.c.bib == start_list.c.bib,
                )
            )
            .exists(),
        )
    ).scalar_one()
    return BibCounts(
        photos_read=read[0],
        photos_with_bibs=with_bibs,
        photos_unreadable=read[1],
        distinct_bibs=distinct_bibs,
        start_list=listed,
        runners_found=found_runners,
    )


def events_reading_bibs(conn: Connection) -> list[int]:
    return [row[0] for row in conn.execute(select(events.c.id).where(events.c.bibs.is_(True)))]
