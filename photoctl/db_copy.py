"""`photoctl db copy --to URL`: every row of this database into an empty one (SQLite to
PostgreSQL, the usual way up, or back), ids kept, so an organizer who started small keeps
everything.

What it guarantees:

- **The target is empty or refused.** A database with no tables, or one only `photoctl init`
  has touched (the default event, the identity row, the storage record), is migrated to the
  latest schema and filled; anything else is a ConfigError (exit 2) naming what it holds.
- **All or nothing, one snapshot.** The source is read in one transaction (REPEATABLE READ on
  PostgreSQL, a WAL read snapshot on SQLite) and the target written in one, so a failure leaves
  the target as empty as it was and a rerun works. Rows move in batches of ``BATCH`` and the
  counts of every table are compared before the commit.
- **Ids are kept and never reused.** Each table's id counter on the target (a sequence on
  PostgreSQL, ``sqlite_sequence`` on SQLite) is moved past the highest id the source ever handed
  out, deleted rows included, as photoctl promises that ids never come back.
- **The copy is a database of its own.** ``photoctl_meta.database_id`` is not copied: the target
  keeps the one its migration made, so the response cache (scoped by it) never answers for one
  database with the other's lists while both exist; the cost is a cold cache. The storage record
  is copied (the files stay where they are), and ``copied_from`` says from which database and when.
- **Not while workers write.** Workers registered and heartbeating on the source refuse the copy
  (their results would be missing from it); serve is not registered, so the operator stops it;
  a source that changed during the copy is reported (``changed_meanwhile``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, Integer, Table, exc, func, inspect, select, text
from sqlalchemy.engine import make_url

from photoctl import db, workers_registry
from photoctl.config import Settings
from photoctl.errors import ConfigError, PhotoctlError
from photoctl.models import DEFAULT_EVENT_SLUG, Base, Meta

BATCH = 1000
ID_KEY = "database_id"
# What `photoctl init` (the migrations, and the storage record) writes into a new database.
_INIT_META_KEYS = ("database_id", "storage")

Progress = Callable[[int, int], None]


@dataclass
class CopyReport:
    source: str
    target: str
    tables: dict[str, int] = field(default_factory=dict)  # rows copied per table
    seconds: float = 0.0
    database_id: str = ""  # the target's own
    changed_meanwhile: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    def as_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "target": self.target,
            "tables": self.tables,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "database_id": self.database_id,
            "changed_meanwhile": self.changed_meanwhile,
        }


def tables() -> list[Table]:
    """photoctl's tables, parents before children (foreign keys)."""
    return list(Base.metadata.sorted_tables)


def copy_database(
    settings: Settings, source: Engine, target_url: str, *, progress: Progress | None = None
) -> CopyReport:
    """Copy every row of ``source`` into the empty database at ``target_url`` (see module)."""
    started = time.monotonic()
    try:
        make_url(target_url)
    except exc.ArgumentError:
        # Not echoed: an unparsable URL may still hold a password.
        raise ConfigError(
            "db copy: --to is not a database URL (postgresql://user@host/name, or "
            "sqlite:////absolute/path.db)"
        ) from None
    target = db.make_engine(settings, target_url)
    # As the operator wrote them (password hidden), not as normalised for the driver.
    report = CopyReport(
        db.database_location(settings), make_url(target_url).render_as_string(hide_password=True)
    )
    try:
        if _shown(source) == _shown(target):
            raise ConfigError(f"db copy: {report.target} is the database being copied")
        _refuse_live_workers(settings, source)
        problem = _target_problem(target)
        if problem:
            raise ConfigError(
                f"db copy: the target {report.target} is not empty ({problem}): give an empty "
                "database (createdb NAME) or one only `photoctl init` has touched"
            )
        _check_source_tables(source)
        db.ensure_schema(target)
        with _snapshot(source) as reading, db.write(target) as writing:
            counts = {table.name: _count(reading, table) for table in tables()}
            report.database_id, written = _copy_rows(reading, writing, counts, progress)
            _advance_ids(reading, writing)
            _verify(writing, written)
            report.tables = counts
        with _snapshot(source) as reading:
            report.changed_meanwhile = [
                table.name for table in tables() if _count(reading, table) != counts[table.name]
            ]
    finally:
        target.dispose()
    report.seconds = time.monotonic() - started
    return report


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _refuse_live_workers(settings: Settings, source: Engine) -> None:
    with db.read(source) as conn:
        live = workers_registry.count_live_workers(conn, settings.queue.lease_seconds)
    if live:
        raise ConfigError(
            f"db copy: {live} worker(s) are running on this database (`photoctl stats` counts "
            "them): stop `photoctl work` on every machine (and serve) first, or their results "
            "would be missing from the copy"
        )


def _target_problem(target: Engine) -> str | None:
    """Why the target is not empty, or None. Rows `photoctl init` makes do not count."""
    with db.read(target) as conn:
        present = set(inspect(conn).get_table_names())
        if not present:
            return None
        ours = {table.name for table in tables()} | {"alembic_version"}
        foreign = sorted(present - ours)
        if foreign:
            return f"tables that are not photoctl's: {', '.join(foreign)}"
        held = []
        for table in tables():
            if table.name not in present:
                continue
            query = select(func.count()).select_from(table)
            if table.name == "events":
                query = query.where(table.c.slug != DEFAULT_EVENT_SLUG)
            elif table.name == Meta.__tablename__:
                query = query.where(table.c.key.not_in(_INIT_META_KEYS))
            rows = conn.execute(query).scalar_one()
            if rows:
                held.append(f"{table.name}: {rows} rows")
    return ", ".join(held) or None


def _check_source_tables(source: Engine) -> None:
    """A table this version does not know would be left behind silently: refuse instead."""
    with db.read(source) as conn:
        present = set(inspect(conn).get_table_names()) - {"alembic_version", "sqlite_sequence"}
        for table in tables():
            columns = {column["name"] for column in inspect(conn).get_columns(table.name)}
            unknown = columns - set(table.columns.keys())
            if unknown:
                raise PhotoctlError(
                    f"db copy: {table.name} has columns this photoctl does not know "
                    f"({', '.join(sorted(unknown))}): use the photoctl that made the database"
                )
    unknown_tables = present - {table.name for table in tables()}
    if unknown_tables:
        raise PhotoctlError(
            f"db copy: tables this photoctl does not know ({', '.join(sorted(unknown_tables))}): "
            "use the photoctl that made the database"
        )


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """One read transaction that sees one state of the whole database."""
    with db.translate_errors(), engine.connect() as conn:
        if db.is_postgresql(conn):
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        else:
            conn = conn.execution_options(sqlite_begin="DEFERRED")
        with conn.begin():
            yield conn


def _count(conn: Connection, table: Table) -> int:
    return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _copy_rows(
    reading: Connection, writing: Connection, counts: dict[str, int], progress: Progress | None
) -> tuple[str, dict[str, int]]:
    """Every source row into the target (emptied of init's rows first): the target's own
    database id, and the rows written per table."""
    meta = Meta.__table__
    own_id = writing.execute(select(meta.c.value).where(meta.c.key == ID_KEY)).scalar_one()
    for table in reversed(tables()):
        writing.execute(table.delete())
    total, done = sum(counts.values()), 0
    written = dict.fromkeys(counts, 0)
    if progress:
        progress(0, total)
    for table in tables():
        order = list(table.primary_key.columns)
        result = reading.execution_options(yield_per=BATCH).execute(select(table).order_by(*order))
        for batch in result.partitions():
            rows = [dict(row._mapping) for row in batch]
            if table is meta:
                rows = [row for row in rows if row["key"] not in (ID_KEY, "copied_from")]
            if rows:
                _insert(writing, table, rows)
            written[table.name] += len(rows)
            done += len(batch)
            if progress:
                progress(done, total)
    source_id = reading.execute(select(meta.c.value).where(meta.c.key == ID_KEY)).scalar()
    copied = f"{source_id} at {datetime.now(UTC).isoformat(timespec='seconds')}"
    writing.execute(
        meta.insert(), [{"key": ID_KEY, "value": own_id}, {"key": "copied_from", "value": copied}]
    )
    written[meta.name] += 2
    return own_id, written


def _insert(writing: Connection, table: Table, rows: list[dict[str, object]]) -> None:
    try:
        writing.execute(table.insert(), rows)
    except (exc.DataError, exc.IntegrityError) as error:
        # SQLite keeps what PostgreSQL refuses (a string longer than its column, a NUL byte).
        reason = (str(error.orig or error).strip().splitlines() or ["refused"])[0]
        raise PhotoctlError(
            f"db copy: the target refused a row of {table.name} ({reason}); nothing was "
            "committed: fix that row in the source and copy again"
        ) from None


def _id_column(table: Table) -> str | None:
    """The name of a table's own integer id (one handed out by the database), or None."""
    keys = list(table.primary_key.columns)
    if len(keys) == 1 and isinstance(keys[0].type, Integer) and keys[0].autoincrement is True:
        return keys[0].name
    return None


def _advance_ids(reading: Connection, writing: Connection) -> None:
    """Move each id counter of the target past every id the source ever handed out."""
    for table in tables():
        column = _id_column(table)
        if column is None:
            continue
        highest = max(
            reading.execute(select(func.max(table.c[column]))).scalar() or 0,
            _handed_out(reading, table.name, column),
        )
        if db.is_postgresql(writing):
            # setval(…, 1, false): the next id is 1, for a table that never had a row.
            writing.execute(
                text("SELECT setval(pg_get_serial_sequence(:table, :column), :value, :called)"),
                {
                    "table": table.name,
                    "column": column,
                    "value": highest or 1,
                    "called": highest > 0,
                },
            )
        elif highest:
            updated = writing.execute(
                text("UPDATE sqlite_sequence SET seq = MAX(seq, :value) WHERE name = :table"),
                {"table": table.name, "value": highest},
            )
            if not updated.rowcount:
                writing.execute(
                    text("INSERT INTO sqlite_sequence (name, seq) VALUES (:table, :value)"),
                    {"table": table.name, "value": highest},
                )


def _handed_out(conn: Connection, table: str, column: str) -> int:
    """The highest id the source's counter has handed out (0 if it never did)."""
    if db.is_postgresql(conn):
        sequence = conn.execute(
            text("SELECT pg_get_serial_sequence(:table, :column)"),
            {"table": table, "column": column},
        ).scalar()
        if sequence is None:
            return 0
        last, called = conn.execute(text(f"SELECT last_value, is_called FROM {sequence}")).one()
        return int(last) if called else 0
    seq = conn.execute(
        text("SELECT seq FROM sqlite_sequence WHERE name = :table"), {"table": table}
    ).scalar()
    return int(seq or 0)


def _verify(writing: Connection, written: dict[str, int]) -> None:
    """The target holds exactly the rows written (checked before the commit)."""
    for table in tables():
        held = _count(writing, table)
        if held != written[table.name]:
            raise PhotoctlError(
                f"db copy: {table.name} holds {held} rows on the target, {written[table.name]} "
                "were written; nothing was committed"
            )
