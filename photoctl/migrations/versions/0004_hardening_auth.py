"""Ids that are never reused on SQLite, and the database's own identity.

SQLite hands out max(id)+1 for a plain INTEGER PRIMARY KEY, so deleting the newest user gave
the next user the same id, and with it the deleted user's cached photo lists. AUTOINCREMENT
needs the table to be rebuilt (batch mode); ``db.ensure_schema`` runs migrations on SQLite with
foreign keys off, as SQLite's own procedure for rebuilding a table requires: with them on,
dropping the old ``users`` table would cascade-delete every selfie, match and login token.

``photoctl_meta`` holds ``database_id``, a UUID made once with the schema: the response cache
(one directory, possibly shared by several databases) puts it in every key.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_REBUILT = ("photos", "users", "faces")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
            # Refuse rather than lose data: see the module docstring.
            raise RuntimeError("migration 0004 must run with SQLite foreign keys off")
        for table in _REBUILT:
            with op.batch_alter_table(
                table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
            ):
                pass
    meta = op.create_table(
        "photoctl_meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_photoctl_meta"),
    )
    op.bulk_insert(meta, [{"key": "database_id", "value": str(uuid.uuid4())}])


def downgrade() -> None:
    op.drop_table("photoctl_meta")
    # AUTOINCREMENT stays: going back to reused ids would bring the defect back.
