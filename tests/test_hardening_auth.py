"""Hardening of accounts and the response cache (issue 7, items 1, 5, 6, 10 and /docs of 22).

Over real HTTP to a real `photoctl serve` and with the real CLI, on SQLite and PostgreSQL:
ids are never reused and a deleted user's cached lists go with them; login tokens expire, are
revoked by logout, `users token` and `users delete`; login time does not tell which names exist;
two databases sharing a data dir never see each other's cached lists; /docs loads nothing from
another host and declares the bearer scheme.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import statistics
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from photoctl import config, db, users
from photoctl.ingest import ingest_paths
from photoctl.worker import drain_in_process
from testkit.photos import settle
from tests.support import databases
from tests.support.cli import run_photoctl
from tests.support.serve import Server, start_server, stop_server
from tests.test_api import photo_ids_by_name, seed_match

DATA = Path(__file__).parent / "data"


def enroll_with_photos(settings: config.Settings, engine, name: str) -> str:
    """`name` is Obama, found in two processed photos; returns the API token."""
    folder = settings.data_dir.parent / f"photos-{name}"
    folder.mkdir()
    for photo in ("obama_2.jpg", "obama_3.jpg"):
        shutil.copy(DATA / photo, folder / photo)
        settle(folder / photo)
    ingest_paths(engine, settings, [str(folder)], album="Gala")
    # Thumbnails and metadata only: the matches dlib would find are written directly (what is
    # tested here is the cache and the accounts, not the face engine).
    assert drain_in_process(settings, "none").failed == 0
    _, token = users.add_user(engine, name)
    photo_ids = photo_ids_by_name(engine)
    for photo in ("obama_2.jpg", "obama_3.jpg"):
        seed_match(engine, photo_ids[photo], users.user_id_by_name(engine, name))
    return token


def photo_names(server: Server, token: str, path: str) -> list[str]:
    with server.client(token) as client:
        answer = client.get(path)
    assert answer.status_code == 200, answer.text
    return [photo["filename"] for photo in answer.json()["photos"]]


def cache_size(server: Server) -> int:
    figures = run_photoctl(["cache", "stats", "--json"], server.env)
    assert figures.returncode == 0, figures.stderr
    return json.loads(figures.stdout)["size"]


def user_ids(server: Server) -> dict[str, int]:
    listed = run_photoctl(["users", "list", "--json"], server.env)
    assert listed.returncode == 0, listed.stderr
    return {user["name"]: user["id"] for user in map(json.loads, listed.stdout.splitlines())}


def login(server: Server, name: str, password: str) -> httpx.Response:
    return httpx.post(f"{server.url}/api/login", json={"name": name, "password": password})


def status_with(server: Server, token: str) -> int:
    with server.client(token) as client:
        return client.get("/api/my-photos").status_code


# -- 1: ids are never reused, deleting a user drops their cache entries ------------------------


def test_deleted_users_cache_entries_are_dropped_and_the_next_user_sees_none(
    tmp_path: Path,
    db_url: str,
    settings,
    engine,
) -> None:
    eve = enroll_with_photos(settings, engine, "eve")
    server = start_server(tmp_path, db_url)
    try:
        assert cache_size(server) == 0
        assert sorted(photo_names(server, eve, "/api/my-photos")) == ["obama_2.jpg", "obama_3.jpg"]
        assert len(photo_names(server, eve, "/api/all-photos")) == 2
        assert cache_size(server) == 2
        eve_id = user_ids(server)["eve"]

        deleted = run_photoctl(["users", "delete", "eve"], server.env)
        assert deleted.returncode == 0, deleted.stderr
        assert cache_size(server) == 0
        added = run_photoctl(["users", "add", "frank"], server.env)
        assert added.returncode == 0, added.stderr
        frank = added.stdout.strip()

        assert user_ids(server)["frank"] != eve_id
        assert photo_names(server, frank, "/api/my-photos") == []
        assert photo_names(server, frank, "/api/all-photos") == []
        assert status_with(server, eve) == 401
    finally:
        stop_server(server)


def test_sqlite_ids_are_never_reused(tmp_path: Path) -> None:
    settings = config.load(data_dir=str(tmp_path / "data"), environ={})
    engine = db.make_engine(settings)
    db.ensure_schema(engine)
    first, _ = users.add_user(engine, "eve")
    users.delete_user(engine, None, "eve")
    second, _ = users.add_user(engine, "frank")
    assert second > first
    engine.dispose()
    with sqlite3.connect(tmp_path / "data" / "photoctl.db") as conn:
        schemas = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    for table in ("users", "photos", "faces"):
        assert "PRIMARY KEY AUTOINCREMENT" in schemas[table], schemas[table]


def test_upgrade_to_autoincrement_keeps_every_row_and_foreign_key(tmp_path: Path) -> None:
    """The SQLite rebuild of users/photos/faces must not cascade-delete their children."""
    from alembic import command

    settings = config.load(data_dir=str(tmp_path / "data"), environ={})
    engine = db.make_engine(settings)
    with engine.connect() as connection:
        connection.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
        with connection.begin():
            alembic = db._alembic_config()
            alembic.attributes["connection"] = connection
            command.upgrade(alembic, "0003")
        connection.connection.driver_connection.execute("PRAGMA foreign_keys = ON")
    assert db.current_revision(engine) == "0003"
    with db.write(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO photos (id, content_hash, source_path, filename, size_bytes,"
                " ingested_at) VALUES (1, 'h', x'2f61', 'a.jpg', 1, 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO users (id, name, is_admin, token_hash, created_at)"
                " VALUES (1, 'eve', 0, 't', 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO faces (id, photo_id, engine, face_index, box_left, box_top,"
                " box_width, box_height, score) VALUES (1, 1, 'local', 0, 0, 0, 1, 1, 1)"
            )
        )
        conn.execute(text("INSERT INTO selfie_faces VALUES (1, 1, 'local', NULL, NULL, 0)"))
        conn.execute(text("INSERT INTO matches VALUES (1, 1, 1, 99, 0, 'photo', 0)"))
        conn.execute(text("INSERT INTO login_tokens VALUES ('l', 1, 0)"))
        conn.execute(text("INSERT INTO source_files VALUES (x'2f61', 1, 0, 1)"))
        conn.execute(
            text(
                "INSERT INTO jobs (id, kind, photo_id, state, attempts, run_at, created_at)"
                " VALUES ('j', 'process_photo', 1, 'done', 1, 0, 0)"
            )
        )

    db.ensure_schema(engine)

    tables = ("photos", "users", "faces", "selfie_faces", "matches", "login_tokens", "jobs")
    with db.read(engine) as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in tables}
        assert conn.execute(text("PRAGMA foreign_key_check")).first() is None
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert counts == dict.fromkeys(tables, 1)
    users.delete_user(engine, None, "eve")
    assert users.add_user(engine, "frank")[0] == 2
    engine.dispose()


# -- 5: login tokens expire and are revoked ------------------------------------------------------


@pytest.fixture
def dave(engine) -> str:
    """A user with a password; returns the API token."""
    return users.add_user(engine, "dave", password="correct horse")[1]


def test_login_tokens_expire_after_serve_login_token_ttl(tmp_path, db_url, dave) -> None:
    server = start_server(tmp_path, db_url, PHOTOCTL_SERVE_LOGIN_TOKEN_TTL="3")
    try:
        started = time.monotonic()
        token = login(server, "dave", "correct horse").json()["token"]
        assert status_with(server, token) == 200
        deadline = time.monotonic() + 30
        while status_with(server, token) == 200:
            assert time.monotonic() < deadline, "the login token never expired"
            time.sleep(0.2)
        assert time.monotonic() - started >= 2.5
        assert status_with(server, dave) == 200  # API tokens from the CLI do not expire
    finally:
        stop_server(server)


def test_logout_revokes_only_the_presented_login_token(tmp_path, db_url, dave) -> None:
    server = start_server(tmp_path, db_url)
    try:
        first = login(server, "dave", "correct horse").json()["token"]
        second = login(server, "dave", "correct horse").json()["token"]
        with server.client(first) as client:
            assert client.post("/api/logout").status_code == 204
            again = client.post("/api/logout")
            assert again.status_code == 401 and again.headers["WWW-Authenticate"] == "Bearer"
        assert status_with(server, first) == 401
        assert status_with(server, second) == 200
        with server.client(dave) as client:
            refused = client.post("/api/logout")
            assert refused.status_code == 400 and "users token" in refused.json()["detail"]
        assert status_with(server, dave) == 200
        anonymous = httpx.post(f"{server.url}/api/logout")
        assert anonymous.status_code == 401
        assert anonymous.json() == {"detail": "Missing bearer token"}
    finally:
        stop_server(server)


def test_users_token_and_users_delete_revoke_every_login_token(tmp_path, db_url, dave) -> None:
    server = start_server(tmp_path, db_url)
    try:
        tokens = [login(server, "dave", "correct horse").json()["token"] for _ in range(2)]
        assert [status_with(server, token) for token in tokens] == [200, 200]
        rotated = run_photoctl(["users", "token", "dave"], server.env)
        assert rotated.returncode == 0, rotated.stderr
        assert [status_with(server, token) for token in tokens] == [401, 401]
        assert status_with(server, dave) == 401
        assert status_with(server, rotated.stdout.strip()) == 200

        token = login(server, "dave", "correct horse").json()["token"]
        assert status_with(server, token) == 200
        deleted = run_photoctl(["users", "delete", "dave"], server.env)
        assert deleted.returncode == 0, deleted.stderr
        assert status_with(server, token) == 401
    finally:
        stop_server(server)


# -- 6: login timing does not tell which names exist or have a password -----------------------


@pytest.mark.slow
def test_login_takes_as_long_for_unknown_names_and_users_without_password(
    tmp_path,
    db_url,
    engine,
) -> None:
    """50 tries of each case, interleaved so that load on the machine hits all of them alike.

    Before the fix a wrong password cost one scrypt (40-80 ms here) and an unknown name none
    (3-9 ms): medians a factor of 5-20 apart. With a dummy hash they are within noise; a factor
    of 2 leaves room for a loaded machine without letting the old gap through.
    """
    users.add_user(engine, "carol", password="right password")
    users.add_user(engine, "nopass")
    server = start_server(tmp_path, db_url, PHOTOCTL_SERVE_LOGIN_RATE="100000/minute")
    cases = {"wrong password": "carol", "unknown name": "nobody-here", "no password": "nopass"}
    times: dict[str, list[float]] = {case: [] for case in cases}
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for round_number in range(53):
                for case, name in cases.items():
                    started = time.perf_counter()
                    answer = client.post("/api/login", json={"name": name, "password": "guess"})
                    elapsed = time.perf_counter() - started
                    assert answer.status_code == 401, answer.text
                    if round_number >= 3:  # the first rounds warm up connections and caches
                        times[case].append(elapsed)
    finally:
        stop_server(server)
    medians = {case: statistics.median(values) for case, values in times.items()}
    assert all(len(values) == 50 for values in times.values())
    slowest, fastest = max(medians.values()), min(medians.values())
    assert slowest / fastest < 2.0, {case: f"{m * 1000:.1f} ms" for case, m in medians.items()}


# -- 10: the response cache is scoped to one database --------------------------------------------


@pytest.mark.postgres
def test_databases_sharing_a_data_dir_never_see_each_others_cached_lists(
    tmp_path: Path, postgres_url: str
) -> None:
    data_dir = tmp_path / "data"
    sqlite_url = f"sqlite:///{data_dir / 'photoctl.db'}"
    tokens = {}
    for name, url in (("alice", sqlite_url), ("bob", postgres_url)):
        settings = config.load(data_dir=str(data_dir), environ={}, overrides={"database.url": url})
        engine = db.make_engine(settings)
        db.ensure_schema(engine)
        if name == "alice":
            tokens[name] = enroll_with_photos(settings, engine, name)
        else:
            tokens[name] = users.add_user(engine, name)[1]
        assert users.user_id_by_name(engine, name) == 1  # the same id in both databases
        engine.dispose()

    on_sqlite = start_server(tmp_path, sqlite_url)
    on_postgres = start_server(tmp_path, postgres_url)
    try:
        for path in ("/api/my-photos", "/api/all-photos"):
            assert len(photo_names(on_sqlite, tokens["alice"], path)) == 2
            assert photo_names(on_postgres, tokens["bob"], path) == []
            # And the other way round: bob's empty list does not hide alice's photos.
        run_photoctl(["cache", "clear"], on_sqlite.env)
        for path in ("/api/my-photos", "/api/all-photos"):
            assert photo_names(on_postgres, tokens["bob"], path) == []
            assert len(photo_names(on_sqlite, tokens["alice"], path)) == 2
    finally:
        stop_server(on_sqlite)
        stop_server(on_postgres)


# -- 22: /docs works offline and declares the bearer scheme ------------------------------------


def test_docs_load_nothing_from_another_host_and_declare_the_bearer_scheme(
    tmp_path: Path, sqlite_template: Path
) -> None:
    # serve refuses a missing database (issue 7 item 11): give it one.
    url = databases.clone_sqlite(sqlite_template, tmp_path / "data" / "photoctl.db")
    server = start_server(tmp_path, url)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for page in ("/docs", "/redoc"):
                html = client.get(page)
                assert html.status_code == 200 and "text/html" in html.headers["content-type"]
                assert not re.search(r"(https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]", html.text), html.text
                assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
                assert len(assets) >= 2, html.text
                for asset in assets:
                    assert asset.startswith("/"), asset
                    assert client.get(asset).status_code == 200, asset
            assert "validatorUrl" in client.get("/docs").text  # no badge from validator.swagger.io
            schema = client.get("/openapi.json").json()
            schemes = schema["components"]["securitySchemes"]
            assert list(schemes.values()) == [
                {
                    "type": "http",
                    "scheme": "bearer",
                    "description": schemes[next(iter(schemes))]["description"],
                }
            ]
            (scheme_name,) = schemes
            assert schema["paths"]["/api/my-photos"]["get"]["security"] == [{scheme_name: []}]
            assert "security" not in schema["paths"]["/api/login"]["post"]
            anonymous = client.get("/api/my-photos")
            assert anonymous.status_code == 401
            assert anonymous.json() == {"detail": "Missing bearer token"}
            assert anonymous.headers["WWW-Authenticate"] == "Bearer"
            basic = client.get("/api/my-photos", headers={"Authorization": "Basic eDp5"})
            assert basic.status_code == 401 and basic.headers["WWW-Authenticate"] == "Bearer"
    finally:
        stop_server(server)
