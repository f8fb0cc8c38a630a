"""What the face service was asked, and what it is estimated to cost: the queries, no more.

A query module (see db.py): functions take the caller's Connection and never commit. The call
limiter (faces/limiter.py) counts every call's answer in ``service_calls`` per UTC day and
operation; this module sums those counts and prices them with the settings' prices (AWS bills
the accepted calls of the face APIs per image, and each face stored in a collection per month;
collection management calls are free). ``stats`` and ``/metrics`` show the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from photoctl.config import RekognitionSettings
from photoctl.models import Face, SelfieFace, ServiceCall

calls_table = ServiceCall.__table__
faces_table = Face.__table__
selfies_table = SelfieFace.__table__

# Rekognition's "Group 1" image APIs photoctl uses: billed per image, accepted calls only.
BILLED_OPERATIONS = frozenset({"IndexFaces", "SearchFaces", "SearchFacesByImage"})
SERVICE = "rekognition"


@dataclass(frozen=True)
class CallCounts:
    accepted: int = 0
    throttled: int = 0
    failed: int = 0
    billed: int = 0  # accepted calls of billed operations


def utc_day(now: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if now is None else now))


def calls_by_operation(
    conn: Connection, day: str | None = None, service: str = SERVICE
) -> dict[str, CallCounts]:
    """Counts per operation, for one UTC day (YYYY-MM-DD) or, without ``day``, for all days."""
    query = (
        select(
            calls_table.c.operation,
            func.sum(calls_table.c.accepted),
            func.sum(calls_table.c.throttled),
            func.sum(calls_table.c.failed),
        )
        .where(calls_table.c.service == service)
        .group_by(calls_table.c.operation)
    )
    if day is not None:
        query = query.where(calls_table.c.day == day)
    return {
        operation: CallCounts(
            int(accepted),
            int(throttled),
            int(failed),
            int(accepted) if operation in BILLED_OPERATIONS else 0,
        )
        for operation, accepted, throttled, failed in conn.execute(query)
    }


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
    """Calls today and in all, by operation, with the estimated cost in USD (stats, metrics)."""
    today = calls_by_operation(conn, utc_day(now))
    total = calls_by_operation(conn)
    faces = stored_faces(conn)

    def priced(counts: dict[str, CallCounts]) -> dict:
        billed = sum(c.billed for c in counts.values())
        return {
            "by_operation": {op: c.__dict__ for op, c in sorted(counts.items())},
            "accepted": sum(c.accepted for c in counts.values()),
            "throttled": sum(c.throttled for c in counts.values()),
            "failed": sum(c.failed for c in counts.values()),
            "billed": billed,
            "estimated_cost_usd": round(billed * prices.price_per_1000_calls / 1000, 4),
        }

    return {
        "today": priced(today),
        "total": priced(total),
        "stored_faces": faces,
        "storage_cost_per_month_usd": round(faces * prices.price_per_face_month, 4),
    }
