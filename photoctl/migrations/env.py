"""Alembic environment: always runs on the connection db.ensure_schema hands over."""

from __future__ import annotations

from alembic import context

from photoctl.models import Base

connection = context.config.attributes["connection"]
# Batch mode lets later migrations alter SQLite tables (it rebuilds them).
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
