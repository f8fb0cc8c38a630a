"""Faces, users, selfies, matches, and the shared state of the face-service limiter.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("faces_engine", sa.String(32), nullable=True))
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("enrolled_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
        sa.UniqueConstraint("token_hash", name="uq_users_token_hash"),
    )
    op.create_table(
        "faces",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("photo_id", sa.Integer(), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("face_index", sa.Integer(), nullable=False),
        sa.Column("box_left", sa.Float(), nullable=False),
        sa.Column("box_top", sa.Float(), nullable=False),
        sa.Column("box_width", sa.Float(), nullable=False),
        sa.Column("box_height", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("external_id", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["photo_id"], ["photos.id"], ondelete="CASCADE", name="fk_faces_photo_id_photos"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_faces"),
        sa.UniqueConstraint(
            "photo_id", "engine", "face_index", name="uq_faces_photo_id_engine_face_index"
        ),
    )
    op.create_index("ix_faces_external_id", "faces", ["external_id"])
    op.create_table(
        "selfie_faces",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("external_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_selfie_faces_user_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_selfie_faces"),
    )
    op.create_index("ix_selfie_faces_user_id", "selfie_faces", ["user_id"])
    op.create_table(
        "matches",
        sa.Column("photo_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("face_id", sa.Integer(), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.Column("matched_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["photo_id"], ["photos.id"], ondelete="CASCADE", name="fk_matches_photo_id_photos"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_matches_user_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["face_id"], ["faces.id"], ondelete="CASCADE", name="fk_matches_face_id_faces"
        ),
        sa.PrimaryKeyConstraint("photo_id", "user_id", name="pk_matches"),
    )
    op.create_index("ix_matches_user_id", "matches", ["user_id"])
    op.create_table(
        "rate_limiters",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("next_slot_at", sa.Float(), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("slowed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_rate_limiters"),
    )
    op.create_table(
        "limiter_slots",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(128), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", "slot", name="pk_limiter_slots"),
    )


def downgrade() -> None:
    op.drop_table("limiter_slots")
    op.drop_table("rate_limiters")
    op.drop_table("matches")
    op.drop_table("selfie_faces")
    op.drop_table("faces")
    op.drop_table("users")
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("faces_engine")
