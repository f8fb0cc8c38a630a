"""`photoctl db copy --to URL` (issue 20, item 15): an organizer who started on SQLite moves to
PostgreSQL and keeps everything.

The source is built through the real CLI and a real serve (an event, ingest and work with the
local engine on tests/data, an operator user, one more deleted again so the newest id is gone, a
participant enrolled with a selfie, a match, a "not me", the audit rows all that writes), copied
into a fresh PostgreSQL database, compared table by table and row by row, and then used: stats,
the participant's gallery and a thumbnail through serve, a new photo through ingest and work, a
new enrollment, whose ids follow the copied ones without reusing any.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, insert, inspect, select

from photoctl import db
from photoctl.models import (
    Base,
    BibRead,
    LimiterSlot,
    LoginToken,
    ParticipantBib,
    Photo,
    RateLimiter,
    ServiceCall,
    StartListEntry,
    User,
    Worker,
)
from testkit.photos import settle, write_photo
from tests.support import databases
from tests.support.cli import photoctl_env, run_photoctl
from tests.support.serve import launch_server, stop_server

DATA = Path(__file__).parent / "data"
SLUG = "city-run"
# Rows that differ on purpose: the copy is a database of its own (db_copy.py).
OWN_META = {"database_id", "copied_from"}


def engine_of(url: str) -> Engine:
    return create_engine(db.normalize_url(url))


def rows_of(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every photoctl table, in primary-key order."""
    found = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            query = select(table).order_by(*table.primary_key.columns)
            rows = [tuple(row) for row in conn.execute(query)]
            if table.name == "photoctl_meta":
                rows = [row for row in rows if row[0] not in OWN_META]
            found[table.name] = rows
    return found


def enroll(server_url: str, selfie: Path) -> dict[str, Any]:
    import httpx

    with selfie.open("rb") as image:
        answer = httpx.post(
            f"{server_url}/api/e/{SLUG}",
            data={"consent": "true"},
            files={"selfie": (selfie.name, image, "image/jpeg")},
            timeout=60,
        )
    assert answer.status_code == 201, answer.text
    return answer.json()


def ok(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = run_photoctl(args, env, cwd=cwd, timeout=300)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def build_source(tmp_path: Path, env: dict[str, str]) -> tuple[str, str]:
    """A SQLite installation with real content: the participant's gallery token, and the
    photo their gallery still shows after their "not me"."""
    folder = tmp_path / "finish-line"
    folder.mkdir()
    for name in ("obama_2.jpg", "obama_3.jpg", "biden.jpg"):
        shutil.copy(DATA / name, folder / name)
        settle(folder / name)
    ok(["init"], env, tmp_path)
    ok(["events", "create", SLUG, "--title", "City Run", "--date", "2026-05-03"], env, tmp_path)
    ok(["ingest", str(folder), "--event", SLUG], env, tmp_path)
    ok(["work", "--until-empty"], env, tmp_path)
    ok(["users", "add", "alice", "--selfie", str(DATA / "biden.jpg")], env, tmp_path)
    server = launch_server(env, tmp_path / "serve-source.log", cwd=tmp_path)
    try:
        enrolled = enroll(server.url, DATA / "obama_1.jpg")
        token = enrolled["gallery_token"]
        with server.client() as client:
            photos = client.get(f"/api/g/{token}").json()["photos"]
            assert len(photos) == 2, photos  # obama_2 and obama_3
            answer = client.post(f"/api/g/{token}/not-me/{photos[0]['id']}")
            assert answer.status_code == 200, answer.text
    finally:
        stop_server(server)
    # The newest user deleted: SQLite's counter is past every id left, and so must the copy's be.
    ok(["users", "add", "bob"], env, tmp_path)
    ok(["users", "delete", "bob", "--yes"], env, tmp_path)
    return token, photos[1]["filename"]


def fill_what_the_local_engine_leaves_empty(source: Engine) -> None:
    """Rows of the tables only Rekognition or /api/login write, as they would look."""
    now = time.time()
    with source.begin() as conn:
        user_id = conn.execute(select(User.id).order_by(User.id)).scalars().first()
        conn.execute(
            insert(LoginToken).values(token_hash="ab" * 32, user_id=user_id, created_at=now)
        )
        conn.execute(
            insert(ServiceCall).values(
                service="rekognition",
                day="2026-05-03",
                event=SLUG,
                operation="IndexFaces",
                accepted=3,
                throttled=1,
                failed=0,
            )
        )
        conn.execute(
            insert(RateLimiter).values(name="rekognition", next_slot_at=now, rate=5.0, slowed_at=0)
        )
        conn.execute(
            insert(LimiterSlot).values(name="rekognition", slot=0, holder=None, expires_at=0)
        )
        # Bib numbers (migration 0012): a start list, a bib read in a photo, a runner's own bib.
        event_id, photo_id = conn.execute(select(Photo.event_id, Photo.id).limit(1)).one()
        conn.execute(insert(StartListEntry).values(event_id=event_id, bib="1234", name="A. Runner"))
        conn.execute(
            insert(BibRead).values(
                photo_id=photo_id,
                event_id=event_id,
                bib="1234",
                engine="local",
                confidence=0.97,
                box_left=0.4,
                box_top=0.5,
                box_width=0.1,
                box_height=0.05,
                read_at=now,
            )
        )
        conn.execute(
            insert(ParticipantBib).values(
                user_id=user_id, bib="1234", event_id=event_id, created_at=now
            )
        )


@pytest.mark.postgres
def test_db_copy_moves_every_row_to_postgresql_and_the_copy_is_live(
    tmp_path: Path, empty_postgres_url: str
) -> None:
    env = photoctl_env(tmp_path)  # SQLite in tmp_path/data, as `photoctl init` makes it
    token, kept = build_source(tmp_path, env)
    source = engine_of(f"sqlite:///{tmp_path / 'data' / 'photoctl.db'}")
    fill_what_the_local_engine_leaves_empty(source)
    before = rows_of(source)

    copied = run_photoctl(["db", "copy", "--to", empty_postgres_url, "--json"], env, cwd=tmp_path)
    again = run_photoctl(["db", "copy", "--to", empty_postgres_url], env, cwd=tmp_path)

    assert copied.returncode == 0, copied.stderr
    report = json.loads(copied.stdout)
    target = engine_of(empty_postgres_url)
    after = rows_of(target)
    with source.connect() as conn:
        source_tables = set(inspect(conn).get_table_names()) - {
            "alembic_version",
            "sqlite_sequence",
        }
    assert source_tables == set(before)  # every table of the source is compared
    assert [table for table, rows in before.items() if not rows] == []  # no table left out
    for table, rows in before.items():
        assert after[table] == rows, table
    assert report["tables"]["photos"] == len(before["photos"])
    assert report["changed_meanwhile"] == []
    with source.connect() as s, target.connect() as t:
        meta = "SELECT value FROM photoctl_meta WHERE key = '{}'"
        source_id = s.exec_driver_sql(meta.format("database_id")).scalar()
        target_id = t.exec_driver_sql(meta.format("database_id")).scalar()
        copied_from = t.exec_driver_sql(meta.format("copied_from")).scalar()
        deleted_user_id = s.exec_driver_sql(
            "SELECT seq FROM sqlite_sequence WHERE name = 'users'"
        ).scalar()
    assert target_id == report["database_id"] and target_id != source_id
    assert copied_from.startswith(f"{source_id} at ")
    assert again.returncode == 2
    assert "is not empty" in again.stderr

    # The copy is live: the same data dir (storage, recorded in the copy), the new database.
    target_env = {**env, "PHOTOCTL_DATABASE_URL": empty_postgres_url}
    stats = json.loads(ok(["stats", "--json"], target_env, tmp_path))
    assert stats["photos"]["total"] == len(before["photos"])
    server = launch_server(target_env, tmp_path / "serve-target.log", cwd=tmp_path)
    try:
        with server.client() as client:
            gallery = client.get(f"/api/g/{token}").json()
            thumb = client.get(gallery["photos"][0]["thumb_url"])
        assert [photo["filename"] for photo in gallery["photos"]] == [kept]
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
        more = tmp_path / "later"
        more.mkdir()
        write_photo(more / "scenery.jpg", seed=7)
        ok(["ingest", str(more), "--event", SLUG], target_env, tmp_path)
        ok(["work", "--until-empty"], target_env, tmp_path)
        second = enroll(server.url, DATA / "obama_1.jpg")
    finally:
        stop_server(server)
    with target.connect() as conn:
        newest_photo = conn.execute(select(Photo.id).where(Photo.filename == "scenery.jpg"))
        newest_user = conn.execute(select(User.id).order_by(User.id.desc())).scalars().first()
        photo_id = newest_photo.scalar_one()
    assert photo_id == max(row[0] for row in before["photos"]) + 1
    # bob (deleted) had the highest user id: the counter moved past her, not to the max.
    assert deleted_user_id > max(row[0] for row in before["users"])
    assert newest_user == deleted_user_id + 1
    assert second["gallery_token"] != token
    source.dispose()
    target.dispose()


def test_db_copy_refuses_while_workers_run_and_into_a_database_that_holds_data(
    tmp_path: Path, db_url: str
) -> None:
    env = photoctl_env(tmp_path, db_url)
    target = tmp_path / "copy.db"
    foreign = tmp_path / "foreign.db"
    holding = engine_of(f"sqlite:///{foreign}")
    with holding.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (body TEXT)")
    holding.dispose()
    source = engine_of(db_url)
    with source.begin() as conn:
        now = time.time()
        conn.execute(
            insert(Worker).values(
                id="w1", hostname="elsewhere", pid=1, started_at=now, heartbeat_at=now
            )
        )
    source.dispose()

    # An organizer who ran `photoctl init` on the new database first: still empty enough.
    ok(["--database-url", f"sqlite:///{target}", "init"], env, tmp_path)
    running = run_photoctl(["db", "copy", "--to", f"sqlite:///{target}"], env, cwd=tmp_path)
    with engine_of(db_url).begin() as conn:
        conn.exec_driver_sql("UPDATE workers SET stopped_at = heartbeat_at")
    into_foreign = run_photoctl(["db", "copy", "--to", f"sqlite:///{foreign}"], env, cwd=tmp_path)
    works = run_photoctl(["db", "copy", "--to", f"sqlite:///{target}", "--json"], env, cwd=tmp_path)
    garbled = run_photoctl(["db", "copy", "--to", "p@ss word"], env, cwd=tmp_path)

    assert running.returncode == 2
    assert "1 worker(s) are running on this database" in running.stderr
    assert len(running.stderr.strip().splitlines()) == 1
    assert into_foreign.returncode == 2
    assert "tables that are not photoctl's: notes" in into_foreign.stderr
    assert works.returncode == 0, works.stderr
    assert garbled.returncode == 2 and "--to is not a database URL" in garbled.stderr
    assert "p@ss" not in garbled.stderr
    assert json.loads(works.stdout)["tables"]["workers"] == 1
    copy, original = engine_of(f"sqlite:///{target}"), engine_of(db_url)
    assert rows_of(copy) == rows_of(original)  # PostgreSQL to SQLite as well
    copy.dispose()
    original.dispose()


@pytest.mark.postgres
def test_a_copy_the_target_refuses_commits_nothing_and_a_rerun_works(
    tmp_path: Path, sqlite_template: Path, empty_postgres_url: str
) -> None:
    source_url = databases.clone_sqlite(sqlite_template, tmp_path / "data" / "photoctl.db")
    env = photoctl_env(tmp_path, source_url)
    ok(["users", "add", "carol"], env, tmp_path)
    source = engine_of(source_url)
    with source.begin() as conn:  # SQLite keeps a name longer than users.name allows
        conn.exec_driver_sql("UPDATE users SET name = ? WHERE name = 'carol'", ("c" * 300,))

    refused = run_photoctl(["db", "copy", "--to", empty_postgres_url], env, cwd=tmp_path)
    target = engine_of(empty_postgres_url)
    with target.connect() as conn:
        users_after_refusal = conn.exec_driver_sql("SELECT count(*) FROM users").scalar()
    with source.begin() as conn:
        conn.exec_driver_sql("UPDATE users SET name = 'carol'")
    rerun = run_photoctl(["db", "copy", "--to", empty_postgres_url], env, cwd=tmp_path)

    assert refused.returncode == 1
    assert "db copy: the target refused a row of users" in refused.stderr
    assert "nothing was committed" in refused.stderr
    assert users_after_refusal == 0
    assert rerun.returncode == 0, rerun.stderr
    assert rows_of(target) == rows_of(source)
    source.dispose()
    target.dispose()
