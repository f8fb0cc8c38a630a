"""Face-service calls counted per event as well as per UTC day and operation.

Revision ID: 0009
Revises: 0008

``service_calls`` gains ``event`` (the event's slug) in its key. Rows counted before this
revision cannot be told apart by event (a day's row sums the calls of every event), so they keep
the empty key ``""`` ("before per-event counts"): putting them under the default event would
bill it for other events' calls. Totals are unchanged. The table is rebuilt (create, copy,
drop, rename) rather than altered: changing a primary key in place differs between SQLite and
PostgreSQL, a copy does not.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COUNTS = ("accepted", "throttled", "failed")


def _create(name: str, key: tuple[str, ...]) -> None:
    columns: list[sa.Column] = [
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
    ]
    if "event" in key:
        columns.append(sa.Column("event", sa.String(64), nullable=False, server_default=""))
    columns.append(sa.Column("operation", sa.String(64), nullable=False))
    columns += [sa.Column(count, sa.Integer(), nullable=False) for count in _COUNTS]
    op.create_table(name, *columns, sa.PrimaryKeyConstraint(*key, name=f"pk_{name}"))


def _rebuild(key: tuple[str, ...], select_sql: str) -> None:
    _create("service_calls_new", key)
    op.execute(f"INSERT INTO service_calls_new ({', '.join(key + _COUNTS)}) {select_sql}")
    op.drop_table("service_calls")
    op.rename_table("service_calls_new", "service_calls")
    # The constraint keeps the name it was created with; give it the table's usual one.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE service_calls RENAME CONSTRAINT pk_service_calls_new TO pk_service_calls"
        )


def upgrade() -> None:
    _rebuild(
        ("service", "day", "event", "operation"),
        "SELECT service, day, '', operation, accepted, throttled, failed FROM service_calls",
    )


def downgrade() -> None:
    _rebuild(
        ("service", "day", "operation"),
        "SELECT service, day, operation, SUM(accepted), SUM(throttled), SUM(failed) "
        "FROM service_calls GROUP BY service, day, operation",
    )
