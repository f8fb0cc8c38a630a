"""Shared fixtures: a clean environment, one database per test (SQLite file or PostgreSQL).

``db_url``, ``settings`` and ``engine`` give a database at the latest schema, copied from a
template migrated once per session; ``empty_db_url`` and ``empty_postgres_url`` give an empty one,
for the tests of what creates or migrates a database. Helpers live in tests/support/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from photoctl import config, db
from testkit.fake_rekognition import AWS_ENV, FakeRekognition
from testkit.seaweedfs import SeaweedFS, SeaweedFSUnavailable
from tests.support import databases
from tests.support.cli import is_photoctl_variable

POSTGRES_ADMIN_URL = os.environ.get(
    "PHOTOCTL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (order kept otherwise): xdist hands tests out in this order, and a long
    test started last would keep one process busy while the others have nothing left to do."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PHOTOCTL_* or historic variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if is_photoctl_variable(name):
            monkeypatch.delenv(name)
    # boto3 would otherwise look for an instance role at the EC2 metadata address: tests
    # talk to this machine only.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake() -> Iterator[FakeRekognition]:
    """The local Rekognition endpoint (testkit/fake_rekognition.py) that real boto3 talks to."""
    with FakeRekognition() as server:
        yield server


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy AWS credentials and region, so boto3 signs its requests to the fake endpoint."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def rekognition_settings(settings: config.Settings, fake: FakeRekognition, aws: None):
    """The test's settings with the Rekognition engine, at the fake endpoint (50 calls/s)."""
    return settings.replace(
        "rekognition", endpoint_url=fake.endpoint_url, region="eu-west-1", max_tps=50.0
    ).replace("faces", engine="rekognition")


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A real S3-compatible server (testkit/seaweedfs.py), one per session and xdist worker."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    try:
        server.start()
    except SeaweedFSUnavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"SeaweedFS could not start: {error} (CI must run the S3 tests)")
        pytest.skip(f"SeaweedFS could not start: {error}")
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh bucket on the session's SeaweedFS, with its credentials in the environment."""
    for name, value in seaweedfs.env.items():
        monkeypatch.setenv(name, value)
    bucket = seaweedfs.new_bucket()
    yield bucket
    seaweedfs.delete_bucket(bucket)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    problem = databases.postgres_problem(POSTGRES_ADMIN_URL)
    if problem:
        message = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {problem}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the PostgreSQL tests)")
        pytest.skip(message)
    return POSTGRES_ADMIN_URL


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_url: str) -> Iterator[str]:
    """A PostgreSQL database (its name) migrated once a session; ``postgres_url`` copies it."""
    name = databases.unique_name()
    try:
        databases.migrate(databases.create_postgres(postgres_admin_url, name))
        yield name
    finally:
        databases.drop_postgres(postgres_admin_url, name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once for the session; ``db_url`` copies it."""
    path = tmp_path_factory.mktemp("sqlite-template") / "photoctl.db"
    databases.migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_pool(
    postgres_admin_url: str, postgres_template: str
) -> Iterator[databases.PostgresPool]:
    """Migrated databases emptied between tests: cheaper than a drop (see PostgresPool)."""
    pool = databases.PostgresPool(postgres_admin_url, postgres_template)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def empty_postgres_pool(postgres_admin_url: str) -> Iterator[databases.PostgresPool]:
    """Empty databases, their public schema made anew between tests (see PostgresPool)."""
    pool = databases.PostgresPool(postgres_admin_url, None)
    yield pool
    pool.close()


@pytest.fixture
def empty_postgres_url(empty_postgres_pool: databases.PostgresPool) -> Iterator[str]:
    """An empty PostgreSQL database (no table) for this test alone."""
    name, url = empty_postgres_pool.take()
    yield url
    empty_postgres_pool.give_back(name)


@pytest.fixture
def postgres_url(postgres_pool: databases.PostgresPool) -> Iterator[str]:
    """A PostgreSQL database at the latest schema, with no rows, for this test alone."""
    name, url = postgres_pool.take()
    yield url
    postgres_pool.give_back(name)


@pytest.fixture(params=DATABASES)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """No database yet: a SQLite file that does not exist, or an empty PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'photoctl.db'}"
    return request.getfixturevalue("empty_postgres_url")


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test against a SQLite file and a PostgreSQL database, both at the latest schema."""
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        return databases.clone_sqlite(template, tmp_path / "data" / "photoctl.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> config.Settings:
    return config.load(
        data_dir=str(tmp_path / "data"), environ={}, overrides={"database.url": db_url}
    )


@pytest.fixture
def engine(settings: config.Settings):
    engine = db.make_engine(settings)
    db.ensure_schema(engine)  # one SELECT on a copy of the template: it is at the latest
    yield engine
    engine.dispose()
