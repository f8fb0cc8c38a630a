"""Face-service calls counted per day and operation; the reason a photo's face step failed.

Revision ID: 0008
Revises: 0007

``service_calls`` is what the shared call limiter counts (accepted, throttled, failed answers),
so throttles and errors are visible across every process and the bill can be estimated.
``photos.faces_error`` says why a photo has thumbnails but no faces (the face service refused
it). Both start empty: existing rows are untouched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_calls",
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("throttled", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("service", "day", "operation", name="pk_service_calls"),
    )
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("faces_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("faces_error")
    op.drop_table("service_calls")
