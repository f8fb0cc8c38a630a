"""Indexes for the operator's figures at a million jobs (issue 23).

Revision ID: 0013
Revises: 0012

`jobs list` shows the newest jobs (``created_at``), with or without a state; `stats` counts
jobs by kind and state, finds the oldest waiting job and counts photos the face service
refused (``faces_error``, rare: a partial index holds only those). Without these each was a
scan of every job or photo (1.2-1.5 s at a million jobs).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_index("ix_jobs_state_created_at", "jobs", ["state", "created_at"])
    op.create_index("ix_jobs_kind_state", "jobs", ["kind", "state"])
    op.create_index(
        "ix_photos_faces_error",
        "photos",
        ["faces_error"],
        postgresql_where=sa.text("faces_error IS NOT NULL"),
        sqlite_where=sa.text("faces_error IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_photos_faces_error", "photos")
    op.drop_index("ix_jobs_kind_state", "jobs")
    op.drop_index("ix_jobs_state_created_at", "jobs")
    op.drop_index("ix_jobs_created_at", "jobs")
