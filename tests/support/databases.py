"""Test databases: empty ones, and migrated ones cloned from a template migrated once.

Running the migrations costs ~0.3 s per PostgreSQL database and ~0.2 s per SQLite file (more in
a subprocess, which also imports alembic), and most tests want a database at the latest schema.
So each session migrates one template of each kind, and each test gets a copy:
``CREATE DATABASE … TEMPLATE`` on PostgreSQL, a file copy on SQLite. PostgreSQL copies are
emptied and reused rather than dropped (``PostgresPool``): a drop costs more than most tests.

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


class PostgresPool:
    """Copies of a migrated template (or empty databases, without one), each reset after its
    test and handed to the next one.

    DROP DATABASE took 1-4 s per database on the shared test server (measured), longer than
    many tests; emptying one takes ~0.3 s. ``give_back`` makes the database what a fresh copy
    would be: every table but alembic_version truncated, identities restarted, photoctl_meta as
    in the template with a new ``database_id``, rows the migrations made (the default event)
    put back; an empty database loses its public schema,
    made anew. A database that cannot be brought back so (it refuses connections, its tables or
    revision changed) is dropped instead. ``close`` drops them all.
    """

    def __init__(self, admin_url: str, template: str | None) -> None:
        self._admin_url = admin_url
        self._template = template
        self._free: list[str] = []
        self._made: list[str] = []
        if template is None:
            return
        with psycopg.connect(postgres_url_of(admin_url, template)) as conn:
            self._tables = self._table_names(conn)
            self._revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            self._meta = conn.execute("SELECT key, value FROM photoctl_meta").fetchall()
            # Rows the migrations themselves insert (the default event of 0007): restored as
            # they were after each test, with their identity sequences moved past them.
            self._seeded: dict[str, tuple[list[str], list[tuple]]] = {}
            for table in sorted(self._tables - {"alembic_version", "photoctl_meta"}):
                cursor = conn.execute(f'SELECT * FROM "{table}"')
                rows = cursor.fetchall()
                if rows:
                    columns = [column.name for column in cursor.description or []]
                    self._seeded[table] = (columns, rows)

    @staticmethod
    def _table_names(conn: psycopg.Connection) -> set[str]:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {name for (name,) in rows}

    def take(self) -> tuple[str, str]:
        """A database as a fresh copy of the template (or a fresh empty one): (name, URL)."""
        if self._free:
            name = self._free.pop()
            return name, postgres_url_of(self._admin_url, name)
        if self._template is None:
            name = unique_name()
            url = create_postgres(self._admin_url, name)
        else:
            name, url = clone_postgres(self._admin_url, self._template)
        self._made.append(name)
        return name, url

    def give_back(self, name: str) -> None:
        try:
            self._reset(name)
        except (psycopg.Error, ValueError):
            self._made.remove(name)
            drop_postgres(self._admin_url, name)
        else:
            self._free.append(name)

    def _reset(self, name: str) -> None:
        with psycopg.connect(self._admin_url, autocommit=True) as admin:
            # A server or worker the test left running would hold locks TRUNCATE waits for.
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        with psycopg.connect(postgres_url_of(self._admin_url, name), connect_timeout=5) as conn:
            if self._template is None:
                conn.execute("DROP SCHEMA public CASCADE")
                conn.execute("CREATE SCHEMA public")
                return
            if self._table_names(conn) != self._tables:
                raise ValueError(f"{name}: its tables changed")
            if conn.execute("SELECT version_num FROM alembic_version").fetchone() != self._revision:
                raise ValueError(f"{name}: its schema revision changed")
            emptied = ", ".join(f'"{t}"' for t in sorted(self._tables - {"alembic_version"}))
            conn.execute(f"TRUNCATE {emptied} RESTART IDENTITY CASCADE")
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO photoctl_meta (key, value) VALUES (%s, %s)",
                    [
                        (key, str(uuid.uuid4()) if key == "database_id" else value)
                        for key, value in self._meta
                    ],
                )
                for table, (columns, rows) in self._seeded.items():
                    names = ", ".join(f'"{column}"' for column in columns)
                    marks = ", ".join(["%s"] * len(columns))
                    cursor.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)
                    if "id" in columns:
                        cursor.execute(
                            "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                            f'(SELECT max(id) FROM "{table}"))',
                            (table,),
                        )

    def close(self) -> None:
        for name in self._made:
            drop_postgres(self._admin_url, name)


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
