"""Thumbnail and preview paths relative to the storage root instead of the worker's cwd.

Workers used to store paths such as ``photoctl-data/storage/thumbs/ab/<hash>.jpg``: relative to
the directory the worker ran in, so serve started anywhere else answered 404. The old working
directory is unknown here, so a path is rewritten only where its storage part is recognisable:
everything up to and including a ``storage`` component followed by ``thumbs/`` or ``previews/``
is dropped (relative and absolute paths alike). Anything else is left as it is; an absolute path
left alone still works, since ``settings.storage_file`` uses absolute paths unchanged.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BATCH = 1000
_KINDS = ("thumbs", "previews")


def storage_relative(stored: str | None) -> str | None:
    """The path relative to the storage root if it is recognisable, else ``stored`` unchanged."""
    if not stored:
        return stored
    parts = stored.split("/")
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "storage" and parts[index + 1] in _KINDS:
            return "/".join(parts[index + 1 :])
    return stored


def upgrade() -> None:
    photos = sa.table(
        "photos",
        sa.column("id", sa.Integer),
        sa.column("thumb_path", sa.Text),
        sa.column("preview_path", sa.Text),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(photos.c.id, photos.c.thumb_path, photos.c.preview_path).where(
            sa.or_(photos.c.thumb_path.is_not(None), photos.c.preview_path.is_not(None))
        )
    ).all()
    changed = [
        {"row_id": row_id, "thumb": storage_relative(thumb), "preview": storage_relative(preview)}
        for row_id, thumb, preview in rows
        if (storage_relative(thumb), storage_relative(preview)) != (thumb, preview)
    ]
    statement = (
        sa.update(photos)
        .where(photos.c.id == sa.bindparam("row_id"))
        .values(thumb_path=sa.bindparam("thumb"), preview_path=sa.bindparam("preview"))
    )
    for start in range(0, len(changed), _BATCH):
        connection.execute(statement, changed[start : start + _BATCH])


def downgrade() -> None:
    # The old paths depended on a working directory nobody recorded: nothing to restore.
    pass
