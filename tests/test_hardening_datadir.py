"""Issue 7, items 8, 9, 11 and 21: where data lives, who may create it, and the operator's tools.

- Read-only commands never create a data dir or a database (only init, ingest, users add do).
- Thumbnails and previews are found by serve whatever directory it (or the worker) ran from.
- Deleted selfie embeddings do not linger in SQLite's files; PostgreSQL says when space returns.
- users add/enroll/show/delete, config show/example and doctor behave as an operator expects.

Everything goes through real subprocesses (or CliRunner), real databases and real HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, event, inspect, select
from sqlalchemy import text as sql_text
from sqlalchemy.engine import make_url

from photoctl import config, db, face_store, faces, users
from photoctl.cli import cli
from photoctl.errors import SeveralFaces
from photoctl.faces.base import FaceRecord
from photoctl.ingest import ingest_paths
from photoctl.models import Photo
from photoctl.worker import drain_in_process
from testkit.fake_rekognition import FakeRekognition, make_face_image
from testkit.photos import settle, write_photo
from tests.support.cli import photoctl_env, run_photoctl
from tests.support.faces import selfie_of
from tests.support.serve import free_port, launch_server, stop_server

DATA = Path(__file__).parent / "data"
MISSING = "no photoctl database at "
HINT = "; run `photoctl init` or `photoctl ingest` first"


def cli_args(settings: config.Settings) -> list[str]:
    return ["--data-dir", str(settings.data_dir), "--database-url", settings.database_url]


def public_tables(db_url: str) -> list[str]:
    """Tables in the database, looked at without photoctl (and without creating a file)."""
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        if not path.exists():
            return []
    engine = create_engine(db.normalize_url(db_url))
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def two_face_selfie(path: Path) -> Path:
    """Obama and Biden side by side, their faces the same size: neither is clearly the user."""
    return selfie_of(path, ["obama_1.jpg", "biden.jpg"], [300, 300])


# -- item 11: only init, ingest and users add create ---------------------------------------

READ_ONLY_COMMANDS = [
    ["doctor"],
    ["stats"],
    ["stats", "--json"],
    ["jobs", "list"],
    ["jobs", "show", "abc"],
    ["jobs", "retry", "--failed"],
    ["jobs", "prune", "--older-than", "7d"],
    ["users", "list"],
    ["users", "show", "alice"],
    ["users", "token", "alice"],
    ["users", "delete", "alice", "--yes"],
    ["users", "enroll", "alice", "--selfie", str(DATA / "obama_1.jpg")],
    ["cache", "stats"],
    ["cache", "clear"],
    ["work", "--until-empty", "-n", "1", "--engine", "none"],
    ["ingest", "--dry-run", str(DATA)],
]


def test_read_only_commands_on_a_missing_database_exit_2_and_create_nothing(
    tmp_path: Path, empty_db_url: str
) -> None:
    env = photoctl_env(tmp_path, empty_db_url)
    data_dir = tmp_path / "data"
    expected = (
        str(data_dir / "photoctl.db")
        if empty_db_url.startswith("sqlite")
        else make_url(empty_db_url).render_as_string(hide_password=True)
    )
    for args in [*READ_ONLY_COMMANDS, ["serve", "--port", str(free_port())]]:
        result = run_photoctl(args, env, timeout=60)
        if args[0] == "ingest":  # a dry run answers without a database and creates none
            assert result.returncode == 0, result.stderr
        else:
            assert result.returncode == 2, (args, result.stderr)
            assert MISSING + expected in result.stderr and HINT in result.stderr, result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not data_dir.exists(), f"{args} created {data_dir}"
        assert public_tables(empty_db_url) == [], f"{args} created tables"


def test_a_cron_line_without_cd_creates_no_data_dir(tmp_path: Path) -> None:
    """As `env -i` would run it: no PHOTOCTL_* variable, an empty working directory."""
    home, cwd = tmp_path / "home", tmp_path / "empty"
    home.mkdir()
    cwd.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    for args in (["stats"], ["doctor"], ["users", "list"], ["jobs", "list"]):
        result = run_photoctl(args, env, cwd=cwd)
        assert result.returncode == 2, result.stderr
        expected = f"{MISSING}{cwd / 'photoctl-data' / 'photoctl.db'}{HINT}"
        assert expected in result.stderr
    assert list(cwd.iterdir()) == [] and list(home.iterdir()) == []


@pytest.mark.postgres
def test_a_postgresql_database_that_does_not_exist_is_a_usage_error_creating_nothing(
    tmp_path: Path, postgres_admin_url: str
) -> None:
    missing = make_url(postgres_admin_url).set(database="photoctl_no_such_database")
    env = photoctl_env(tmp_path, missing.render_as_string(hide_password=False))
    for args in (["stats"], ["doctor"], ["jobs", "list"]):
        result = run_photoctl(args, env, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert 'database "photoctl_no_such_database" does not exist' in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_s3_storage_roots_are_not_made_local_paths(tmp_path: Path) -> None:
    env = photoctl_env(tmp_path, PHOTOCTL_STORAGE_ROOT="s3://bucket/prefix")
    result = run_photoctl(["config", "show"], env, cwd=tmp_path)
    assert "storage.root = s3://bucket/prefix" in result.stdout


def test_config_show_and_example_need_no_database_and_create_none(tmp_path: Path) -> None:
    env = photoctl_env(tmp_path)
    for args in (["config", "show"], ["config", "example"]):
        result = run_photoctl(args, env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert not (tmp_path / "data").exists()


def test_init_creates_the_database_once_and_names_it(tmp_path: Path, empty_db_url: str) -> None:
    env = photoctl_env(tmp_path, empty_db_url)
    first = run_photoctl(["init"], env)
    assert first.returncode == 0, first.stderr
    location = (
        str(tmp_path / "data" / "photoctl.db") if empty_db_url.startswith("sqlite") else "postgres"
    )
    assert "database created at " in first.stderr and location in first.stderr
    assert (tmp_path / "data").is_dir()
    again = run_photoctl(["init"], env)
    assert again.returncode == 0 and "database already there at " in again.stderr
    stats = run_photoctl(["stats", "--json"], env)
    assert stats.returncode == 0, stats.stderr
    assert "alembic_version" in public_tables(empty_db_url)


def test_ingest_and_users_add_create_the_database_and_ingest_names_it(
    tmp_path: Path, empty_db_url: str
) -> None:
    env = photoctl_env(tmp_path, empty_db_url)
    write_photo(tmp_path / "photos" / "a.jpg", seed=1)
    ingest = run_photoctl(["ingest", str(tmp_path / "photos")], env)
    assert ingest.returncode == 0, ingest.stderr
    if empty_db_url.startswith("sqlite"):
        assert f"(database {tmp_path / 'data' / 'photoctl.db'})" in ingest.stderr
    else:
        assert "(database postgresql" in ingest.stderr and "photoctl_test_" in ingest.stderr

    other = photoctl_env(
        tmp_path / "other", empty_db_url if empty_db_url.startswith("sqlite") else None
    )
    if empty_db_url.startswith("sqlite"):
        other["PHOTOCTL_DATABASE_URL"] = f"sqlite:///{tmp_path / 'other' / 'data' / 'p.db'}"
    added = run_photoctl(["users", "add", "alice"], other)
    assert added.returncode == 0, added.stderr
    assert run_photoctl(["users", "list"], other).stdout.startswith("alice")


def test_the_data_dir_is_absolute_from_start_up(tmp_path: Path) -> None:
    settings = config.load(data_dir="relative-data", environ={})
    assert settings.data_dir == tmp_path / "relative-data"
    assert settings.storage_root.is_absolute() and settings.cache_dir.is_absolute()
    moved = config.load(
        data_dir="d", environ={"PHOTOCTL_STORAGE_ROOT": "st", "PHOTOCTL_CACHE_DIR": "c"}
    )
    assert (moved.storage_root, moved.cache_dir) == (tmp_path / "st", tmp_path / "c")


# -- item 9: storage paths relative to the storage root ------------------------------------


def test_thumb_and_preview_answer_200_when_serve_runs_from_another_directory(
    tmp_path: Path, db_url: str
) -> None:
    workdir, elsewhere = tmp_path / "work-here", tmp_path / "serve-there"
    workdir.mkdir()
    elsewhere.mkdir()
    for index in range(2):
        write_photo(workdir / "photos" / f"IMG_{index}.jpg", seed=index)
    # In workdir: the default, relative data dir ./photoctl-data, as an operator would type it.
    env = photoctl_env(tmp_path, None if db_url.startswith("sqlite") else db_url)
    del env["PHOTOCTL_DATA_DIR"]
    token = run_photoctl(["users", "add", "boss", "--admin"], env, cwd=workdir).stdout.strip()
    assert token
    assert run_photoctl(["ingest", "photos"], env, cwd=workdir).returncode == 0
    work = run_photoctl(["work", "-n", "1", "--until-empty", "--engine", "none"], env, cwd=workdir)
    assert work.returncode == 0, work.stderr

    serve_env = {**env, "PHOTOCTL_DATA_DIR": str(workdir / "photoctl-data")}
    server = launch_server(serve_env, tmp_path / "serve.log", cwd=elsewhere)
    try:
        with server.client(token) as client:
            listed = client.get("/api/all-photos").json()["photos"]
            assert len(listed) == 2
            for photo in listed:
                for variant in ("thumb", "preview"):
                    answer = client.get(f"/api/photos/{photo['id']}/{variant}")
                    assert answer.status_code == 200, (variant, answer.text)
                    assert answer.content[:2] == b"\xff\xd8"
    finally:
        stop_server(server)


def test_storage_paths_are_stored_relative_to_the_storage_root(settings, engine) -> None:
    write_photo(settings.data_dir.parent / "photos" / "a.jpg", seed=3)
    ingest_paths(engine, settings, [str(settings.data_dir.parent / "photos")])
    assert drain_in_process(settings, "none").failed == 0
    with db.read(engine) as conn:
        thumb, preview = conn.execute(select(Photo.thumb_path, Photo.preview_path)).one()
    assert thumb.startswith("thumbs/") and preview.startswith("previews/")
    assert settings.storage_file(thumb).is_file() and settings.storage_file(preview).is_file()
    assert settings.storage_file("/abs/x.jpg") == Path("/abs/x.jpg")


def test_migration_0005_makes_recognisable_storage_paths_relative(
    tmp_path: Path, empty_db_url: str
) -> None:
    from alembic import command

    settings = config.load(
        data_dir=str(tmp_path / "data"), environ={}, overrides={"database.url": empty_db_url}
    )
    engine = db.make_engine(settings)
    with db.write(engine) as conn:
        alembic_config = db._alembic_config()
        alembic_config.attributes["connection"] = conn
        command.upgrade(alembic_config, "0003")
    h = "ab" + "0" * 62
    cases = {
        1: ("photoctl-data/storage/thumbs/ab/x.jpg", "photoctl-data/storage/previews/ab/x.jpg"),
        2: ("/srv/ev/storage/thumbs/ab/y.jpg", "/srv/ev/storage/previews/ab/y.jpg"),
        3: ("/mnt/store/thumbs/ab/z.jpg", "custom/previews/ab/z.jpg"),  # not recognisable
        4: (None, None),  # not processed yet
        5: ("thumbs/ab/w.jpg", "previews/ab/w.jpg"),  # already relative
    }
    with db.write(engine) as conn:
        for photo_id, (thumb, preview) in cases.items():
            conn.execute(
                Photo.__table__.insert().values(
                    id=photo_id,
                    content_hash=h[:-1] + str(photo_id),
                    source_path=b"/photos/x.jpg",
                    filename="x.jpg",
                    size_bytes=1,
                    ingested_at=0.0,
                    thumb_path=thumb,
                    preview_path=preview,
                )
            )
    db.ensure_schema(engine)
    with db.read(engine) as conn:
        rows = dict(
            (r[0], (r[1], r[2]))
            for r in conn.execute(select(Photo.id, Photo.thumb_path, Photo.preview_path))
        )
    engine.dispose()
    assert rows == {
        1: ("thumbs/ab/x.jpg", "previews/ab/x.jpg"),
        2: ("thumbs/ab/y.jpg", "previews/ab/y.jpg"),
        3: ("/mnt/store/thumbs/ab/z.jpg", "custom/previews/ab/z.jpg"),
        4: (None, None),
        5: ("thumbs/ab/w.jpg", "previews/ab/w.jpg"),
    }


# -- item 8: deleted biometric data does not linger ----------------------------------------


def test_a_deleted_users_selfie_embedding_is_not_left_in_the_sqlite_files(tmp_path: Path) -> None:
    settings = config.load(data_dir=str(tmp_path / "data"), environ={})
    engine = db.make_engine(settings)

    # This machine's SQLite is built with SECURE_DELETE on; upstream's default (python.org,
    # macOS, most pip wheels) is off. Start each connection from upstream's default, so the
    # test shows what photoctl itself guarantees.
    def upstream_default(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA secure_delete = OFF")

    event.listen(engine, "connect", upstream_default, insert=True)
    db.ensure_schema(engine)
    embedding = bytes(range(256)) * 2  # 512 bytes, like a dlib embedding
    user_id, _ = users.add_user(engine, "alice")
    record = FaceRecord(box=(0.1, 0.1, 0.5, 0.5), score=1.0, embedding=embedding)
    with db.write(engine) as conn:
        face_store.replace_selfie(conn, "local", user_id, record)
    for index in range(3):  # other users' rows stay on the same pages
        other, _ = users.add_user(engine, f"other{index}")
        with db.write(engine) as conn:
            blank = FaceRecord((0, 0, 1, 1), 1.0, b"\0" * 512)
            face_store.replace_selfie(conn, "local", other, blank)
    users.delete_user(engine, None, "alice")
    engine.dispose()
    database = tmp_path / "data" / "photoctl.db"
    with sqlite3.connect(database) as raw:  # copies the WAL into the file, truncates the WAL
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for path in database.parent.glob("photoctl.db*"):
        assert embedding[16:496] not in path.read_bytes(), f"embedding bytes left in {path.name}"


@pytest.mark.postgres
def test_users_delete_on_postgresql_says_space_is_reclaimed_at_the_next_vacuum(
    tmp_path: Path, postgres_url: str
) -> None:
    env = photoctl_env(tmp_path, postgres_url)
    assert run_photoctl(["users", "add", "alice"], env).returncode == 0
    deleted = run_photoctl(["users", "delete", "alice"], env)
    assert deleted.returncode == 0 and "alice deleted" in deleted.stderr
    assert "VACUUM" in deleted.stderr and deleted.stdout == ""


# -- item 21: the operator's tools ---------------------------------------------------------


def test_a_selfie_with_several_faces_is_refused_unless_largest(
    settings, engine, tmp_path: Path
) -> None:
    selfie = two_face_selfie(tmp_path / "pair.jpg")
    args = cli_args(settings)
    refused = CliRunner().invoke(cli, [*args, "users", "add", "duo", "--selfie", str(selfie)])
    assert refused.exit_code == 1
    assert "2 faces in the selfie" in refused.stderr and "--largest" in refused.stderr
    assert users.list_users(engine) == []

    added = CliRunner().invoke(
        cli, [*args, "users", "add", "duo", "--selfie", str(selfie), "--largest"]
    )
    assert added.exit_code == 0, added.output
    assert [u.enrolled for u in users.list_users(engine)] == [True]

    again = CliRunner().invoke(cli, [*args, "users", "enroll", "duo", "--selfie", str(selfie)])
    assert again.exit_code == 1 and "--largest" in again.stderr
    largest = CliRunner().invoke(
        cli, [*args, "users", "enroll", "duo", "--selfie", str(selfie), "--largest"]
    )
    assert largest.exit_code == 0, largest.output


def test_rekognition_refuses_a_selfie_with_several_faces_and_keeps_nothing_indexed(
    settings, engine, fake: FakeRekognition, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    rk = settings.replace("rekognition", endpoint_url=fake.endpoint_url, region="eu-west-1")
    selfie = tmp_path / "pair.jpg"
    selfie.write_bytes(make_face_image([(255, 0, 0), (0, 0, 255)]))
    settle(selfie)
    face_engine = faces.make_engine("rekognition", rk, engine)
    users.add_user(engine, "duo")
    with pytest.raises(SeveralFaces, match="2 faces in the selfie"):
        users.enroll(engine, face_engine, rk, "duo", selfie, largest=False)
    assert fake.stored_faces(rk.rekognition.collection_id) == []
    users.enroll(engine, face_engine, rk, "duo", selfie, largest=True)
    assert len(fake.stored_faces(rk.rekognition.collection_id)) == 1


def run_on_a_terminal(args: list[str], env: dict[str, str], typed: bytes) -> tuple[int, str]:
    """Run photoctl with a pseudo-terminal as stdin, typing ``typed`` into it."""
    leader, follower = os.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "photoctl", *args],
            env=env,
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        os.close(follower)
        if typed:
            os.write(leader, typed)
        _, stderr = process.communicate(timeout=60)
    finally:
        os.close(leader)
    return process.returncode, stderr.decode()


def test_users_delete_asks_on_a_terminal_and_yes_skips_the_question(
    tmp_path: Path, db_url: str
) -> None:
    env = photoctl_env(tmp_path, db_url)
    for name in ("alice", "bob"):
        assert run_photoctl(["users", "add", name], env).returncode == 0

    code, stderr = run_on_a_terminal(["users", "delete", "alice"], env, b"n\n")
    assert code == 1 and "Delete user 'alice'" in stderr and "alice not deleted" in stderr
    code, stderr = run_on_a_terminal(["users", "delete", "alice"], env, b"y\n")
    assert code == 0 and "alice deleted" in stderr
    code, stderr = run_on_a_terminal(["users", "delete", "bob", "--yes"], env, b"")
    assert code == 0 and "Delete user" not in stderr and "bob deleted" in stderr
    assert run_photoctl(["users", "list"], env).stdout == ""


def test_users_delete_off_a_terminal_deletes_without_asking(tmp_path: Path, db_url: str) -> None:
    env = photoctl_env(tmp_path, db_url)
    assert run_photoctl(["users", "add", "alice"], env).returncode == 0
    result = subprocess.run(
        [sys.executable, "-m", "photoctl", "users", "delete", "alice"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "Delete user" not in result.stderr
    assert run_photoctl(["users", "list"], env).stdout == ""


def test_users_show_lists_the_users_photos(settings, engine, tmp_path: Path) -> None:
    folder = tmp_path / "event"
    folder.mkdir()
    for name in ("obama_2.jpg", "biden.jpg"):
        shutil.copy(DATA / name, folder / name)
        settle(folder / name)
    local = faces.make_engine("local", settings, engine)
    users.add_user(engine, "obama")
    users.enroll(engine, local, settings, "obama", DATA / "obama_1.jpg")
    ingest_paths(engine, settings, [str(folder)], album="Gala")
    assert drain_in_process(settings, "local").failed == 0

    env = photoctl_env(tmp_path, settings.database_url)
    shown = run_photoctl(["users", "show", "obama"], env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "obama  user  enrolled  1 photo"
    assert len(lines) == 2 and "obama_2.jpg" in lines[1] and "album Gala" in lines[1]
    as_json = json.loads(run_photoctl(["users", "show", "obama", "--json"], env).stdout)
    assert [p["filename"] for p in as_json["matched"]] == ["obama_2.jpg"]
    unknown = run_photoctl(["users", "show", "nobody"], env)
    assert unknown.returncode == 1 and "no user 'nobody'" in unknown.stderr


def test_config_show_masks_passwords_in_urls(tmp_path: Path) -> None:
    env = photoctl_env(
        tmp_path,
        "postgresql://photos:hunter2@db.example/photos",
        PHOTOCTL_REKOGNITION_ENDPOINT_URL="https://key:s3cret@rk.example/",
    )
    for args in (["config", "show"], ["config", "show", "--json"]):
        result = run_photoctl(args, env)
        assert result.returncode == 0, result.stderr
        assert "hunter2" not in result.stdout and "s3cret" not in result.stdout
        assert "postgresql://photos:***@db.example/photos" in result.stdout
        assert "https://key:***@rk.example/" in result.stdout


BROKEN_INI = "[queue]\nworkers = 3\nthis line is not a setting\n"


def test_config_example_and_doctor_work_with_a_broken_config_ini(tmp_path: Path) -> None:
    (tmp_path / "config.ini").write_text(BROKEN_INI)
    env = photoctl_env(tmp_path)
    example = run_photoctl(["config", "example"], env, cwd=tmp_path)
    assert example.returncode == 0 and example.stdout == config.example_ini()
    doctor = run_photoctl(["doctor"], env, cwd=tmp_path)
    assert doctor.returncode == 1, doctor.stderr
    assert doctor.stdout.startswith("[FAIL] config: ")
    assert f"{tmp_path / 'config.ini'}, line 3" in doctor.stdout


def test_a_config_syntax_error_is_one_line_with_file_and_line_number(tmp_path: Path) -> None:
    (tmp_path / "config.ini").write_text(BROKEN_INI)
    result = run_photoctl(["stats"], photoctl_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'config.ini'}, line 3: cannot parse 'this line is not a setting' "
        "(expected key = value)"
    ]
    (tmp_path / "config.ini").write_text("workers = 3\n")
    missing_section = run_photoctl(["stats"], photoctl_env(tmp_path), cwd=tmp_path)
    assert missing_section.returncode == 2
    assert len(missing_section.stderr.strip().splitlines()) == 1
    assert f"{tmp_path / 'config.ini'}, line 1: expected a [section] header" in (
        missing_section.stderr
    )


def test_doctor_reports_a_good_config_file_and_checks_on(tmp_path: Path) -> None:
    (tmp_path / "config.ini").write_text("[queue]\nworkers = 3\n")
    env = photoctl_env(tmp_path)
    assert run_photoctl(["init"], env, cwd=tmp_path).returncode == 0
    doctor = run_photoctl(["doctor", "--help"], env, cwd=tmp_path)
    assert doctor.returncode == 0
    result = run_photoctl(["--engine", "none", "doctor"], env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"[ok  ] config: {tmp_path / 'config.ini'} read" in result.stdout
    assert "[ok  ] database" in result.stdout


def test_reingesting_repairs_a_photo_stored_with_a_path_relative_to_an_old_cwd(
    tmp_path: Path,
    settings,
    engine,
) -> None:
    """Photos ingested before source paths were made absolute heal when seen again."""
    photo = write_photo(tmp_path / "event" / "a.jpg", seed=11)
    ingest_paths(engine, settings, [str(photo)])
    with db.write(engine) as conn:
        conn.execute(Photo.__table__.update().values(source_path=b"event/a.jpg"))
        conn.execute(sql_text("DELETE FROM source_files"))
    report = ingest_paths(engine, settings, [str(tmp_path / "event")])
    assert report.duplicates == 1
    with db.read(engine) as conn:
        stored = conn.execute(select(Photo.source_path)).scalar_one()
    assert bytes(stored) == os.fsencode(photo)
