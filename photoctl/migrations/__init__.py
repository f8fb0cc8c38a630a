"""Alembic migrations for photoctl's schema, applied automatically by db.ensure_schema."""

# The newest revision in versions/; a test checks it against Alembic's own idea of the head.
SCHEMA_REVISION = "0013"
