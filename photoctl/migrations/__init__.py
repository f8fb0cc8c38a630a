"""Alembic migrations for photoctl's schema, applied automatically by db.ensure_schema."""
