"""A participant's gallery seeded for tests that reach it over HTTP: an event, photos with the
file names a test chooses (ingested and processed by the pipeline with the ``none`` engine), one
participant matched to all of them, and the gallery token that opens them.

The participant and the matches are written as enrollment and a worker would leave them (the
selfie and the face search are not what these tests are about).
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
from tests.test_api import seed_match


@dataclass
class SeededGallery:
    event: events.Event
    token: str
    participant_id: int
    photo_ids: dict[str, int]  # file name -> photo id


def seed_gallery(
    settings: config.Settings,
    engine: Engine,
    folder: Path,
    filenames: list[str],
    slug: str = "gala-2026",
) -> SeededGallery:
    event = events.create_event(
        engine, slug, title="Charity Gala", date="2026-05-03", retention_days=60
    )
    for seed, name in enumerate(filenames):
        write_photo(folder / name, seed=seed)
    ingest_paths(engine, settings, [str(folder)], event_id=event.id)
    assert drain_in_process(settings, "none").failed == 0
    with db.read(engine) as conn:
        photo_ids = dict(conn.execute(select(Photo.filename, Photo.id)).all())
    token = users.new_token()
    with db.write(engine) as conn:
        participant_id = participant_store.insert_participant(
            conn,
            event_id=event.id,
            name="p-ann",
            token_hash=users.hash_token(users.new_token()),
            gallery_token_hash=users.hash_token(token),
            consent_version=event.consent_version,
            now=time.time(),
        )
    for photo_id in photo_ids.values():
        seed_match(engine, photo_id, participant_id)
    return SeededGallery(event, token, participant_id, photo_ids)
