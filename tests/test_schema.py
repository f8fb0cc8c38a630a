"""Migrations: an empty database is created on first use and matches the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from photoctl import db
from photoctl.migrations import SCHEMA_REVISION
from photoctl.models import Base


def test_schema_revision_constant_is_alembics_head() -> None:
    script = ScriptDirectory.from_config(db._alembic_config())
    assert script.get_current_head() == SCHEMA_REVISION


def test_migrated_schema_matches_the_models(engine) -> None:
    assert db.current_revision(engine) == SCHEMA_REVISION
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_ensure_schema_twice_is_a_no_op(engine) -> None:
    db.ensure_schema(engine)
    assert db.current_revision(engine) == SCHEMA_REVISION
