"""Test databases: empty ones, and migrated ones cloned from a template migrated once.

Running the migrations costs ~0.3 s per PostgreSQL database and ~0.2 s per SQLite file (more in
a subprocess, which also imports alembic), and most tests want a database at the latest schema.
So each session migrates one template of each kind, and each test gets a copy:
``CREATE DATABASE … TEMPLATE`` on PostgreSQL, a file copy on SQLite.

A copy shares its template's ``database_id`` (migration 0004), which scopes the response cache
to one database: ``renew_database_id`` gives every copy its own, as a fresh migration would.
"""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from photoctl import config, db


def postgres_problem(admin_url: str) -> str | None:
    """Why the PostgreSQL server cannot be used, or None when it can."""
    try:
        with psycopg.connect(admin_url, connect_timeout=3):
            return None
    except psycopg.Error as error:
        return str(error).strip()


def unique_name() -> str:
    # The prefix says what it is to whoever finds one left over by a killed session.
    return f"photoctl_test_{uuid.uuid4().hex[:12]}"


def postgres_url_of(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def create_postgres(admin_url: str, name: str, template: str | None = None) -> str:
    """Create database ``name`` (empty, or a copy of ``template``) and return its URL."""
    statement = f'CREATE DATABASE "{name}"'
    if template:
        # Fails while anyone is connected to the template: nobody is, once it is migrated.
        statement += f' TEMPLATE "{template}"'
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(statement)
    return postgres_url_of(admin_url, name)


def drop_postgres(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the latest schema, the way photoctl does."""
    engine = db.make_engine(config.load(environ={}, overrides={"database.url": url}))
    try:
        db.ensure_schema(engine)
    finally:
        engine.dispose()  # no connection may stay open on a template


def renew_database_id(url: str) -> None:
    """Give a copied database an identity of its own (see the module docstring)."""
    statement = "UPDATE photoctl_meta SET value = {} WHERE key = 'database_id'"
    new_id = str(uuid.uuid4())
    sqlite_file = db.sqlite_file(url)
    if sqlite_file is not None:
        with sqlite3.connect(sqlite_file) as conn:
            updated = conn.execute(statement.format("?"), (new_id,)).rowcount
        conn.close()
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            updated = conn.execute(statement.format("%s"), (new_id,)).rowcount
    assert updated == 1, f"no database_id row to renew in {url}"


def clone_postgres(admin_url: str, template: str) -> tuple[str, str]:
    """A fresh copy of the migrated ``template``: (name, URL)."""
    name = unique_name()
    url = create_postgres(admin_url, name, template)
    renew_database_id(url)
    return name, url


def clone_sqlite(template: Path, path: Path) -> str:
    """Copy the migrated SQLite ``template`` to ``path`` and return its URL.

    The template's engine was disposed, which checkpoints the WAL into the main file and
    removes it: the one file is the whole database.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)
    url = f"sqlite:///{path}"
    renew_database_id(url)
    return url
