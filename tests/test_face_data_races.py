"""Face data written while it is being deleted stays deleted: purge, erasure, "not me".

A worker reads its photo's event and the enrolled users when its job starts; a purge, an
erasure or a "not me" may come at any moment after that, from another process. A purge before
the step's pending checkpoint, between it and IndexFaces (whose call then re-creates the
collection the purge deleted), after IndexFaces, or between storing the faces and the matches:
once both are over the event has no face, selfie or match row and no collection, and the job is
done. The same holds for an enrollment. A participant erased while a photo is matched gets no
match from it, and one erased while adding a selfie keeps none of it; a "not me" is never
undone by a match stored at the same moment.

The moment is chosen by running the purge or the erasure from inside the engine method the step
calls at that point, as another process would have, with an engine of its own; overlapping
transactions are held open in a thread. Faces are colour squares on the local fake Rekognition
endpoint (no dlib).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select

from photoctl import config, db, event_store, events, face_store, faces, participants, queue, users
from photoctl.errors import PermanentError
from photoctl.faces.base import FaceMatch, FaceRecord
from photoctl.faces.rekognition import RekognitionEngine
from photoctl.ingest import ingest_paths
from photoctl.models import Face, Match, Photo, Rejection, SelfieFace, User
from photoctl.worker import drain_in_process
from testkit.fake_rekognition import AWS_ENV
from tests.support.cli import photoctl_env, run_photoctl
from tests.support.colour_faces import face_photo
from tests.support.worker import start_photoctl, wait_for

RED, BLUE = (255, 0, 0), (0, 0, 255)
SLUG = "run"
PHOTOS = 100
COLLECTION = f"photoctl-{SLUG}"


@pytest.fixture
def purger(rekognition_settings, engine) -> RekognitionEngine:
    """The engine of the operator's `events purge`, another process's in real life."""
    made = faces.make_engine("rekognition", rekognition_settings, engine)
    assert isinstance(made, RekognitionEngine)
    return made


@pytest.fixture
def enrolled_red(tmp_path, rekognition_settings, engine, purger) -> participants.Enrolled:
    """An event with one participant (a red face) and its collection, before any photo."""
    events.create_event(engine, SLUG, title="Run", date=None, retention_days=30)
    selfie = face_photo(tmp_path / "selfies" / "red.jpg", [RED], size=(640, 480))
    return participants.enroll_participant(
        engine,
        purger,
        rekognition_settings,
        events.require_event(engine, SLUG),
        selfie,
        consented=True,
        access_code=None,
    )


@pytest.fixture
def purge_inside(
    monkeypatch: pytest.MonkeyPatch, engine, purger
) -> Iterator[Callable[[str, bool], None]]:
    """purge_inside(method, after): the next call of RekognitionEngine.<method> runs the purge
    before (or after) doing its own work, once."""
    fired: list[str] = []

    def arm(method: str, after: bool) -> None:
        original = getattr(RekognitionEngine, method)

        def wrapped(self, *args, **kwargs):
            if fired:
                return original(self, *args, **kwargs)
            fired.append(method)
            if not after:
                events.purge_event(engine, purger, SLUG)
            result = original(self, *args, **kwargs)
            if after:
                events.purge_event(engine, purger, SLUG)
            return result

        monkeypatch.setattr(RekognitionEngine, method, wrapped)

    yield arm
    assert fired, "the purge never ran: the step no longer calls the patched method"


def count(engine, model, *conditions) -> int:
    with db.read(engine) as conn:
        return conn.execute(select(func.count()).select_from(model).where(*conditions)).scalar()


def face_data_of_event(engine) -> dict[str, int]:
    event = events.require_event(engine, SLUG)
    photos = select(Photo.id).where(Photo.event_id == event.id)
    users_ = select(User.id).where(User.event_id == event.id)
    return {
        "faces": count(engine, Face, Face.photo_id.in_(photos)),
        "selfies": count(engine, SelfieFace, SelfieFace.user_id.in_(users_)),
        "matches": count(engine, Match, Match.user_id.in_(users_) | Match.photo_id.in_(photos)),
    }


@pytest.mark.parametrize(
    ("method", "after"),
    [
        ("for_event", True),  # after the job read its event, before the pending checkpoint
        ("index_photo_reporting", False),  # after the checkpoint: IndexFaces re-creates it
        ("index_photo_reporting", True),  # after IndexFaces, before the faces are stored
        ("match_enrolled", True),  # faces stored, matches not yet
    ],
    ids=["before-checkpoint", "before-index", "after-index", "before-matches"],
)
def test_a_purge_while_a_photo_is_processed_leaves_no_face_data_and_no_collection(
    method: str,
    after: bool,
    enrolled_red,
    purge_inside,
    rekognition_settings,
    engine,
    purger,
    tmp_path,
) -> None:
    assert COLLECTION in purger.client.list_collections()["CollectionIds"]
    face_photo(tmp_path / "photos" / "red.jpg", [RED], size=(700, 500))
    event = events.require_event(engine, SLUG)
    ingest_paths(engine, rekognition_settings, [str(tmp_path / "photos")], event_id=event.id)
    purge_inside(method, after)

    report = drain_in_process(rekognition_settings, "rekognition")

    assert (report.done, report.failed) == (1, 0), "the photo itself is fine: the job is done"
    assert face_data_of_event(engine) == {"faces": 0, "selfies": 0, "matches": 0}
    assert COLLECTION not in purger.client.list_collections()["CollectionIds"]
    photos, _ = participants.participant_photos(engine, enrolled_red.participant.id, 100, None)
    assert photos == []


@pytest.mark.parametrize(
    ("method", "after"),
    [("index_selfie", True), ("match_selfie", True)],
    ids=["after-index", "before-matches"],
)
def test_a_purge_during_an_enrollment_keeps_none_of_the_selfie(
    method: str,
    after: bool,
    enrolled_red,
    purge_inside,
    rekognition_settings,
    engine,
    purger,
    tmp_path,
) -> None:
    face_photo(tmp_path / "photos" / "blue.jpg", [BLUE], size=(700, 500))
    event = events.require_event(engine, SLUG)
    ingest_paths(engine, rekognition_settings, [str(tmp_path / "photos")], event_id=event.id)
    assert drain_in_process(rekognition_settings, "rekognition").failed == 0
    selfie = face_photo(tmp_path / "selfies" / "blue.jpg", [BLUE], size=(640, 480))
    # The operator's `users enroll`, in its own process: an engine that is not the purger's.
    enroller = faces.make_engine("rekognition", rekognition_settings, engine)
    purge_inside(method, after)

    with pytest.raises(PermanentError, match="purged during the enrollment"):
        users.enroll_selfie(
            engine,
            enroller,
            rekognition_settings,
            enrolled_red.participant.id,
            selfie,
            replace=False,
        )

    assert face_data_of_event(engine) == {"faces": 0, "selfies": 0, "matches": 0}
    assert COLLECTION not in purger.client.list_collections()["CollectionIds"]


def test_a_purge_waits_for_a_face_write_that_asked_before_its_mark(
    engine, settings, tmp_path
) -> None:
    """The two transactions really overlap: the writer has asked and not yet committed when the
    purge starts. The purge's mark waits for the writer's commit (PostgreSQL: the share lock
    of takes_face_data; SQLite: the write lock), and its deletion then takes the new face."""
    events.create_event(engine, SLUG, title="Run", date=None, retention_days=30)
    face_photo(tmp_path / "photos" / "red.jpg", [RED], size=(700, 500))
    event = events.require_event(engine, SLUG)
    ingest_paths(engine, settings, [str(tmp_path / "photos")], event_id=event.id)
    with db.read(engine) as conn:
        photo_id = conn.execute(select(Photo.id).where(Photo.event_id == event.id)).scalar_one()
    asked, purge_done = threading.Event(), threading.Event()

    def purge() -> None:
        asked.wait(10)
        events.purge_event(engine, None, SLUG)
        purge_done.set()

    purging = threading.Thread(target=purge)
    purging.start()
    try:
        with db.write(engine) as conn:
            assert event_store.takes_face_data(conn, event.id)
            asked.set()
            time.sleep(0.5)  # the purge has started meanwhile, and waits
            assert not purge_done.is_set(), "the purge's mark did not wait for this write"
            face_store.store_faces(
                conn, photo_id, "local", [FaceRecord((0, 0, 0.2, 0.2), 0.9)], event_id=event.id
            )
    finally:
        purging.join(30)
    assert purge_done.is_set()
    assert face_data_of_event(engine)["faces"] == 0
    with db.read(engine) as conn:
        assert not event_store.takes_face_data(conn, event.id)


@pytest.fixture
def processed_red(enrolled_red, rekognition_settings, engine, tmp_path) -> tuple[int, int, int]:
    """A red photo of the event processed: (photo id, its face id, the participant's id), the
    participant matched in it."""
    face_photo(tmp_path / "photos" / "red.jpg", [RED], size=(700, 500))
    event = events.require_event(engine, SLUG)
    ingest_paths(engine, rekognition_settings, [str(tmp_path / "photos")], event_id=event.id)
    assert drain_in_process(rekognition_settings, "rekognition").failed == 0
    user_id = enrolled_red.participant.id
    with db.read(engine) as conn:
        photo_id, face_id = conn.execute(
            select(Match.photo_id, Match.face_id).where(Match.user_id == user_id)
        ).one()
    return photo_id, face_id, user_id


def hold_open(engine, write: Callable, seconds: float) -> threading.Thread:
    """Run ``write(conn)`` in a write transaction on a thread, and keep the transaction open
    ``seconds`` after it returns; the thread is returned once ``write`` has returned."""
    written = threading.Event()

    def run() -> None:
        with db.write(engine) as conn:
            write(conn)
            written.set()
            time.sleep(seconds)

    thread = threading.Thread(target=run)
    thread.start()
    assert written.wait(30)
    return thread


def test_a_participant_erased_while_a_photo_is_matched_gets_no_match_from_it(
    enrolled_red, monkeypatch, rekognition_settings, engine, purger, tmp_path
) -> None:
    """The erasure lands after the step read who is enrolled, before it stores the matches."""
    user_id = enrolled_red.participant.id
    original = RekognitionEngine.match_enrolled

    def match_then_erase(self, *args, **kwargs):
        matches = original(self, *args, **kwargs)
        assert [m.user_id for m in matches] == [user_id]
        participants.erase_participant(engine, purger, rekognition_settings, user_id)
        return matches

    monkeypatch.setattr(RekognitionEngine, "match_enrolled", match_then_erase)
    face_photo(tmp_path / "photos" / "red.jpg", [RED], size=(700, 500))
    event = events.require_event(engine, SLUG)
    ingest_paths(engine, rekognition_settings, [str(tmp_path / "photos")], event_id=event.id)

    assert drain_in_process(rekognition_settings, "rekognition").failed == 0

    assert count(engine, Match, Match.user_id == user_id) == 0
    assert count(engine, SelfieFace, SelfieFace.user_id == user_id) == 0


def test_an_erasure_waits_for_a_match_write_in_progress_and_then_removes_its_match(
    processed_red, rekognition_settings, engine, purger
) -> None:
    photo_id, face_id, user_id = processed_red
    with db.write(engine) as conn:  # the match is about to be stored (again), as by a rerun
        conn.execute(Match.__table__.delete().where(Match.user_id == user_id))
    stored: list[list[int]] = []
    writer = hold_open(
        engine,
        lambda conn: stored.append(
            face_store.store_matches(conn, [FaceMatch(face_id, user_id, 99.0)])
        ),
        0.5,
    )
    try:
        participants.erase_participant(engine, purger, rekognition_settings, user_id)
    finally:
        writer.join(30)

    assert stored == [[user_id]], "the write stored its match before the erasure's deletion"
    assert count(engine, Match, Match.user_id == user_id) == 0


def test_not_me_is_not_undone_by_a_match_stored_at_the_same_moment(processed_red, engine) -> None:
    photo_id, face_id, user_id = processed_red
    rejecting = hold_open(
        engine, lambda conn: face_store.reject_match(conn, user_id, photo_id, time.time()), 0.5
    )
    try:
        with db.write(engine) as conn:  # a rerun of the photo's job stores its match
            gained = face_store.store_matches(conn, [FaceMatch(face_id, user_id, 99.0)])
    finally:
        rejecting.join(30)

    assert gained == []
    assert count(engine, Match, Match.user_id == user_id) == 0
    assert count(engine, Rejection, Rejection.user_id == user_id) == 1


def test_a_participant_erased_while_adding_a_selfie_keeps_none_of_it(
    enrolled_red, monkeypatch, rekognition_settings, engine, purger, tmp_path
) -> None:
    """The erasure lands after IndexFaces indexed the new selfie, before it is stored: neither
    the database nor the collection keeps it."""
    user_id = enrolled_red.participant.id
    original = RekognitionEngine.index_selfie

    def index_then_erase(self, *args, **kwargs):
        record = original(self, *args, **kwargs)
        participants.erase_participant(engine, purger, rekognition_settings, user_id)
        return record

    monkeypatch.setattr(RekognitionEngine, "index_selfie", index_then_erase)
    selfie = face_photo(tmp_path / "selfies" / "red-again.jpg", [RED], size=(640, 480))
    enroller = faces.make_engine("rekognition", rekognition_settings, engine)

    with pytest.raises(PermanentError, match="erased or deleted during the enrollment"):
        participants.add_selfie(engine, enroller, rekognition_settings, user_id, selfie)

    assert count(engine, SelfieFace, SelfieFace.user_id == user_id) == 0
    indexed = purger.client.list_faces(CollectionId=COLLECTION, MaxResults=4096)["Faces"]
    assert [f for f in indexed if f.get("ExternalImageId", "").endswith(f"-{user_id}")] == []


def test_a_selfie_stored_while_its_participant_is_erased_leaves_the_collection_too(
    enrolled_red, monkeypatch, rekognition_settings, engine, purger, tmp_path
) -> None:
    """The selfie commits after the erasure read which faces to forget, before its deletion:
    the erasure finds it under the participant's row lock and forgets it as well."""
    user_id = enrolled_red.participant.id
    selfie = face_photo(tmp_path / "selfies" / "red-again.jpg", [RED], size=(640, 480))
    enroller = faces.make_engine("rekognition", rekognition_settings, engine)
    original = RekognitionEngine.forget
    added: list[int] = []

    def forget_then_add_a_selfie(self, external_ids):
        original(self, external_ids)
        if not added:
            added.append(
                users.enroll_selfie(
                    engine, enroller, rekognition_settings, user_id, selfie, replace=False
                )
            )

    monkeypatch.setattr(RekognitionEngine, "forget", forget_then_add_a_selfie)

    participants.erase_participant(engine, purger, rekognition_settings, user_id)

    assert added, "the selfie was stored in the window"
    assert count(engine, SelfieFace, SelfieFace.user_id == user_id) == 0
    indexed = purger.client.list_faces(CollectionId=COLLECTION, MaxResults=4096)["Faces"]
    assert [f for f in indexed if f.get("ExternalImageId", "").endswith(f"-{user_id}")] == []


def test_a_purge_and_an_erasure_at_the_same_moment_both_finish(
    processed_red, monkeypatch, rekognition_settings, engine, purger
) -> None:
    """Each takes the users' rows before their face data. In opposite orders (the purge used
    to delete matches first) PostgreSQL found a deadlock and failed one of them."""
    _, _, user_id = processed_red
    marked = threading.Event()
    original = face_store.delete_user_face_data

    def marked_then_slow(conn, erased_user_id):
        marked.set()  # the erasure holds the participant's row now
        time.sleep(0.5)  # the purge starts meanwhile
        return original(conn, erased_user_id)

    monkeypatch.setattr(face_store, "delete_user_face_data", marked_then_slow)
    failures: list[BaseException] = []

    def erase() -> None:
        try:
            participants.erase_participant(engine, purger, rekognition_settings, user_id)
        except BaseException as error:  # reported below, on the test's thread
            failures.append(error)

    erasing = threading.Thread(target=erase)
    erasing.start()
    try:
        assert marked.wait(30)
        report = events.purge_event(engine, purger, SLUG)
    finally:
        erasing.join(30)

    assert failures == []
    assert report.first_purge
    assert face_data_of_event(engine) == {"faces": 0, "selfies": 0, "matches": 0}


def test_an_index_a_racing_worker_could_not_delete_again_goes_at_the_next_purge_expired(
    enrolled_red, monkeypatch, fake, rekognition_settings, engine, purger, tmp_path
) -> None:
    """The purge lands before IndexFaces, which re-creates the collection, and the worker's
    second DeleteCollection is refused: the job is still done, and the daily `events purge
    --expired` finds the collection (one ListCollections) and deletes it."""
    original = RekognitionEngine.index_photo_reporting

    def purge_then_index(self, *args, **kwargs):
        if not fake.calls("DeleteCollection"):
            events.purge_event(engine, purger, SLUG)
            fake.fail_next(1, "AccessDeniedException", status=400, operation="DeleteCollection")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RekognitionEngine, "index_photo_reporting", purge_then_index)
    face_photo(tmp_path / "photos" / "red.jpg", [RED], size=(700, 500))
    event = events.require_event(engine, SLUG)
    ingest_paths(engine, rekognition_settings, [str(tmp_path / "photos")], event_id=event.id)

    report = drain_in_process(rekognition_settings, "rekognition")

    assert (report.done, report.failed) == (1, 0)
    assert face_data_of_event(engine) == {"faces": 0, "selfies": 0, "matches": 0}
    assert COLLECTION in purger.client.list_collections()["CollectionIds"], "left behind"
    closed = events.close_event(engine, SLUG)
    past_retention = closed.closed_at + 31 * 86400
    assert events.expired_events(engine, now=past_retention) == [], "no row tells"
    due = events.expired_events(engine, now=past_retention, face_engine=purger)
    assert [e.slug for e in due] == [SLUG]
    events.purge_event(engine, purger, SLUG)
    assert COLLECTION not in purger.client.list_collections()["CollectionIds"]


@pytest.mark.slow
def test_a_purge_in_the_middle_of_a_real_work_run_leaves_no_face_data(
    tmp_path, db_url, fake
) -> None:
    """The same through the real CLI, processes and database: whichever moment each job is at
    when `events purge` lands, once `work` ends nothing of the event's face data is left, in the
    database or in Rekognition, and every job is done."""
    env = photoctl_env(
        tmp_path,
        db_url,
        **AWS_ENV,
        PHOTOCTL_FACES_ENGINE="rekognition",
        PHOTOCTL_REKOGNITION_ENDPOINT_URL=fake.endpoint_url,
        PHOTOCTL_REKOGNITION_MAX_TPS="50",
        PHOTOCTL_INGEST_SETTLE_SECONDS="0",
    )
    selfie = face_photo(tmp_path / "red.jpg", [RED], size=(640, 480))
    assert run_photoctl(["users", "add", "red", "--selfie", str(selfie)], env).returncode == 0
    for index in range(PHOTOS):
        colours = [RED, BLUE] if index % 2 else [BLUE]
        size = (400 + index, 300)  # one photo each, not one content ingested once
        face_photo(tmp_path / "photos" / f"IMG_{index:03d}.jpg", colours, size=size)
    assert run_photoctl(["ingest", str(tmp_path / "photos")], env).returncode == 0
    fake.latency_seconds = 0.1  # a run of seconds, so that the purge lands in its middle
    work = start_photoctl(["work", "-n", "2", "--until-empty"], env, tmp_path, "work")
    try:
        wait_for(lambda: fake.processed.count("IndexFaces") >= 12, 60, "12 photos indexed")
        purge = run_photoctl(["events", "purge", "default", "--yes"], env)
        assert purge.returncode == 0, purge.stderr[-3000:]
        assert work.wait(120) == 0, work.stderr()[-3000:]
    finally:
        work.kill()

    check = db.make_engine(config.load(environ={}, overrides={"database.url": db_url}))
    try:
        with db.read(check) as conn:
            states = {k: v for k, v in queue.count_by_state(conn).items() if v}
            kept = {
                model.__tablename__: conn.execute(select(func.count()).select_from(model)).scalar()
                for model in (Face, SelfieFace, Match)
            }
    finally:
        check.dispose()
    assert states == {"done": PHOTOS}
    assert kept == {"faces": 0, "selfie_faces": 0, "matches": 0}
    assert fake.processed.count("IndexFaces") < PHOTOS + 1, "photos after the purge got none"
    assert "photoctl" not in fake.client().list_collections()["CollectionIds"]
