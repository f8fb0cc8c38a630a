"""One real end-to-end run with the local engine (dlib) and the faces of tests/data: two events,
the same person in both, each participant finds only their own event's photo. Kept to one test:
tests/test_events.py checks the rest with the fake Rekognition endpoint and seeded embeddings."""

from __future__ import annotations

import shutil
from pathlib import Path

from photoctl import events, faces, participants
from photoctl.ingest import ingest_paths
from photoctl.worker import drain_in_process
from testkit.photos import settle

DATA = Path(__file__).parent / "data"


def test_participants_of_two_events_find_only_their_own_photos_with_the_local_engine(
    settings, engine, tmp_path
) -> None:
    local = faces.make_engine("local", settings, engine)
    assert local is not None
    for slug, photos in (("gala", ["obama_2.jpg"]), ("summit", ["obama_3.jpg", "biden.jpg"])):
        event = events.create_event(engine, slug, title=slug, date=None, retention_days=7)
        folder = tmp_path / slug
        folder.mkdir()
        for name in photos:
            shutil.copy(DATA / name, folder / name)
            settle(folder / name)
        ingest_paths(engine, settings, [str(folder)], event_id=event.id)
    assert drain_in_process(settings, "local").failed == 0
    found = {}
    for slug in ("gala", "summit"):
        enrolled = participants.enroll_participant(
            engine,
            local,
            settings,
            events.require_event(engine, slug),
            DATA / "obama_1.jpg",
            consented=True,
            access_code=None,
        )
        items, _ = participants.participant_photos(engine, enrolled.participant.id, 10, None)
        found[slug] = {item.filename for item in items}
    assert found == {"gala": {"obama_2.jpg"}, "summit": {"obama_3.jpg"}}
