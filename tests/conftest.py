"""Shared fixtures: a clean environment, one database per test (SQLite file or PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from photoctl import config, db
from photoctl.config import HISTORIC_ENV_NAMES as _HISTORIC

POSTGRES_ADMIN_URL = os.environ.get(
    "PHOTOCTL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PHOTOCTL_* or historic variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("PHOTOCTL_") or name in _HISTORIC:
            monkeypatch.delenv(name)
    # boto3 would otherwise look for an instance role at the EC2 metadata address: tests
    # talk to this machine only.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.chdir(tmp_path)


def _postgres_available() -> str | None:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as error:
        return str(error).strip()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    problem = _postgres_available()
    if problem:
        message = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {problem}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the PostgreSQL tests)")
        pytest.skip(message)
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"photoctl_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test against a SQLite file and against a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'photoctl.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> config.Settings:
    return config.load(
        data_dir=str(tmp_path / "data"), environ={}, overrides={"database.url": db_url}
    )


@pytest.fixture
def engine(settings: config.Settings):  # noqa: ANN201
    engine = db.make_engine(settings)
    db.ensure_schema(engine)
    yield engine
    engine.dispose()


def photoctl_env(tmp_path: Path, db_url: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a photoctl subprocess: its own data dir and database."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PHOTOCTL_") and k not in _HISTORIC
    }
    env["PHOTOCTL_DATA_DIR"] = str(tmp_path / "data")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    if db_url:
        env["PHOTOCTL_DATABASE_URL"] = db_url
    env.update(extra)
    return env


def run_photoctl(
    args: list[str], env: dict[str, str], timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess and capture what it prints."""
    return subprocess.run(
        [sys.executable, "-m", "photoctl", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
