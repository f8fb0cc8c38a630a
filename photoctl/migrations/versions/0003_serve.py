"""Login tokens, uploads, and when each match became visible (time to findable).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("matches") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="photo"))
        batch.add_column(sa.Column("findable_at", sa.Float(), nullable=True))
    op.create_index("ix_matches_findable_at", "matches", ["findable_at"])
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("uploaded_by", sa.Integer(), nullable=True))
    op.create_table(
        "login_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_login_tokens_user_id_users"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_login_tokens"),
    )
    op.create_index("ix_login_tokens_user_id", "login_tokens", ["user_id"])


def downgrade() -> None:
    op.drop_table("login_tokens")
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("uploaded_by")
    op.drop_index("ix_matches_findable_at", "matches")
    with op.batch_alter_table("matches") as batch:
        batch.drop_column("findable_at")
        batch.drop_column("source")
