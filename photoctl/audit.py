"""The audit log of events: consent, enrollment, matches made, "not me", erasure and purge.

A query module (see db.py): ``record`` writes in the caller's transaction, so an entry commits
with the change it describes, or not at all. The log is append-only: nothing here (or anywhere)
updates or deletes an entry. Details are small JSON objects of counts and versions (a day's
count of bib searches grows beside its entry, see bib_search.py); callers never pass
embeddings, tokens, images or client addresses, and ``record`` refuses keys that suggest one,
so a careless caller fails loudly in tests instead of leaking into the log.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from photoctl.bibs import lookup
from photoctl.models import AuditAction, AuditEntry

audit_log = AuditEntry.__table__

_FORBIDDEN_WORDS = frozenset({"token", "embedding", "image", "bytes", "address", "ip"})


@dataclass(frozen=True)
class Entry:
    id: int
    at: float
    event_id: int
    action: str
    participant_id: int | None
    detail: dict[str, Any]

    @property
    def actor(self) -> str:
        """Who did it: "participant" (enrollment, their selfies, "not me", erasure, and the
        matches found then), "worker" (matches found in a new photo: ``detail.worker`` names
        it since this was recorded) or "operator" (a CLI command: events, purges, `users
        delete`, whose entries say ``by``)."""
        if self.detail.get("by") == "operator":
            return "operator"
        if self.participant_id is not None:
            return "participant"
        if self.action == AuditAction.MATCHES and self.detail.get("source") == "photo":
            return "worker"
        return "operator"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "event_id": self.event_id,
            "action": self.action,
            "actor": self.actor,
            "participant_id": self.participant_id,
            "detail": self.detail,
        }


def record(
    conn: Connection,
    event_id: int,
    action: AuditAction,
    participant_id: int | None = None,
    now: float | None = None,
    **detail: Any,
) -> None:
    """Append one entry; ``detail`` holds counts and versions only."""
    for key in detail:
        if _FORBIDDEN_WORDS & set(key.lower().split("_")):
            raise ValueError(f"audit detail {key!r} is not allowed in the audit log")
    conn.execute(
        audit_log.insert().values(
            at=time.time() if now is None else now,
            event_id=event_id,
            action=str(action),
            participant_id=participant_id,
            detail=json.dumps(detail, sort_keys=True, separators=(",", ":")),
        )
    )


def has_entry(conn: Connection, event_id: int, action: AuditAction, **detail: Any) -> bool:
    """Whether an entry of this event and action with exactly this detail was appended."""
    return (
        conn.execute(
            select(audit_log.c.id)
            .where(
                audit_log.c.event_id == event_id,
                audit_log.c.action == str(action),
                audit_log.c.detail == json.dumps(detail, sort_keys=True, separators=(",", ":")),
            )
            .limit(1)
        ).first()
        is not None
    )


def entries(conn: Connection, event_id: int | None = None, limit: int | None = None) -> list[Entry]:
    """Entries oldest first, of one event or of all; ``limit`` keeps the newest ones."""
    query = select(
        audit_log.c.id,
        audit_log.c.at,
        audit_log.c.event_id,
        audit_log.c.action,
        audit_log.c.participant_id,
        audit_log.c.detail,
    )
    if event_id is not None:
        query = query.where(audit_log.c.event_id == event_id)
    if limit is not None:
        query = query.order_by(audit_log.c.id.desc()).limit(limit)
        rows = list(reversed(conn.execute(query).all()))
    else:
        rows = list(conn.execute(query.order_by(audit_log.c.id)).all())
    found = [Entry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5] or "{}")) for r in rows]
    _with_search_counts(conn, found)
    return found


def _with_search_counts(conn: Connection, found: list[Entry]) -> None:
    """A day's bib_searches entry is appended at its first search; the count goes on growing
    beside it (bibs/lookup.py) and is shown here as ``searches``."""
    days = [
        (entry.event_id, str(entry.detail.get("day")))
        for entry in found
        if entry.action == AuditAction.BIB_SEARCHES
    ]
    if not days:
        return
    counts = lookup.search_counts(conn, days)
    for entry in found:
        if entry.action == AuditAction.BIB_SEARCHES:
            entry.detail["searches"] = counts.get((entry.event_id, str(entry.detail.get("day"))), 0)
