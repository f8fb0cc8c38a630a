"""A deletion made by one process is seen by every other process's vectors at once.

Serve holds the event's face embeddings and a running worker holds the event's selfies
(faces/vector_cache.py); both kept them between requests and photos. Here the deletions come
from other processes (`photoctl work` re-reading a changed photo, serve's erasure seen by the
worker), and what the holders answer next is checked from outside: an enrollment must not
match a face that is gone, and a photo must not be matched to an erased selfie (which would take
the match from the participant whose selfie is next nearest). Real selfies, local engine.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from PIL import Image
from sqlalchemy import Engine, func, insert, select

from photoctl import db, events, face_store
from photoctl.faces import vector_cache
from photoctl.faces.base import FaceRecord
from photoctl.models import Job, JobState, Photo
from testkit.photos import settle
from tests.support.cli import photoctl_env, run_photoctl, start_photoctl
from tests.support.serve import start_server, stop_server
from tests.support.worker import wait_for

DATA = Path(__file__).parent / "data"


def _ok(args: list[str], env: dict[str, str]) -> str:
    done = run_photoctl(args, env, timeout=240)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _enroll(client, slug: str, selfie: str) -> dict:
    with (DATA / selfie).open("rb") as image:
        answer = client.post(f"/api/e/{slug}", files={"selfie": image}, data={"consent": "true"})
    assert answer.status_code == 201, answer.text
    return answer.json()


def _reencoded(source: str, target: Path, quality: int) -> None:
    """The same picture with other bytes: a new photo (its own hash) of the same face."""
    with Image.open(DATA / source) as image:
        image.convert("RGB").save(target, quality=quality)
    settle(target)


def test_an_enrollment_never_matches_a_face_another_process_deleted(
    tmp_path: Path, db_url: str, engine: Engine
) -> None:
    env = photoctl_env(tmp_path, db_url)
    _ok(["events", "create", "gala", "--title", "Gala"], env)
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(DATA / "obama_2.jpg", folder / "a.jpg")
    settle(folder / "a.jpg")
    _ok(["ingest", str(folder), "--event", "gala"], env)
    _ok(["work", "-n", "1", "--until-empty"], env)
    server = start_server(tmp_path, db_url)
    try:
        with server.client() as client:
            # Serve now holds the event's faces: Obama's, in a.jpg.
            assert _enroll(client, "gala", "obama_1.jpg")["matched_photos"] == 1
            # Another process finds a.jpg holds Biden now: Obama's face is deleted there.
            _reencoded("biden.jpg", folder / "a.jpg", 90)
            with db.read(engine) as conn:
                job_id = conn.execute(select(Job.id)).scalar_one()
            _ok(["jobs", "retry", job_id], env)
            _ok(["work", "-n", "1", "--until-empty"], env)
            # The same serve: the deleted face is not searched any more.
            assert _enroll(client, "gala", "obama_1.jpg")["matched_photos"] == 0
    finally:
        stop_server(server)


def test_a_running_worker_never_matches_a_photo_to_a_selfie_erased_in_serve(
    tmp_path: Path, db_url: str, engine: Engine
) -> None:
    env = photoctl_env(tmp_path, db_url)
    _ok(["events", "create", "gala", "--title", "Gala"], env)
    folder = tmp_path / "photos"
    folder.mkdir()
    worker = start_photoctl(["work", "-n", "1"], env, tmp_path / "work.log")
    server = start_server(tmp_path, db_url)

    def processed() -> int:
        with db.read(engine) as conn:
            return conn.execute(
                select(func.count()).select_from(Job).where(Job.state == JobState.DONE)
            ).scalar_one()

    try:
        with server.client() as client:
            first = _enroll(client, "gala", "obama_1.jpg")["gallery_token"]
            second = _enroll(client, "gala", "obama_2.jpg")["gallery_token"]
            # The worker reads the event's selfies (both) for a first photo.
            shutil.copy(DATA / "biden.jpg", folder / "biden.jpg")
            settle(folder / "biden.jpg")
            _ok(["ingest", str(folder), "--event", "gala"], env)
            wait_for(lambda: processed() == 1, 180, "the first photo")
            # The first participant, nearest to the next photo, erases their face data.
            assert client.post(f"/api/g/{first}/delete").status_code == 200
            _reencoded("obama_1.jpg", folder / "obama.jpg", 85)
            _ok(["ingest", str(folder), "--event", "gala"], env)
            wait_for(lambda: processed() == 2, 180, "the second photo")
            # The nearest live selfie is the second participant's: the photo is theirs.
            photos = client.get(f"/api/g/{second}").json()["photos"]
            with db.read(engine) as conn:
                obama = conn.execute(
                    select(Photo.id).where(Photo.filename == "obama.jpg")
                ).scalar_one()
            assert [photo["id"] for photo in photos] == [obama]
    finally:
        stop_server(server)
        worker.terminate()
        worker.wait(30)


def test_a_purge_in_another_process_drops_the_vectors_this_process_holds(
    tmp_path: Path, db_url: str, engine: Engine, monkeypatch
) -> None:
    """Even for an event this process never searches again (a purged event takes no
    enrollment), the deleted embeddings leave its memory within the sweep's interval."""
    monkeypatch.setattr(vector_cache, "SWEEP_SECONDS", 0.2)
    vector_cache.forget_all()
    event = events.create_event(engine, "run", title="Run", date=None, retention_days=30)
    with db.write(engine) as conn:
        photo_id = conn.execute(
            insert(Photo.__table__)
            .values(
                content_hash="a" * 64,
                source_path=b"/x.jpg",
                filename="x.jpg",
                size_bytes=1,
                ingested_at=time.time(),
                event_id=event.id,
            )
            .returning(Photo.__table__.c.id)
        ).scalar_one()
        records = [FaceRecord((0.1, 0.1, 0.1, 0.1), 0.9, bytes(512)) for _ in range(3)]
        face_store.store_faces(conn, photo_id, "local", records, event_id=event.id)
    assert len(vector_cache.face_vectors(engine, event.id, "local")) == 3
    assert vector_cache.held_bytes() > 0
    _ok(["events", "purge", "run", "--yes"], photoctl_env(tmp_path, db_url))
    wait_for(lambda: vector_cache.held_bytes() == 0, 10, "the purged vectors to be dropped")
