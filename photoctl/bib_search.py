"""Finding an event's photos by bib number on its page: the service behind /e/<slug>/bibs.

Who may search is the organizer's choice per event (``bib_search``): anyone who knows a bib
(public), whoever also has the event's access code (code), or nobody (off); an event without
bibs, or whose face data was purged, offers no search either (participants.bib_search_open).
A bib is not a secret, so the pages rate-limit searches (api/routes/bib_pages.py) and answer a
number that is not on the start list exactly as a number no photo shows: the same query runs.

Searches are audited as counts per event and UTC day, never the numbers searched: the day's
first search appends its ``bib_searches`` entry to the (append-only) audit log, and the count
itself is kept beside it in photoctl_meta (bibs/lookup.py), where `photoctl audit` reads it.
"""

from __future__ import annotations

import datetime
import time

from sqlalchemy import Engine

from photoctl import audit, db, gallery
from photoctl.bibs import lookup
from photoctl.event_store import Event
from photoctl.models import AuditAction
from photoctl.participants import bib_search_open

__all__ = ["bib_photo", "bib_photos", "bib_search_open", "record_search"]


def bib_photos(
    database: Engine, event: Event, bib: str, limit: int, cursor: int | None
) -> tuple[list[lookup.GalleryItem], int | None]:
    """The event's processed photos where ``bib`` (normalized) was read, newest first."""
    with db.read(database) as conn:
        return lookup.bib_photos(conn, event.id, bib, limit, cursor)


def bib_photo(database: Engine, event: Event, bib: str, photo_id: int) -> gallery.PhotoFiles | None:
    """The files of one of those photos; None for any other photo."""
    with db.read(database) as conn:
        return lookup.bib_photo_files(conn, event.id, bib, photo_id)


def record_search(database: Engine, event: Event, now: float | None = None) -> None:
    """Count one search of the event's photos by bib (not which bib) for today's audit entry."""
    now = time.time() if now is None else now
    day = datetime.datetime.fromtimestamp(now, datetime.UTC).date().isoformat()
    with db.write(database) as conn:
        # Counted first: on PostgreSQL the count's row lock orders two first searches of a day,
        # so the second sees the entry the first appended.
        lookup.count_search(conn, event.id, day)
        if not audit.has_entry(conn, event.id, AuditAction.BIB_SEARCHES, day=day):
            # A count without its entry belongs to nothing shown (photoctl_meta outlives rows a
            # test or a restore took away): the day starts over with this search.
            lookup.restart_count(conn, event.id, day)
            audit.record(conn, event.id, AuditAction.BIB_SEARCHES, now=now, day=day)
