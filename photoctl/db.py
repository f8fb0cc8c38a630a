"""Database access: engines for SQLite and PostgreSQL, transactions, schema upgrades, errors.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE``: a deferred transaction that reads and then writes cannot wait for the write
lock (SQLite answers "database is locked" at once instead), so taking the lock up front is what
lets many processes share one file. PostgreSQL gets a pool sized by configuration. Driver errors
are translated here into photoctl's own errors; nothing above this layer sees ``sqlalchemy.exc``.

The transaction rule, which a function's first parameter tells:

- **Query modules take a Connection and never commit** (catalog, queue, face_store, gallery,
  workers_registry, stats.collect): the caller decides what one transaction holds, so queries
  from several modules can share it (a job's result, its matches and its completion).
- **Services take an Engine and own their transactions** (ingest, users, face_step, worker,
  supervisor, changed_files, the limiter, the API routes through ``Services``): each opens
  ``write`` or ``read`` below, keeps it short, and holds none across a slow call (a face engine,
  a file read).

Face data is written and deleted in transactions that may overlap (a worker, a purge, an
erasure, a "not me"), so rows are locked in one order: the event's row, then users' rows, then
the face data itself. A writer asks first, share-locking (``event_store.takes_face_data``,
``face_store.users_taking_face_data``); a deleter writes its mark on those rows first, then
deletes. On PostgreSQL the opposite order can deadlock, and a writer that does not ask can store
after the deletion; on SQLite ``BEGIN IMMEDIATE`` serializes them anyway.

Where SQLite and PostgreSQL differ, the difference is read from the connection
(``conn.dialect.name``), in the helpers here (``is_postgresql``, ``dialect_insert``,
``insert_ignoring_conflicts``) or beside the one statement that needs it (queue.py's claim): no
function takes an Engine beside its Connection to learn the dialect.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine, Table, create_engine, event, exc, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from photoctl import file_access, sqlite_wal
from photoctl.config import Settings
from photoctl.errors import (
    ConfigError,
    DatabaseUnavailable,
    NoDatabase,
    StorageFull,
    TransientError,
)
from photoctl.migrations import SCHEMA_REVISION

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every photoctl process.
_MIGRATION_LOCK_ID = 0x70686F74


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs (SQLAlchemy would pick psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(settings: Settings, url: str | None = None, *, create: bool = True) -> Engine:
    """An engine for this process. Never share one across a fork: build one per process.

    ``create=False`` leaves the filesystem alone (no directory made for a SQLite file): commands
    that only read use it, after checking that the database exists (``open_database``).
    """
    url = normalize_url(url or settings.database_url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings, create=create)
    if parsed.get_backend_name() == "postgresql":
        db = settings.database
        return create_engine(
            url,
            pool_size=db.pool_size,
            max_overflow=db.max_overflow,
            pool_recycle=db.pool_recycle_seconds,
            pool_timeout=db.pool_timeout_seconds,
            pool_pre_ping=True,
        )
    raise ConfigError(f"unsupported database URL {parsed.render_as_string()}")


def _sqlite_engine(url: str, settings: Settings, *, create: bool = True) -> Engine:
    database = make_url(url).database
    if create and database and database != ":memory:":
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            problem = file_access.write_problem(Path(os.path.abspath(database)))
            raise ConfigError(f"database: {problem or error}") from error
    busy_ms = int(settings.database.busy_timeout_seconds * 1000)
    engine = create_engine(url, connect_args={"timeout": settings.database.busy_timeout_seconds})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        # Take transaction control from the sqlite3 module so that "begin" below decides.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # Deleted rows are overwritten with zeros, so a deleted user's selfie embedding
        # (biometric data) does not linger in free pages of the file. Their earlier versions in
        # the WAL go with the truncating checkpoint after each deletion (``truncate_wal``); the
        # size limit bounds what the WAL keeps between two.
        cursor.execute("PRAGMA secure_delete = ON")
        cursor.execute(f"PRAGMA journal_size_limit = {sqlite_wal.WAL_SIZE_LIMIT_BYTES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def sqlite_file(url: str) -> str | None:
    """The file of a SQLite database URL; None for other databases and in-memory ones."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


def sqlite_path(settings: Settings) -> Path | None:
    """The absolute path of the SQLite database file, or None for PostgreSQL or memory."""
    database = sqlite_file(normalize_url(settings.database_url))
    return None if database is None else Path(os.path.abspath(database))


def truncate_wal(engine: Engine) -> bool:
    """After face data was deleted: leave no earlier version of it in the SQLite WAL
    (sqlite_wal.truncate; False if readers kept it busy). Nothing to do on PostgreSQL."""
    database = sqlite_file(engine.url.render_as_string(hide_password=False))
    return True if database is None else sqlite_wal.truncate(database)


def database_location(settings: Settings) -> str:
    """Where the database is, for messages: the absolute SQLite file, or the URL sans password."""
    path = sqlite_path(settings)
    if path is not None:
        return str(path)
    return make_url(settings.database_url).render_as_string(hide_password=True)


def database_exists(settings: Settings, engine: Engine) -> bool:
    """True when the database holds a photoctl schema (of any revision).

    A SQLite file that does not exist is checked without connecting (connecting would create
    it); for PostgreSQL "does not exist" means no alembic_version table. Raises TransientError
    when the server cannot be reached.
    """
    path = sqlite_path(settings)
    if path is not None and not path.is_file():
        return False
    return current_revision(engine) is not None


def open_database(settings: Settings, *, create: bool = False) -> Engine:
    """An engine on the configured database, with the schema at the latest revision.

    Only the commands that bring data in (init, ingest, users add) pass ``create=True``; for
    every other one a missing database is a NoDatabase error, and nothing is created.
    """
    engine = make_engine(settings, create=create)
    try:
        if not create and not database_exists(settings, engine):
            raise NoDatabase(database_location(settings))
        ensure_schema(engine)
    except BaseException as error:
        engine.dispose()
        path = sqlite_path(settings)
        problem = file_access.write_problem(path) if path else None
        if isinstance(error, TransientError) and problem:
            # SQLite says only "unable to open database file": name the directory and the
            # permission. A configuration problem (exit 2), not an outage to wait out.
            raise ConfigError(f"database: {problem}") from error
        raise
    return engine


IN_CHUNK = 500  # bound parameters per IN (...) list; SQLite allows 32k, keep statements small

_Item = TypeVar("_Item")


def in_chunks(items: Sequence[_Item], size: int = IN_CHUNK) -> Iterator[Sequence[_Item]]:
    """Slices of at most ``size`` items, for IN (...) lists and executemany batches.

    One helper so every query module bounds its statements the same way: a list of thousands
    of paths or hashes in one IN (...) would hit driver limits on one database and not the other.
    """
    for start in range(0, len(items), size):
        yield items[start : start + size]


def is_postgresql(bind: Connection | Engine) -> bool:
    """True on PostgreSQL. In a transaction, pass its Connection (see the module docstring)."""
    return bind.dialect.name == "postgresql"


def dialect_insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The connection's own INSERT, which has ``on_conflict_do_nothing`` and
    ``on_conflict_do_update`` (both dialects spell them alike)."""
    dialect = postgresql if is_postgresql(conn) else sqlite
    return dialect.insert(table)


def insert_ignoring_conflicts(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """INSERT … ON CONFLICT DO NOTHING, for the database of ``conn``."""
    return dialect_insert(conn, table).on_conflict_do_nothing()


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Turn driver errors into TransientError (busy, connection lost) with a readable message."""
    try:
        yield
    except exc.OperationalError as error:
        reason = _first_line(error.orig or error)
        if _MISSING_DATABASE.search(reason):
            # Waiting will not make it appear: a configuration problem (exit 2), not an outage.
            raise ConfigError(
                f"database: {reason}; create it (createdb) or fix database.url"
            ) from error
        kind = _kind_of(error)
        raise kind(f"database: {reason}") from error
    except exc.InterfaceError as error:
        message = f"database connection: {_first_line(error.orig or error)}"
        raise DatabaseUnavailable(message) from error
    except exc.TimeoutError as error:
        raise TransientError(f"database pool exhausted: {error}") from error


# SQLSTATE classes of PostgreSQL that mean "no usable connection": connection exception (08),
# operator intervention (57P: shutdown, terminated backends), too many connections (53300),
# the database refusing connections (55000 "not currently accepting connections").
_UNREACHABLE_SQLSTATES = ("08", "57P", "53300", "55000")
_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"
# libpq's answer when the URL names a database the server does not have (SQLSTATE 3D000, which
# a failed connect does not carry).
_MISSING_DATABASE = re.compile(r'database ".*" does not exist')


def _kind_of(error: exc.DBAPIError) -> type[TransientError]:
    """Which transient error a driver's OperationalError is: full disk, unreachable, or other."""
    original = error.orig
    if getattr(original, "sqlite_errorcode", None) == _SQLITE_FULL:
        return StorageFull
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate == "53100":  # disk_full
        return StorageFull
    if error.connection_invalidated:
        return DatabaseUnavailable
    is_postgresql_error = type(original).__module__.startswith("psycopg")
    # A failed connect carries no SQLSTATE at all.
    if is_postgresql_error and (sqlstate is None or sqlstate.startswith(_UNREACHABLE_SQLSTATES)):
        return DatabaseUnavailable
    return TransientError


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


@contextlib.contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A write transaction (BEGIN IMMEDIATE on SQLite), committed on success."""
    with translate_errors(), engine.begin() as connection:
        yield connection


@contextlib.contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction; on SQLite it takes no write lock, so readers never block workers."""
    with translate_errors(), engine.connect() as connection:
        connection = connection.execution_options(sqlite_begin="DEFERRED")
        with connection.begin():
            yield connection


def _alembic_config():
    # Alembic is imported only when the schema must change: it costs every command ~0.15 s.
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", "photoctl:migrations")
    return config


def head_revision() -> str:
    """The newest migration (tests check that it is the one SCHEMA_REVISION names)."""
    return SCHEMA_REVISION


def _read_revision(connection: Connection) -> str | None:
    try:
        with connection.begin_nested():
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except (exc.OperationalError, exc.ProgrammingError):
        return None  # no alembic_version table: an empty database


def current_revision(engine: Engine) -> str | None:
    with read(engine) as connection:
        return _read_revision(connection)


def ensure_schema(engine: Engine) -> None:
    """Create or upgrade the schema to the latest revision; safe when many processes race.

    On SQLite the migrations run with foreign keys off (set before the transaction begins, the
    only place SQLite honours it): rebuilding a parent table in batch mode drops it, and with
    foreign keys on that drop would cascade-delete every child row. The keys are checked with
    ``PRAGMA foreign_key_check`` before the commit instead, and switched on again after.
    """
    if current_revision(engine) == SCHEMA_REVISION:
        return
    from alembic import command

    sqlite_file = not is_postgresql(engine)
    with translate_errors(), engine.connect() as connection:
        if sqlite_file:
            _on_driver(connection, "PRAGMA foreign_keys = OFF")
        try:
            with connection.begin():
                if is_postgresql(engine):
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
                    )
                # Checked again under the lock: another process may have just upgraded.
                before = _read_revision(connection)
                if before == SCHEMA_REVISION:
                    return
                config = _alembic_config()
                config.attributes["connection"] = connection
                logging.getLogger("alembic").setLevel(logging.WARNING)
                command.upgrade(config, "head")
                if sqlite_file:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                    if broken is not None:
                        raise ConfigError(f"schema upgrade broke a foreign key: {tuple(broken)}")
        finally:
            if sqlite_file:
                _on_driver(connection, "PRAGMA foreign_keys = ON")
        if before is None:
            log.info("[Startup] Database created at schema revision %s", SCHEMA_REVISION)
        else:
            log.info(
                "[Startup] Database schema upgraded from revision %s to %s", before, SCHEMA_REVISION
            )


def _on_driver(connection: Connection, statement: str) -> None:
    """Run ``statement`` on the driver's own connection: SQLAlchemy's would begin a transaction."""
    driver = connection.connection.driver_connection
    assert driver is not None, "None only after invalidate(), which nothing here calls"
    driver.execute(statement)


def database_id(engine: Engine) -> str:
    """The identity of this database, a UUID made with its schema (migration 0004).

    The response cache directory may be shared by several databases (same data dir, another
    ``--database-url``): its keys carry this id so one database's lists never answer another's.
    """
    with read(engine) as connection:
        value = connection.execute(
            text("SELECT value FROM photoctl_meta WHERE key = 'database_id'")
        ).scalar()
    if value is None:
        raise ConfigError("the database has no identity row; run any photoctl command to upgrade")
    return value


def check_connection(engine: Engine) -> None:
    """Raise TransientError with the driver's reason when the database cannot be reached."""
    with read(engine) as connection:
        connection.execute(text("SELECT 1"))
