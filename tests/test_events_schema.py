"""Migrations on a database that holds rows. 0007: every photo and user lands in the default
event, nothing is lost, ids keep growing (SQLite AUTOINCREMENT survives the table rebuild).
0010: events keep their rows and their unsalted access codes still open enrollment."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import text

from photoctl import config, db, events, users


def upgraded_to(engine, revision: str) -> None:
    from alembic import command

    with engine.connect() as connection:
        sqlite = not db.is_postgresql(engine)
        if sqlite:
            connection.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
        with connection.begin():
            alembic = db._alembic_config()
            alembic.attributes["connection"] = connection
            command.upgrade(alembic, revision)
        if sqlite:
            connection.connection.driver_connection.execute("PRAGMA foreign_keys = ON")


def engine_at(tmp_path: Path, database_url: str, revision: str):
    """An engine on an empty database migrated up to ``revision`` only."""
    settings = config.load(
        data_dir=str(tmp_path / "data"), environ={}, overrides={"database.url": database_url}
    )
    engine = db.make_engine(settings)
    upgraded_to(engine, revision)
    return engine


def test_upgrade_from_0006_puts_existing_photos_and_users_in_the_default_event(
    tmp_path: Path, empty_db_url: str
) -> None:
    engine = engine_at(tmp_path, empty_db_url, "0006")
    with db.write(engine) as conn:
        for number in (1, 2):
            conn.execute(
                text(
                    "INSERT INTO photos (id, content_hash, source_path, filename, size_bytes,"
                    f" ingested_at) VALUES ({number}, 'h{number}', :path, 'a.jpg', 1, 0)"
                ),
                {"path": b"/a"},
            )
        conn.execute(
            text(
                "INSERT INTO users (id, name, is_admin, token_hash, created_at)"
                " VALUES (7, 'eve', false, 't', 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO faces (id, photo_id, engine, face_index, box_left, box_top,"
                " box_width, box_height, score) VALUES (1, 1, 'local', 0, 0, 0, 1, 1, 1)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO selfie_faces (id, user_id, engine, created_at)"
                " VALUES (1, 7, 'local', 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO matches (photo_id, user_id, face_id, similarity, matched_at,"
                " source, findable_at) VALUES (1, 7, 1, 99, 0, 'photo', 0)"
            )
        )
        conn.execute(text("INSERT INTO login_tokens VALUES ('l', 7, 0)"))

    db.ensure_schema(engine)

    tables = ("photos", "users", "faces", "selfie_faces", "matches", "login_tokens")
    with db.read(engine) as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in tables}
        photo_events = set(conn.execute(text("SELECT event_id FROM photos")).scalars())
        user_events = set(conn.execute(text("SELECT event_id FROM users")).scalars())
    assert counts == {**dict.fromkeys(tables, 1), "photos": 2}
    assert photo_events == user_events == {1}
    default = events.require_event(engine, "default")
    assert default.id == 1 and default.state == "open" and default.retention_ends_at is None
    assert default.consent_text and len(default.consent_version) == 64
    # A new user and a new event get ids of their own (the rows above set theirs by hand,
    # which PostgreSQL's sequences do not see; SQLite's AUTOINCREMENT does).
    assert users.add_user(engine, "frank")[0] == (1 if db.is_postgresql(engine) else 8)
    assert events.create_event(engine, "e", title="E", date=None, retention_days=1).id == 2
    if not db.is_postgresql(engine):
        with db.read(engine) as conn:
            schemas = dict(
                conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all()
            )
            assert conn.execute(text("PRAGMA foreign_key_check")).first() is None
        for table in ("users", "photos", "events", "audit_log"):
            assert "AUTOINCREMENT" in schemas[table], schemas[table]
    engine.dispose()


def test_upgrade_to_0010_keeps_events_and_their_unsalted_codes_still_open(
    tmp_path: Path, empty_db_url: str
) -> None:
    engine = engine_at(tmp_path, empty_db_url, "0009")
    legacy = hashlib.sha256(b"BLUE42").hexdigest()
    with db.write(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO events (slug, title, retention_days, consent_text, consent_version,"
                " access_code_hash, created_at) VALUES ('gala', 'Gala', 30, 'c', 'v', :code, 0)"
            ),
            {"code": legacy},
        )

    db.ensure_schema(engine)

    gala = events.require_event(engine, "gala")
    assert gala.requires_access_code and gala.title == "Gala"
    assert events.access_code_matches(engine, gala, "blue-42")
    with db.read(engine) as conn:
        stored = conn.execute(text("SELECT access_code_hash FROM events WHERE slug = 'gala'"))
        assert stored.scalar_one().startswith("scrypt$"), "hashed again once it opened"
    assert events.create_event(engine, "e", title="E", date=None, retention_days=1).id == 3
    if not db.is_postgresql(engine):
        with db.read(engine) as conn:
            events_sql = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'events'")
            ).scalar_one()
            assert conn.execute(text("PRAGMA foreign_key_check")).first() is None
        assert "AUTOINCREMENT" in events_sql
    engine.dispose()
