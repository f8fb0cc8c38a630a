"""Matching a photo with Rekognition in the fewest calls (issue 11, item 5), on SQLite and
PostgreSQL with real boto3 against the fake endpoint: each photo takes one SearchFaces per new
face or one per enrolled selfie of its event (a sweep), whichever is fewer, and both ways find
the same matches."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from photoctl import db, events, face_store, faces, participants
from photoctl.faces import rekognition_matching
from photoctl.faces.rekognition_matching import match_photo_faces, searches_for
from photoctl.ingest import ingest_paths
from photoctl.models import Photo
from photoctl.worker import drain_in_process
from testkit.fake_rekognition import PALETTE
from tests.support.colour_faces import face_photo

RED, BLUE = (255, 0, 0), (0, 0, 255)


@pytest.mark.parametrize(
    ("new_faces", "enrolled", "expected"),
    [
        (1, 1000, ("by_face", 1)),
        (30, 5, ("sweep", 5)),
        (3, 3, ("by_face", 3)),
        (0, 10, ("none", 0)),
        (10, 0, ("none", 0)),
    ],
)
def test_each_photo_takes_the_way_with_fewer_search_calls(new_faces, enrolled, expected) -> None:
    assert searches_for(new_faces, enrolled) == expected


def test_a_crowd_photo_is_swept_by_participant_and_finds_what_a_search_by_face_finds(
    settings, engine, fake, aws, tmp_path, monkeypatch
) -> None:
    rk_settings = settings.replace(
        "rekognition", endpoint_url=fake.endpoint_url, region="eu-west-1", max_tps=100.0
    )
    run = events.create_event(engine, "run", title="Run", date=None, retention_days=30)
    rekognition = faces.make_engine("rekognition", rk_settings, engine)
    enrolled = {}
    for name, colour in (("red", RED), ("blue", BLUE)):
        selfie = face_photo(tmp_path / "selfies" / f"{name}.jpg", [colour], (640, 480))
        enrolled[name] = participants.enroll_participant(
            engine, rekognition, rk_settings, run, selfie, consented=True, access_code=None
        ).participant.id
    crowd = [RED, BLUE, *PALETTE[5:8]]  # five faces, two of them enrolled
    face_photo(tmp_path / "run" / "crowd.jpg", crowd, (1400, 700))
    face_photo(tmp_path / "run" / "red.jpg", [RED], (900, 600))
    face_photo(tmp_path / "run" / "nobody.jpg", [PALETTE[9]], (950, 600))
    ingest_paths(engine, rk_settings, [str(tmp_path / "run")], event_id=run.id)
    fake.reset_stats()
    assert drain_in_process(rk_settings, "rekognition").failed == 0

    # crowd: 2 sweeps instead of 5 searches; red and nobody: one search by face each.
    assert len(fake.calls("SearchFaces")) == 2 + 1 + 1
    with db.read(engine) as conn:
        names = dict(conn.execute(select(Photo.id, Photo.filename)).all())
        found = {
            (names[photo_id], user_id)
            for user_id in enrolled.values()
            for photo_id, _ in face_store.photos_of_user(conn, user_id)
        }
    assert found == {
        ("crowd.jpg", enrolled["red"]),
        ("crowd.jpg", enrolled["blue"]),
        ("red.jpg", enrolled["red"]),
    }

    # The same matches, similarity included, either way, for every photo.
    event_engine = rekognition.for_event("run")
    with db.read(engine) as conn:
        selfies = face_store.enrolled_faces(conn, "rekognition", run.id)
        stored = {pid: face_store.photo_faces(conn, pid, "rekognition") for pid in names}
    for photo_faces in stored.values():
        ways = {}
        for way in ("sweep", "by_face"):
            monkeypatch.setattr(
                rekognition_matching, "searches_for", lambda n, e, way=way: (way, 0)
            )
            ways[way] = match_photo_faces(
                event_engine._call, event_engine.collection_id, 90.0, photo_faces, selfies
            )
        assert ways["sweep"] == ways["by_face"]
