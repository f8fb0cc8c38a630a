"""Access codes hashed with salted scrypt: the column holds the longer hash.

Revision ID: 0010
Revises: 0009

``events.access_code_hash`` was a 64-character SHA-256 hex digest; a code is now hashed as
passwords are (``scrypt$<salt>$<digest>``, 104 characters), so the column becomes TEXT like
``users.password_hash``. Hashes stored before stay valid: events.access_code_matches verifies
them as SHA-256 and hashes the code again with scrypt the first time it opens enrollment.
On SQLite the table is rebuilt (batch mode, foreign keys off: see 0004).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The rebuilt SQLite table keeps never reusing ids (0004).
_KEEP_AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("events", table_kwargs=_KEEP_AUTOINCREMENT) as batch:
        batch.alter_column("access_code_hash", existing_type=sa.String(64), type_=sa.Text())


def downgrade() -> None:
    # A scrypt hash does not fit back: those codes are removed (the event asks for none) rather
    # than cut short; set them again with `photoctl events edit SLUG --access-code`.
    op.execute("UPDATE events SET access_code_hash = NULL WHERE access_code_hash LIKE 'scrypt$%'")
    with op.batch_alter_table("events", table_kwargs=_KEEP_AUTOINCREMENT) as batch:
        batch.alter_column("access_code_hash", existing_type=sa.Text(), type_=sa.String(64))
