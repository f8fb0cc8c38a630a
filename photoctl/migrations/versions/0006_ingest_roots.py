"""Ingest roots: the resolved folders ingest was given, which bound what /original serves.

Revision ID: 0006
Revises: 0005

Existing databases get, as roots, the folders of the photos already ingested (as close as the
old schema allows to "the folders ingest was given"); a folder ingested again is registered by
ingest itself.
"""

from __future__ import annotations

import os
import time

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    roots = op.create_table(
        "ingest_roots",
        sa.Column("path", sa.LargeBinary(), nullable=False),
        sa.Column("added_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("path", name="pk_ingest_roots"),
    )
    connection = op.get_bind()
    folders = set()
    for (source_path,) in connection.execute(
        sa.text("SELECT source_path FROM photos WHERE uploaded_by IS NULL")
    ):
        folder = os.path.dirname(bytes(source_path))
        # Absolute folders count even where this machine does not see them (the upgrade may run
        # on any machine sharing a PostgreSQL database); relative ones only when they resolve
        # from here, as they would for the process that ingested them.
        if folder.startswith(b"/") or (folder and os.path.isdir(folder)):
            folders.add(os.path.realpath(folder))
    now = time.time()
    if folders:
        op.bulk_insert(roots, [{"path": folder, "added_at": now} for folder in sorted(folders)])


def downgrade() -> None:
    op.drop_table("ingest_roots")
