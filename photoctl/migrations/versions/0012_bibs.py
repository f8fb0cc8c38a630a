"""Bib numbers: events that read them, start lists, bibs read in photos, participants' bibs.

Revision ID: 0012
Revises: 0011

A bib is not biometric data; a start list's names are personal data (deleted with the event's
face data at its purge). ``bib_reads`` is keyed by photo and bib, so a rerun of the bib step
stores each bib once; ``photos.bibs_read_at`` is the step's checkpoint. Adding columns with
defaults needs no table rebuild on SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "events", sa.Column("bibs", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column("events", sa.Column("bib_range", sa.String(32), nullable=True))
    op.add_column("events", sa.Column("bib_pattern", sa.Text(), nullable=True))
    op.add_column(
        "events", sa.Column("bib_search", sa.String(8), server_default="public", nullable=False)
    )
    op.add_column("photos", sa.Column("bibs_read_at", sa.Float(), nullable=True))
    op.add_column("photos", sa.Column("bib_texts_unread", sa.Integer(), nullable=True))
    op.create_table(
        "start_list",
        sa.Column(
            "event_id",
            sa.Integer(),
            sa.ForeignKey("events.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("bib", sa.String(16), primary_key=True),
        sa.Column("name", sa.Text(), nullable=True),
    )
    op.create_table(
        "bib_reads",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "photo_id",
            sa.Integer(),
            sa.ForeignKey("photos.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_id", sa.Integer(), sa.ForeignKey("events.id"), nullable=False),
        sa.Column("bib", sa.String(16), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("box_left", sa.Float(), nullable=False),
        sa.Column("box_top", sa.Float(), nullable=False),
        sa.Column("box_width", sa.Float(), nullable=False),
        sa.Column("box_height", sa.Float(), nullable=False),
        sa.Column("read_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("photo_id", "bib"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_bib_reads_event_bib", "bib_reads", ["event_id", "bib"])
    op.create_table(
        "participant_bibs",
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("bib", sa.String(16), primary_key=True),
        sa.Column("event_id", sa.Integer(), sa.ForeignKey("events.id"), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_participant_bibs_event_bib", "participant_bibs", ["event_id", "bib"])


def downgrade() -> None:
    op.drop_index("ix_participant_bibs_event_bib", table_name="participant_bibs")
    op.drop_table("participant_bibs")
    op.drop_index("ix_bib_reads_event_bib", table_name="bib_reads")
    op.drop_table("bib_reads")
    op.drop_table("start_list")
    with op.batch_alter_table("photos", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("bib_texts_unread")
        batch.drop_column("bibs_read_at")
    with op.batch_alter_table("events", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("bib_search")
        batch.drop_column("bib_pattern")
        batch.drop_column("bib_range")
        batch.drop_column("bibs")
