"""Events and participants end to end, on SQLite and PostgreSQL, with the Rekognition engine
against the local fake endpoint (faces are colour squares there, so no dlib is needed).

What issue 10 asks of the backend: matching never crosses events (one collection per event),
"not me" never comes back, another selfie adds recall, a participant's erasure and an event's
purge remove every face, embedding, selfie and match (purge: DeleteCollection too), leave the
photos, can run twice, and the audit log shows each step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from photoctl import audit, db, events, faces, participants, users
from photoctl.errors import PermanentError, SeveralFaces
from photoctl.ingest import ingest_paths
from photoctl.models import AuditAction, AuditEntry, Face, Match, Photo, Rejection, SelfieFace, User
from photoctl.worker import drain_in_process
from tests.support.colour_faces import face_photo

RED, BLUE, GREEN, YELLOW = (255, 0, 0), (0, 0, 255), (0, 153, 0), (255, 204, 0)


@pytest.fixture
def rekognition(rekognition_settings, engine):
    return faces.make_engine("rekognition", rekognition_settings, engine)


def ingest_event(engine, settings, folder: Path, slug: str) -> None:
    event = events.require_event(engine, slug)
    ingest_paths(engine, settings, [str(folder)], event_id=event.id)
    assert drain_in_process(settings, "rekognition").failed == 0


def photo_names(engine, participant_id: int) -> set[str]:
    items, _ = participants.participant_photos(engine, participant_id, 100, None)
    return {item.filename for item in items}


def count(engine, model, *conditions) -> int:
    with db.read(engine) as conn:
        return conn.execute(select(func.count()).select_from(model).where(*conditions)).scalar()


def collections(rekognition) -> set[str]:
    return set(rekognition.client.list_collections()["CollectionIds"])


@pytest.fixture
def two_events(tmp_path, rekognition_settings, engine):
    """Red runs and swims; blue only runs, green only swims. Photos of both events."""
    events.create_event(engine, "run", title="Run", date="2026-05-03", retention_days=30)
    events.create_event(engine, "swim", title="Swim", date=None, retention_days=30)
    run, swim = tmp_path / "run", tmp_path / "swim"
    face_photo(run / "run-red-blue.jpg", [RED, BLUE])
    face_photo(run / "run-red.jpg", [RED])
    face_photo(run / "run-blue.jpg", [BLUE], size=(820, 600))
    face_photo(swim / "swim-red-green.jpg", [RED, GREEN])
    face_photo(swim / "swim-red.jpg", [RED], size=(900, 600))
    ingest_event(engine, rekognition_settings, run, "run")
    ingest_event(engine, rekognition_settings, swim, "swim")
    for colour, name in ((RED, "red"), (BLUE, "blue"), (GREEN, "green"), (YELLOW, "yellow")):
        face_photo(tmp_path / "selfies" / f"{name}.jpg", [colour], size=(640, 480))
    face_photo(tmp_path / "selfies" / "red-and-blue.jpg", [RED, BLUE], size=(640, 480))
    return tmp_path / "selfies"


def enroll(engine, rekognition, settings, slug: str, selfie: Path, code: str | None = None):
    return participants.enroll_participant(
        engine,
        rekognition,
        settings,
        events.require_event(engine, slug),
        selfie,
        consented=True,
        access_code=code,
    )


def test_matching_never_crosses_events_in_either_direction(
    two_events, rekognition_settings, engine, rekognition, tmp_path
) -> None:
    selfies = two_events
    red_runner = enroll(engine, rekognition, rekognition_settings, "run", selfies / "red.jpg")
    red_swimmer = enroll(engine, rekognition, rekognition_settings, "swim", selfies / "red.jpg")
    assert red_runner.matched_photos == 2
    assert photo_names(engine, red_runner.participant.id) == {"run-red-blue.jpg", "run-red.jpg"}
    assert photo_names(engine, red_swimmer.participant.id) == {
        "swim-red-green.jpg",
        "swim-red.jpg",
    }
    # New photos after enrollment: matched only within their own event, too.
    face_photo(tmp_path / "run2" / "run-late-red.jpg", [RED], size=(1000, 700))
    ingest_event(engine, rekognition_settings, tmp_path / "run2", "run")
    assert "run-late-red.jpg" in photo_names(engine, red_runner.participant.id)
    assert "run-late-red.jpg" not in photo_names(engine, red_swimmer.participant.id)
    photo_side = [
        ({**e.detail, "worker": "-"}, e.actor)
        for e in events.event_audit(engine, "run")
        if e.action == "matches" and e.participant_id is None
    ]
    assert photo_side == [({"source": "photo", "users": 1, "worker": "-"}, "worker")], (
        "matches made by a worker, counted and credited to it"
    )
    # One collection per event; the default event keeps the configured one.
    assert {"photoctl-run", "photoctl-swim"} <= collections(rekognition)
    # The gallery token finds its participant; it is stored only as a hash.
    found = participants.participant_by_token(engine, red_runner.gallery_token)
    assert found == red_runner.participant
    with db.read(engine) as conn:
        hashes = conn.execute(select(User.gallery_token_hash)).scalars().all()
    assert red_runner.gallery_token not in hashes
    assert participants.processing_count(engine, red_runner.participant.event_id) == 0


def test_enrollment_refuses_without_consent_wrong_code_closed_event_or_a_crowd_selfie(
    two_events, rekognition_settings, engine, rekognition
) -> None:
    selfies = two_events
    events.create_event(
        engine, "gala", title="Gala", date=None, retention_days=5, access_code="ab12-cd34"
    )
    gala = events.require_event(engine, "gala")
    assert gala.requires_access_code

    def attempt(slug: str, *, consented: bool = True, code: str | None = None, selfie="red.jpg"):
        return participants.enroll_participant(
            engine,
            rekognition,
            rekognition_settings,
            events.require_event(engine, slug),
            selfies / selfie,
            consented=consented,
            access_code=code,
        )

    with pytest.raises(participants.ConsentRequired):
        attempt("run", consented=False)
    with pytest.raises(participants.WrongAccessCode):
        attempt("gala")
    with pytest.raises(participants.WrongAccessCode):
        attempt("gala", code="wrong")
    with pytest.raises(SeveralFaces):
        attempt("run", selfie="red-and-blue.jpg")
    assert count(engine, User) == 0, "a refused enrollment leaves nobody behind"
    assert count(engine, SelfieFace) == 0
    assert attempt("gala", code=" AB12 cd34 ").matched_photos == 0  # case, spaces, dashes
    events.close_event(engine, "run")
    with pytest.raises(participants.EventClosed):
        attempt("run")


def test_not_me_never_comes_back_and_another_selfie_adds_recall(
    two_events, rekognition_settings, engine, rekognition
) -> None:
    selfies = two_events
    red = enroll(engine, rekognition, rekognition_settings, "run", selfies / "red.jpg")
    pid = red.participant.id
    with db.read(engine) as conn:
        ids = dict(conn.execute(select(Photo.filename, Photo.id)).all())
    assert participants.not_me(engine, pid, ids["run-red-blue.jpg"])
    assert not participants.not_me(engine, pid, ids["run-red-blue.jpg"]), "no match any more"
    assert not participants.not_me(engine, pid, ids["swim-red.jpg"]), "never matched"
    assert photo_names(engine, pid) == {"run-red.jpg"}
    assert participants.participant_photo(engine, pid, ids["run-red-blue.jpg"]) is None
    assert participants.participant_photo(engine, pid, ids["run-red.jpg"]) is not None
    # A second selfie (blue: think of it as the same person in other light) adds its photos,
    # keeps the first selfie, and the rejected photo stays rejected.
    added = participants.add_selfie(
        engine, rekognition, rekognition_settings, pid, selfies / "blue.jpg"
    )
    assert added == 1
    assert photo_names(engine, pid) == {"run-red.jpg", "run-blue.jpg"}
    assert count(engine, SelfieFace, SelfieFace.user_id == pid) == 2
    assert count(engine, Rejection, Rejection.user_id == pid) == 1
    # Processing the photo again (its job retried) does not bring the match back either.
    with db.write(engine) as conn:
        conn.execute(Match.__table__.delete())
    from photoctl.catalog import get_photo
    from photoctl.face_step import EngineFaceStep

    step = EngineFaceStep(engine, rekognition)
    with db.read(engine) as conn:
        record = get_photo(conn, ids["run-red-blue.jpg"])
    assert record is not None
    step.run(record, None)  # type: ignore[arg-type]  # checkpointed: no image is decoded
    assert count(engine, Match, Match.user_id == pid) == 0


def test_erasing_a_participant_removes_their_face_data_everywhere_and_keeps_the_tombstone(
    two_events, rekognition_settings, engine, rekognition
) -> None:
    selfies = two_events
    red = enroll(engine, rekognition, rekognition_settings, "run", selfies / "red.jpg")
    blue = enroll(engine, rekognition, rekognition_settings, "run", selfies / "blue.jpg")
    pid = red.participant.id
    selfie_ids = {f["FaceId"] for f in fake_faces(rekognition, "photoctl-run", f"user-{pid}")}
    assert len(selfie_ids) == 1
    participants.erase_participant(engine, rekognition, rekognition_settings, pid)
    participants.erase_participant(engine, rekognition, rekognition_settings, pid)  # a no-op
    assert fake_faces(rekognition, "photoctl-run", f"user-{pid}") == []
    for model in (SelfieFace, Match, Rejection):
        assert count(engine, model, model.user_id == pid) == 0
    after = participants.participant_by_token(engine, red.gallery_token)
    assert after is not None and after.erased_at is not None and after.erased_by == "participant"
    assert photo_names(engine, blue.participant.id) == {"run-red-blue.jpg", "run-blue.jpg"}
    with pytest.raises(participants.ParticipantErased):
        participants.add_selfie(engine, rekognition, rekognition_settings, pid, selfies / "red.jpg")
    actions = [e.action for e in events.event_audit(engine, "run") if e.participant_id == pid]
    assert actions == ["consent", "enroll", "matches", "erase"]
    # The log holds counts and versions: no token (nor its hash), no embedding.
    with db.read(engine) as conn:
        logged = " ".join(
            str(value) for row in conn.execute(select(AuditEntry.__table__)) for value in row
        )
    for secret in (red.gallery_token, users.hash_token(red.gallery_token), blue.gallery_token):
        assert secret not in logged
    with pytest.raises(ValueError):
        with db.write(engine) as conn:
            audit.record(conn, 1, AuditAction.ERASE, gallery_token="x")


def fake_faces(rekognition, collection: str, external_id: str) -> list[dict]:
    answer = rekognition.client.list_faces(CollectionId=collection, MaxResults=4096)
    return [f for f in answer["Faces"] if f.get("ExternalImageId") == external_id]


def test_purge_removes_every_face_of_the_event_and_its_collection_leaves_photos_and_repeats(
    two_events, rekognition_settings, engine, rekognition, fake, tmp_path
) -> None:
    selfies = two_events
    runner = enroll(engine, rekognition, rekognition_settings, "run", selfies / "red.jpg")
    swimmer = enroll(engine, rekognition, rekognition_settings, "swim", selfies / "red.jpg")
    with db.read(engine) as conn:
        ids = dict(conn.execute(select(Photo.filename, Photo.id)).all())
    assert participants.not_me(engine, runner.participant.id, ids["run-red.jpg"])
    run = events.require_event(engine, "run")
    photos_before = count(engine, Photo)
    swim_faces = count(engine, Face, Face.photo_id.in_([ids["swim-red.jpg"]]))

    report = events.purge_event(engine, rekognition, "run")

    assert report.first_purge and report.collection_deleted
    assert report.counts["faces"] == 4 and report.counts["selfies"] == 1
    assert report.counts["matches"] == 1 and report.counts["rejections"] == 1
    assert report.counts["participants_erased"] == 1
    assert [c.operation for c in fake.calls("DeleteCollection")] == ["DeleteCollection"]
    assert "photoctl-run" not in collections(rekognition)
    assert "photoctl-swim" in collections(rekognition)
    run_photos = select(Photo.id).where(Photo.event_id == run.id)
    assert count(engine, Face, Face.photo_id.in_(run_photos)) == 0
    run_users = select(User.id).where(User.event_id == run.id)
    for model in (SelfieFace, Match, Rejection):
        assert count(engine, model, model.user_id.in_(run_users)) == 0
    assert count(engine, Photo) == photos_before, "photos stay"
    assert count(engine, Face, Face.photo_id.in_([ids["swim-red.jpg"]])) == swim_faces
    assert photo_names(engine, swimmer.participant.id) == {"swim-red-green.jpg", "swim-red.jpg"}
    purged = events.require_event(engine, "run")
    assert purged.face_data_deleted_on is not None
    tombstone = participants.participant_by_token(engine, runner.gallery_token)
    assert tombstone is not None and tombstone.erased_by == "purge"
    with pytest.raises(participants.EventClosed):
        enroll(engine, rekognition, rekognition_settings, "run", selfies / "blue.jpg")
    with pytest.raises(PermanentError, match="purged"):  # the path `users enroll` takes too
        users.enroll_selfie(
            engine, rekognition, rekognition_settings, runner.participant.id, selfies / "blue.jpg"
        )

    again = events.purge_event(engine, rekognition, "run")
    assert not again.first_purge
    assert all(value == 0 for value in again.counts.values())
    assert events.require_event(engine, "run").purged_at == purged.purged_at

    # A photo that reaches the purged event later gets no faces (nobody can enroll there).
    face_photo(tmp_path / "late" / "late-red.jpg", [RED], size=(700, 500))
    ingest_event(engine, rekognition_settings, tmp_path / "late", "run")
    assert count(engine, Face, Face.photo_id.in_(run_photos)) == 0
    actions = [e.action for e in events.event_audit(engine, "run")]
    assert actions == [
        "event_create",
        "consent",
        "enroll",
        "matches",
        "not_me",
        "purge",
    ], "the repeated purge found nothing and wrote nothing"
    purge_entry = events.event_audit(engine, "run")[-1]
    assert purge_entry.detail["faces"] == 4 and purge_entry.participant_id is None


def test_expired_events_are_those_past_retention_and_not_purged(engine) -> None:
    events.create_event(engine, "old", title="Old", date="2020-01-01", retention_days=30)
    events.create_event(engine, "soon", title="Soon", date="2999-01-01", retention_days=30)
    events.create_event(engine, "undated", title="Undated", date=None, retention_days=1)
    assert [e.slug for e in events.expired_events(engine)] == ["old"]
    closed = events.close_event(engine, "undated")
    assert closed.closed_at is not None
    later = closed.closed_at + 2 * 86400
    assert [e.slug for e in events.expired_events(engine, now=later)] == ["old", "undated"]
    events.purge_event(engine, None, "old")
    assert [e.slug for e in events.expired_events(engine, now=later)] == ["undated"]
    # The default event has no date and is open: it never expires by itself.
    assert "default" not in [e.slug for e in events.expired_events(engine, now=later * 2)]


def _seed_photo_with_face(engine, event_id: int, name: str, embedding: bytes) -> int:
    with db.write(engine) as conn:
        photo_id = conn.execute(
            Photo.__table__.insert()
            .values(
                content_hash=name.ljust(64, "0"),
                source_path=f"/nowhere/{name}".encode(),
                filename=name,
                size_bytes=1,
                ingested_at=0.0,
                processed_at=1.0,
                faces_engine="local",  # checkpointed: the step reuses the stored face
                event_id=event_id,
            )
            .returning(Photo.__table__.c.id)
        ).scalar_one()
        conn.execute(
            Face.__table__.insert().values(
                photo_id=photo_id, engine="local", face_index=0, box_left=0.1, box_top=0.1,
                box_width=0.2, box_height=0.2, score=0.99, embedding=embedding,
            )
        )  # fmt: skip
    return photo_id


def test_local_engine_matching_never_crosses_events_with_seeded_embeddings(engine) -> None:
    """The same face in two events' photos and two events' selfies: each side finds only its
    own event, whether the photo is processed after the enrollment or the other way round."""
    import numpy as np

    from photoctl.catalog import get_photo
    from photoctl.face_step import EngineFaceStep, StoredFaces
    from photoctl.faces.base import EnrolledFace
    from photoctl.faces.local import LocalEngine

    face = np.full(128, 0.05, dtype="<f4").tobytes()
    first = events.create_event(engine, "first", title="First", date=None, retention_days=9)
    second = events.create_event(engine, "second", title="Second", date=None, retention_days=9)
    photo_ids = {
        event.slug: _seed_photo_with_face(engine, event.id, f"{event.slug}.jpg", face)
        for event in (first, second)
    }
    user_ids = {}
    for event in (first, second):
        user_id, _ = users.add_user(engine, f"user-of-{event.slug}")
        with db.write(engine) as conn:
            conn.execute(
                User.__table__.update().where(User.id == user_id).values(event_id=event.id)
            )
            conn.execute(
                SelfieFace.__table__.insert().values(
                    user_id=user_id, engine="local", embedding=face, created_at=0.0
                )
            )
        user_ids[event.slug] = user_id
    local = LocalEngine()
    step = EngineFaceStep(engine, local)
    for slug, photo_id in photo_ids.items():
        with db.read(engine) as conn:
            record = get_photo(conn, photo_id)
        assert record is not None
        summary = step.run(record, None)  # type: ignore[arg-type]  # checkpointed: no decode
        assert summary.user_ids == (user_ids[slug],)
    for event in (first, second):
        selfie = EnrolledFace(user_ids[event.slug], face, None)
        found = local.match_selfie(selfie, StoredFaces(engine, event.id))
        assert [m.face_id for m in found] == [
            f.id for f in StoredFaces(engine, event.id).all_faces("local")
        ]
        assert len(found) == 1
    with db.read(engine) as conn:
        pairs = set(conn.execute(select(Match.photo_id, Match.user_id)).all())
    assert pairs == {(photo_ids[s], user_ids[s]) for s in ("first", "second")}
