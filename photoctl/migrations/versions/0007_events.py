"""Events, participants, "not me" rejections and the audit log (issue 10).

Revision ID: 0007
Revises: 0006

The default event is created first, into the empty ``events`` table, so it gets id 1 on both
databases: ``photos.event_id`` and ``users.event_id`` default to 1, which puts every existing
photo and user (and anything inserted without an event) in it. On SQLite the two tables are
rebuilt in batch mode with AUTOINCREMENT kept (see 0004), foreign keys off (db.ensure_schema).
"""

from __future__ import annotations

import hashlib
import time

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Frozen here: later wording changes in photoctl.events must not change what this revision did.
_DEFAULT_RETENTION_DAYS = 365
_DEFAULT_CONSENT = (
    "Your selfie is turned into a face template (numbers describing your face) and compared "
    "with the faces in this event's photos, so that you can find the photos you appear in. "
    "We keep the face template, the list of photos you were found in, the time you agreed and "
    "the version of this text; the selfie image itself is not kept. Your face data is deleted "
    "when you delete it from your gallery page, and at the latest when the event's retention "
    "period ends. Photos themselves are not deleted."
)


def upgrade() -> None:
    events = op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("date", sa.String(10), nullable=True),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("consent_text", sa.Text(), nullable=False),
        sa.Column("consent_version", sa.String(64), nullable=False),
        sa.Column("access_code_hash", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("closed_at", sa.Float(), nullable=True),
        sa.Column("purged_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("slug", name="uq_events_slug"),
        sqlite_autoincrement=True,
    )
    op.bulk_insert(
        events,
        [
            {
                "slug": "default",
                "title": "Photos",
                "date": None,
                "retention_days": _DEFAULT_RETENTION_DAYS,
                "consent_text": _DEFAULT_CONSENT,
                "consent_version": hashlib.sha256(_DEFAULT_CONSENT.encode()).hexdigest(),
                "access_code_hash": None,
                "created_at": time.time(),
                "closed_at": None,
                "purged_at": None,
            }
        ],
    )
    default_id = op.get_bind().execute(sa.text("SELECT id FROM events")).scalar_one()
    if default_id != 1:
        raise RuntimeError(f"the default event got id {default_id}, not 1")

    with op.batch_alter_table("photos", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("event_id", sa.Integer(), nullable=False, server_default="1"))
        batch.create_foreign_key("fk_photos_event_id_events", "events", ["event_id"], ["id"])
        batch.create_index("ix_photos_event_id", ["event_id"])
    with op.batch_alter_table("users", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("event_id", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("gallery_token_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("consent_version", sa.String(64), nullable=True))
        batch.add_column(sa.Column("consented_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("erased_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("erased_by", sa.String(16), nullable=True))
        batch.create_foreign_key("fk_users_event_id_events", "events", ["event_id"], ["id"])
        batch.create_index("ix_users_event_id", ["event_id"])
        batch.create_unique_constraint("uq_users_gallery_token_hash", ["gallery_token_hash"])

    op.create_table(
        "rejections",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("photo_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_rejections_user_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["photo_id"], ["photos.id"], ondelete="CASCADE", name="fk_rejections_photo_id_photos"
        ),
        sa.PrimaryKeyConstraint("user_id", "photo_id", name="pk_rejections"),
    )
    op.create_index("ix_rejections_photo_id", "rejections", ["photo_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False, server_default="{}"),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name="fk_audit_log_event_id_events"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_log_event_id", "audit_log", ["event_id"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("rejections")
    with op.batch_alter_table("users", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_constraint("uq_users_gallery_token_hash", type_="unique")
        batch.drop_index("ix_users_event_id")
        batch.drop_constraint("fk_users_event_id_events", type_="foreignkey")
        for column in (
            "erased_by",
            "erased_at",
            "consented_at",
            "consent_version",
            "gallery_token_hash",
            "event_id",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("photos", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_index("ix_photos_event_id")
        batch.drop_constraint("fk_photos_event_id_events", type_="foreignkey")
        batch.drop_column("event_id")
    op.drop_table("events")
