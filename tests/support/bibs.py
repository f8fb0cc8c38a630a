"""Bib reads seeded for tests of the participant side (bib search, galleries with bibs).

The worker's bib step (developer k's, issue 21 item 2) is not on this branch yet, so these
tests write ``bib_reads`` rows as that step will leave them: one row per (photo, bib), with its
engine, confidence and box, for a processed photo. Once the step lands, tests of reading use it;
these stay about who may see what. The event's bib settings are written the same way (the
`events create/edit --bibs --bib-search` options are k's too).
"""

from __future__ import annotations

import time

from sqlalchemy import Engine, update

from photoctl import db
from photoctl.models import BibRead, Event, StartListEntry


def set_bibs(database: Engine, event_id: int, *, bibs: bool = True, search: str = "public") -> None:
    with db.write(database) as conn:
        conn.execute(
            update(Event.__table__)
            .where(Event.__table__.c.id == event_id)
            .values(bibs=bibs, bib_search=search)
        )


def read_bib(database: Engine, photo_id: int, event_id: int, bib: str) -> None:
    with db.write(database) as conn:
        conn.execute(
            BibRead.__table__.insert().values(
                photo_id=photo_id,
                event_id=event_id,
                bib=bib,
                engine="local",
                confidence=0.93,
                box_left=0.4,
                box_top=0.5,
                box_width=0.1,
                box_height=0.06,
                read_at=time.time(),
            )
        )


def start_list(database: Engine, event_id: int, runners: dict[str, str]) -> None:
    """Runners on the event's start list: bib -> name."""
    with db.write(database) as conn:
        conn.execute(
            StartListEntry.__table__.insert(),
            [{"event_id": event_id, "bib": bib, "name": name} for bib, name in runners.items()],
        )
