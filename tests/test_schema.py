"""Migrations: an empty database is created on first use and matches the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from photoctl import config, db
from photoctl.migrations import SCHEMA_REVISION
from photoctl.models import Base


@pytest.fixture
def engine(tmp_path: Path, empty_db_url: str):
    """An engine on an empty database, migrated on first use (not a copy of the template)."""
    settings = config.load(
        data_dir=str(tmp_path / "data"), environ={}, overrides={"database.url": empty_db_url}
    )
    engine = db.make_engine(settings)
    assert db.current_revision(engine) is None
    db.ensure_schema(engine)
    yield engine
    engine.dispose()


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
