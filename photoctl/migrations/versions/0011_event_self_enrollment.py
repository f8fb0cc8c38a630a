"""Self-enrollment is a switch of each event, and the default event's starts off.

Revision ID: 0011
Revises: 0010

The default event holds everything ingested without ``--event``, uploads and the quickstart
photos, and its page ``/e/default`` asked for no access code: anyone who could reach serve
could enroll a face found anywhere and get that person's photos. ``events.self_enrollment``
says whether an event's page takes enrollments; every existing event keeps taking them except
the default one, which an organizer opens with ``photoctl events edit default
--self-enrollment on``. Adding a column with a default needs no table rebuild on SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "events",
        sa.Column("self_enrollment", sa.Boolean(), server_default=sa.true(), nullable=False),
    )
    # Its slug, not id 1: a database whose default event was given another id keeps it closed.
    op.execute(
        sa.text("UPDATE events SET self_enrollment = :off WHERE slug = 'default'").bindparams(
            off=False
        )
    )


def downgrade() -> None:
    # The default event's page then takes enrollments again, as it did before 0011.
    with op.batch_alter_table("events", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("self_enrollment")
