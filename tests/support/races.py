"""A race seeded for tests of finding photos by bib: two events with real processed photos,
bibs read in them (tests/support/bibs.py), a start list, and a participant matched by face.

city-10k: photos a-d; bib 123 read in a, b and c, 456 in d; start list 123, 456, 789 (789 ran
and is in no photo); participant "ann" matched by face in a and d. other-race: photo e, where
123 was read too (the same number in another event).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from photoctl import config, db, events, participant_store, users
from photoctl.ingest import ingest_paths
from photoctl.models import Photo
from photoctl.worker import drain_in_process
from testkit.photos import write_photo
from tests.support import bibs
from tests.test_api import seed_match

SLUG = "city-10k"
OTHER = "other-race"
CODE = "RUN-2026"


@dataclass
class Race:
    event: events.Event
    other: events.Event
    photo_ids: dict[str, int]  # file name (without .jpg) -> photo id
    token: str  # ann's gallery
    participant_id: int


def seed_race(
    settings: config.Settings,
    database: Engine,
    folder: Path,
    *,
    search: str = "public",
    access_code: str | None = None,
) -> Race:
    event = events.create_event(
        database,
        SLUG,
        title="City 10K",
        date="2026-05-03",
        retention_days=60,
        access_code=access_code,
    )
    other = events.create_event(
        database, OTHER, title="Other Race", date="2026-05-04", retention_days=60
    )
    for seed, name in enumerate("abcd"):
        write_photo(folder / SLUG / f"{name}.jpg", seed=seed)
    write_photo(folder / OTHER / "e.jpg", seed=9)
    ingest_paths(database, settings, [str(folder / SLUG)], event_id=event.id)
    ingest_paths(database, settings, [str(folder / OTHER)], event_id=other.id)
    assert drain_in_process(settings, "none").failed == 0
    with db.read(database) as conn:
        ids = {
            name.removesuffix(".jpg"): i
            for name, i in conn.execute(select(Photo.filename, Photo.id))
        }
    for name in "abc":
        bibs.read_bib(database, ids[name], event.id, "123")
    bibs.read_bib(database, ids["d"], event.id, "456")
    bibs.read_bib(database, ids["e"], other.id, "123")
    bibs.start_list(database, event.id, {"123": "Ann Runner", "456": "Bo Pacer", "789": "Cy Late"})
    bibs.set_bibs(database, event.id, search=search)
    bibs.set_bibs(database, other.id, search="public")
    token = users.new_token()
    with db.write(database) as conn:
        participant_id = participant_store.insert_participant(
            conn,
            event_id=event.id,
            name="p-ann",
            token_hash=users.hash_token(users.new_token()),
            gallery_token_hash=users.hash_token(token),
            consent_version=event.consent_version,
            now=time.time(),
        )
    for name in "ad":
        seed_match(database, ids[name], participant_id)
    fresh = events.get_event(database, SLUG)
    assert fresh is not None
    return Race(fresh, other, ids, token, participant_id)
