"""S3 storage under faults (issue 12, item 5): the object store down or hanging, against a real
SeaweedFS behind a switchable TCP forwarder (testkit/tcp_proxy.py).

A store that does not answer is not the photo's fault: uploads answer 503 and store nothing,
workers give their job back with its attempt and wait for the store, then finish; nothing is
lost. Both databases.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from photoctl import config, db, users
from photoctl.api.app import create_app
from photoctl.ingest import ingest_paths
from photoctl.models import Job, Photo
from photoctl.worker import drain_in_process
from testkit.photos import jpeg_bytes, write_photo
from testkit.seaweedfs import SeaweedFS
from testkit.tcp_proxy import TcpProxy
from tests.support.worker import wait_for

# One SeaweedFS for all of them: the S3 tests share an xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("seaweedfs")


@pytest.fixture
def proxy(seaweedfs: SeaweedFS) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", seaweedfs.ports["s3.port"]) as forwarder:
        yield forwarder


@pytest.fixture
def settings_via_proxy(
    tmp_path: Path, db_url: str, proxy: TcpProxy, s3_bucket: str
) -> config.Settings:
    overrides = {
        "database.url": db_url,
        "storage.root": f"s3://{s3_bucket}/p",
        "storage.endpoint_url": proxy.url,
        "storage.timeout_seconds": 1.0,
        "queue.retry_base_seconds": 0.1,
    }
    return config.load(data_dir=str(tmp_path / "data"), environ={}, overrides=overrides)


@pytest.fixture
def database(settings_via_proxy: config.Settings) -> Iterator[Engine]:
    engine = db.make_engine(settings_via_proxy)
    db.ensure_schema(engine)
    yield engine
    engine.dispose()


def test_uploads_answer_503_while_the_store_is_down_and_store_nothing(
    settings_via_proxy: config.Settings, database: Engine, proxy: TcpProxy
) -> None:
    _, token = users.add_user(database, "ann")
    with TestClient(create_app(settings_via_proxy)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        proxy.set_mode("down")
        refused = client.post("/api/photos", files={"file": ("a.jpg", jpeg_bytes(seed=1))})
        with db.read(database) as conn:
            photos_while_down = conn.execute(select(Photo.id)).all()
        proxy.set_mode("pass")
        accepted = client.post("/api/photos", files={"file": ("a.jpg", jpeg_bytes(seed=1))})

    assert refused.status_code == 503 and "Retry-After" in refused.headers
    assert photos_while_down == []
    assert accepted.status_code == 202, accepted.text


def test_a_worker_waits_out_a_hanging_store_and_finishes_every_job_without_spending_attempts(
    tmp_path: Path,
    settings_via_proxy: config.Settings,
    database: Engine,
    proxy: TcpProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for seed in range(2):
        write_photo(tmp_path / "in" / f"IMG_{seed}.jpg", seed=seed)
    assert ingest_paths(database, settings_via_proxy, [str(tmp_path / "in")]).new == 2
    proxy.set_mode("hang")
    caplog.set_level(logging.INFO)
    worker = threading.Thread(target=drain_in_process, args=(settings_via_proxy, "none"))
    worker.start()
    try:
        wait_for(
            lambda: "stop claiming until the object store answers" in caplog.text, 60, "the pause"
        )
    finally:
        proxy.set_mode("pass")
        worker.join(120)

    assert not worker.is_alive()
    with db.read(database) as conn:
        jobs = conn.execute(select(Job.state, Job.attempts)).all()
    assert sorted(jobs) == [("done", 1), ("done", 1)]  # the outage cost no attempt
    assert "the object store answers again" in caplog.text
