"""What the face service was asked, and what it is estimated to cost: the queries, no more.

A query module (see db.py): functions take the caller's Connection and never commit. The call
limiter (faces/limiter.py) counts every call's answer in ``service_calls`` per UTC day, event
(its slug; "" for calls counted before migration 0009, which no event can claim) and operation;
this module sums those counts and prices them with the settings' prices (AWS bills the accepted
calls of the face APIs per image, and each face stored in a collection per month; collection
management calls are free). ``stats``, ``/metrics``, ``events show`` and the daily budget
(budget.py) read them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, and_, func, select

from photoctl.config import RekognitionSettings
from photoctl.models import Face, Photo, SelfieFace, ServiceCall

calls_table = ServiceCall.__table__
faces_table = Face.__table__
photos_table = Photo.__table__
selfies_table = SelfieFace.__table__

# Rekognition's image APIs photoctl uses, billed per image (accepted calls only): the "Group 1"
# face APIs and DetectText (bib numbers), priced alike in its first tier.
BILLED_OPERATIONS = frozenset({"IndexFaces", "SearchFaces", "SearchFacesByImage", "DetectText"})
SERVICE = "rekognition"


@dataclass(frozen=True)
class CallCounts:
    accepted: int = 0
    throttled: int = 0
    failed: int = 0
    billed: int = 0  # accepted calls of billed operations


def utc_day(now: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if now is None else now))


def calls_by_event(
    conn: Connection, day: str | None = None, service: str = SERVICE, event: str | None = None
) -> dict[str, dict[str, CallCounts]]:
    """Counts per event slug and operation, for one UTC day (YYYY-MM-DD) or, without ``day``,
    for all days; ``event``: that event's only."""
    query = (
        select(
            calls_table.c.event,
            calls_table.c.operation,
            func.sum(calls_table.c.accepted),
            func.sum(calls_table.c.throttled),
            func.sum(calls_table.c.failed),
        )
        .where(calls_table.c.service == service)
        .group_by(calls_table.c.event, calls_table.c.operation)
    )
    if day is not None:
        query = query.where(calls_table.c.day == day)
    if event is not None:
        query = query.where(calls_table.c.event == event)
    counts: dict[str, dict[str, CallCounts]] = {}
    for slug, operation, accepted, throttled, failed in conn.execute(query):
        billed = int(accepted) if operation in BILLED_OPERATIONS else 0
        counts.setdefault(slug, {})[operation] = CallCounts(
            int(accepted), int(throttled), int(failed), billed
        )
    return counts


def calls_by_operation(
    conn: Connection, day: str | None = None, service: str = SERVICE
) -> dict[str, CallCounts]:
    """Counts per operation (every event), for one UTC day or, without ``day``, for all days."""
    return _merged(calls_by_event(conn, day, service).values())


def billed_calls(conn: Connection, day: str, service: str = SERVICE) -> int:
    """Accepted calls of billed operations on one UTC day, every event: what a budget counts."""
    return int(
        conn.execute(
            select(func.coalesce(func.sum(calls_table.c.accepted), 0)).where(
                calls_table.c.service == service,
                calls_table.c.day == day,
                calls_table.c.operation.in_(sorted(BILLED_OPERATIONS)),
            )
        ).scalar_one()
    )


def _merged(per_event: Iterable[dict[str, CallCounts]]) -> dict[str, CallCounts]:
    merged: dict[str, CallCounts] = {}
    for counts in per_event:
        for operation, c in counts.items():
            m = merged.get(operation, CallCounts())
            merged[operation] = CallCounts(
                m.accepted + c.accepted,
                m.throttled + c.throttled,
                m.failed + c.failed,
                m.billed + c.billed,
            )
    return merged


def priced(counts: dict[str, CallCounts], prices: RekognitionSettings) -> dict:
    """Totals of per-operation counts, with the estimated cost in USD."""
    billed = sum(c.billed for c in counts.values())
    return {
        "by_operation": {op: c.__dict__ for op, c in sorted(counts.items())},
        "accepted": sum(c.accepted for c in counts.values()),
        "throttled": sum(c.throttled for c in counts.values()),
        "failed": sum(c.failed for c in counts.values()),
        "billed": billed,
        "estimated_cost_usd": round(billed * prices.price_per_1000_calls / 1000, 4),
    }


def event_summary(
    conn: Connection, slug: str, prices: RekognitionSettings, now: float | None = None
) -> dict:
    """One event's calls today and in all, with their estimated cost (`events show`)."""
    today = calls_by_event(conn, utc_day(now), event=slug).get(slug, {})
    total = calls_by_event(conn, event=slug).get(slug, {})
    return {"today": priced(today, prices), "total": priced(total, prices)}


def stored_faces(conn: Connection, engine_name: str = SERVICE) -> int:
    """Faces the service keeps for photoctl: photo faces and selfies of this engine."""
    photo_faces = conn.execute(
        select(func.count()).select_from(faces_table).where(faces_table.c.engine == engine_name)
    ).scalar_one()
    selfies = conn.execute(
        select(func.count()).select_from(selfies_table).where(selfies_table.c.engine == engine_name)
    ).scalar_one()
    return int(photo_faces) + int(selfies)


def summary(conn: Connection, prices: RekognitionSettings, now: float | None = None) -> dict:
    """Calls today and in all, by operation, in total and per event (by slug; "" holds the
    calls counted before per-event counts), with the estimated cost in USD (stats, metrics)."""
    today = calls_by_event(conn, utc_day(now))
    total = calls_by_event(conn)
    faces = stored_faces(conn)
    return {
        "today": priced(_merged(today.values()), prices),
        "total": priced(_merged(total.values()), prices),
        "by_event": {
            slug: {
                "today": priced(today.get(slug, {}), prices),
                "total": priced(total[slug], prices),
            }
            for slug in sorted(total)
        },
        "stored_faces": faces,
        "storage_cost_per_month_usd": round(faces * prices.price_per_face_month, 4),
    }


def faces_per_photo(
    conn: Connection, engine_name: str = SERVICE, event_id: int | None = None
) -> dict[int, int]:
    """{faces in a photo: photos with that many}, over the photos this engine indexed (of one
    event, or of all): what the calls of photos still to come are estimated from."""
    per_photo = (
        select(photos_table.c.id, func.count(faces_table.c.id).label("faces"))
        .select_from(
            photos_table.outerjoin(
                faces_table,
                and_(
                    faces_table.c.photo_id == photos_table.c.id, faces_table.c.engine == engine_name
                ),
            )
        )
        .where(photos_table.c.faces_engine == engine_name)
        .group_by(photos_table.c.id)
    )
    if event_id is not None:
        per_photo = per_photo.where(photos_table.c.event_id == event_id)
    counts = per_photo.subquery()
    rows = conn.execute(select(counts.c.faces, func.count()).group_by(counts.c.faces))
    return {int(faces): int(photos) for faces, photos in rows}
