"""The local engine end to end on real faces: matching, backfill, idempotency, deletion."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from photoctl import db, face_store, faces, queue, users
from photoctl.cli import cli
from photoctl.ingest import ingest_paths
from photoctl.models import Face, Match, Photo, SelfieFace
from photoctl.worker import drain_in_process
from testkit.photos import settle, write_photo

DATA = Path(__file__).parent / "data"


@pytest.fixture
def event(tmp_path: Path) -> Path:
    """Obama twice, Biden once, one photo without a face."""
    folder = tmp_path / "event"
    folder.mkdir()
    for name in ("obama_2.jpg", "obama_3.jpg", "biden.jpg"):
        shutil.copy(DATA / name, folder / name)
        settle(folder / name)
    write_photo(folder / "scenery.jpg", seed=3, size=(800, 600))
    return folder


def photo_names(engine, user_id: int) -> set[str]:
    with db.read(engine) as conn:
        ids = {photo_id for photo_id, _ in face_store.photos_of_user(conn, user_id)}
        rows = conn.execute(select(Photo.filename).where(Photo.id.in_(ids))).scalars()
        return set(rows)


def count(engine, model) -> int:
    with db.read(engine) as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def process(settings, engine, folder: Path) -> None:
    ingest_paths(engine, settings, [str(folder)])
    report = drain_in_process(settings, "local")
    assert report.failed == 0


def test_enrolled_user_is_matched_to_their_other_photos_only(settings, engine, event) -> None:
    local = faces.make_engine("local", settings, engine)
    obama, _ = users.add_user(engine, "obama")
    users.enroll(engine, local, settings, "obama", DATA / "obama_1.jpg")
    process(settings, engine, event)
    assert photo_names(engine, obama) == {"obama_2.jpg", "obama_3.jpg"}
    with db.read(engine) as conn:
        similarities = [s for _, s in face_store.photos_of_user(conn, obama)]
    assert all(40 <= s <= 100 for s in similarities)


def test_enrolling_after_ingest_finds_the_earlier_photos(settings, engine, event) -> None:
    process(settings, engine, event)
    local = faces.make_engine("local", settings, engine)
    biden, _ = users.add_user(engine, "biden")
    assert users.enroll(engine, local, settings, "biden", DATA / "biden.jpg") == 1
    assert photo_names(engine, biden) == {"biden.jpg"}


def test_a_photo_without_a_face_has_no_faces(settings, engine, event) -> None:
    process(settings, engine, event)
    with db.read(engine) as conn:
        per_photo = dict(
            conn.execute(
                select(Photo.filename, func.count(Face.id))
                .outerjoin(Face, Face.photo_id == Photo.id)
                .group_by(Photo.filename)
            ).all()
        )
    assert per_photo == {"obama_2.jpg": 1, "obama_3.jpg": 1, "biden.jpg": 1, "scenery.jpg": 0}


def test_running_jobs_again_stores_no_face_or_match_twice(settings, engine, event) -> None:
    local = faces.make_engine("local", settings, engine)
    users.add_user(engine, "obama")
    users.enroll(engine, local, settings, "obama", DATA / "obama_1.jpg")
    process(settings, engine, event)
    before = (count(engine, Face), count(engine, Match))
    with db.write(engine) as conn:
        done = [job.id for job in queue.list_jobs(conn, "done")]
        assert queue.retry_jobs(conn, done) == 4
    drain_in_process(settings, "local")
    assert (count(engine, Face), count(engine, Match)) == before == (3, 2)


def test_deleting_a_user_removes_their_selfie_and_matches(settings, engine, event) -> None:
    local = faces.make_engine("local", settings, engine)
    users.add_user(engine, "obama")
    users.enroll(engine, local, settings, "obama", DATA / "obama_1.jpg")
    process(settings, engine, event)
    assert count(engine, Match) == 2 and count(engine, SelfieFace) == 1
    users.delete_user(engine, local, "obama")
    assert count(engine, Match) == 0 and count(engine, SelfieFace) == 0
    assert users.list_users(engine) == []


def test_re_enrolling_replaces_the_selfie_and_its_matches(settings, engine, event) -> None:
    process(settings, engine, event)
    local = faces.make_engine("local", settings, engine)
    user, _ = users.add_user(engine, "someone")
    users.enroll(engine, local, settings, "someone", DATA / "biden.jpg")
    users.enroll(engine, local, settings, "someone", DATA / "obama_1.jpg")
    assert count(engine, SelfieFace) == 1
    assert photo_names(engine, user) == {"obama_2.jpg", "obama_3.jpg"}


def test_users_add_prints_the_token_alone_on_stdout(settings, engine) -> None:
    args = ["--data-dir", str(settings.data_dir), "--database-url", settings.database_url]
    result = CliRunner().invoke(
        cli, [*args, "users", "add", "alice", "--selfie", str(DATA / "obama_1.jpg")]
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert len(token) >= 40 and "\n" not in token
    rotated = CliRunner().invoke(cli, [*args, "users", "token", "alice"]).stdout.strip()
    assert rotated != token


def test_a_selfie_without_a_face_is_refused_and_creates_no_user(settings, engine, tmp_path) -> None:
    selfie = write_photo(tmp_path / "wall.jpg", seed=1)
    args = ["--data-dir", str(settings.data_dir), "--database-url", settings.database_url]
    result = CliRunner().invoke(cli, [*args, "users", "add", "x", "--selfie", str(selfie)])
    assert result.exit_code == 1 and "no face found in the selfie" in result.stderr
    assert users.list_users(engine) == []
