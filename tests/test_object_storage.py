"""Photos and previews in S3-compatible object storage (issue 12), against a real SeaweedFS.

``storage.root = s3://bucket/prefix``: workers write thumbnails and previews into the bucket
under the same keys as on disk, uploads land there too, serve answers image routes with a
redirect to a presigned URL (or streams them) after the same authorization, and a missing object
fails its job with a reason naming it. Both databases, since jobs and photos are rows.
"""

from __future__ import annotations

import hashlib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from photoctl import config, db, users
from photoctl.api.app import create_app
from photoctl.ingest import ingest_paths
from photoctl.models import Job, Photo
from photoctl.pruning import prune
from photoctl.worker import drain_in_process
from testkit.photos import jpeg_bytes, write_photo
from testkit.seaweedfs import SeaweedFS

# One SeaweedFS for all of them: the S3 tests share an xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("seaweedfs")

PREFIX = "photos"


def s3_settings(
    tmp_path: Path, db_url: str, endpoint: str, bucket: str, **extra: str
) -> config.Settings:
    overrides = {
        "database.url": db_url,
        "storage.root": f"s3://{bucket}/{PREFIX}",
        "storage.endpoint_url": endpoint,
        "storage.timeout_seconds": 3.0,
        **extra,
    }
    return config.load(data_dir=str(tmp_path / "data"), environ={}, overrides=overrides)


@pytest.fixture
def s3(tmp_path: Path, db_url: str, seaweedfs: SeaweedFS, s3_bucket: str) -> config.Settings:
    return s3_settings(tmp_path, db_url, seaweedfs.endpoint_url, s3_bucket)


@pytest.fixture
def database(s3: config.Settings) -> Iterator[Engine]:
    engine = db.make_engine(s3)
    db.ensure_schema(engine)
    yield engine
    engine.dispose()


def bucket_keys(seaweedfs: SeaweedFS, bucket: str) -> set[str]:
    client = seaweedfs.client()
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def get_object(seaweedfs: SeaweedFS, bucket: str, key: str) -> bytes:
    return seaweedfs.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def ingest_and_work(tmp_path: Path, s3: config.Settings, database: Engine, count: int) -> None:
    for seed in range(count):
        write_photo(tmp_path / "in" / f"IMG_{seed}.jpg", seed=seed)
    report = ingest_paths(database, s3, [str(tmp_path / "in")])
    assert report.new == count, report.errors
    drain_in_process(s3, "none")


def test_workers_write_thumbnails_and_previews_into_the_bucket_under_the_disk_layout(
    tmp_path: Path, s3: config.Settings, database: Engine, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    ingest_and_work(tmp_path, s3, database, 3)

    with db.read(database) as conn:
        rows = conn.execute(select(Photo.content_hash, Photo.thumb_path, Photo.preview_path)).all()
    keys = bucket_keys(seaweedfs, s3_bucket)
    assert len(rows) == 3
    for digest, thumb, preview in rows:
        assert thumb == f"thumbs/{digest[:2]}/{digest}.jpg"
        assert preview == f"previews/{digest[:2]}/{digest}.jpg"
        assert {f"{PREFIX}/{thumb}", f"{PREFIX}/{preview}"} <= keys
        assert get_object(seaweedfs, s3_bucket, f"{PREFIX}/{preview}")[:2] == b"\xff\xd8"
    assert not (tmp_path / "data" / "storage").exists()  # nothing written to a local root


def open_client(settings: config.Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def test_serve_redirects_an_authorized_image_request_to_a_presigned_url(
    tmp_path: Path, s3: config.Settings, database: Engine, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    ingest_and_work(tmp_path, s3, database, 1)
    _, admin = users.add_user(database, "root", admin=True)
    _, stranger = users.add_user(database, "ann")
    with db.read(database) as conn:
        photo_id, preview = conn.execute(select(Photo.id, Photo.preview_path)).one()

    for client in open_client(s3):
        anonymous = client.get(f"/api/photos/{photo_id}/preview", follow_redirects=False)
        client.headers["Authorization"] = f"Bearer {stranger}"
        not_theirs = client.get(f"/api/photos/{photo_id}/preview", follow_redirects=False)
        client.headers["Authorization"] = f"Bearer {admin}"
        answer = client.get(f"/api/photos/{photo_id}/preview", follow_redirects=False)

    assert anonymous.status_code == 401
    assert not_theirs.status_code == 404  # as if it did not exist: no URL handed out
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(f"{seaweedfs.endpoint_url}/{s3_bucket}/{PREFIX}/{preview}?")
    assert "X-Amz-Expires=300" in location
    with urllib.request.urlopen(location, timeout=10) as fetched:
        assert fetched.read() == get_object(seaweedfs, s3_bucket, f"{PREFIX}/{preview}")


def test_serve_streams_images_from_the_bucket_when_told_to(
    tmp_path: Path, db_url: str, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    settings = s3_settings(
        tmp_path, db_url, seaweedfs.endpoint_url, s3_bucket, **{"storage.serve": "stream"}
    )
    engine = db.make_engine(settings)
    db.ensure_schema(engine)
    ingest_and_work(tmp_path, settings, engine, 1)
    _, admin = users.add_user(engine, "root", admin=True)
    with db.read(engine) as conn:
        photo_id, thumb = conn.execute(select(Photo.id, Photo.thumb_path)).one()
    engine.dispose()

    for client in open_client(settings):
        client.headers["Authorization"] = f"Bearer {admin}"
        answer = client.get(f"/api/photos/{photo_id}/thumb", follow_redirects=False)

    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
    assert answer.content == get_object(seaweedfs, s3_bucket, f"{PREFIX}/{thumb}")


def test_an_upload_is_stored_in_the_bucket_and_processed_from_there(
    s3: config.Settings, database: Engine, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    _, token = users.add_user(database, "ann")
    content = jpeg_bytes(seed=7)
    digest = hashlib.sha256(content).hexdigest()

    for client in open_client(s3):
        client.headers["Authorization"] = f"Bearer {token}"
        answer = client.post("/api/photos", files={"file": ("party.jpg", content, "image/jpeg")})
    drain_in_process(s3, "none")

    assert answer.status_code == 202, answer.text
    key = f"{PREFIX}/uploads/{digest[:2]}/{digest}.jpg"
    assert get_object(seaweedfs, s3_bucket, key) == content
    with db.read(database) as conn:
        source, processed = conn.execute(select(Photo.source_path, Photo.processed_at)).one()
    assert bytes(source) == f"s3://{s3_bucket}/{key}".encode()
    assert processed is not None  # the worker read the original from the bucket
    assert f"{PREFIX}/previews/{digest[:2]}/{digest}.jpg" in bucket_keys(seaweedfs, s3_bucket)


def test_a_missing_original_object_fails_its_job_with_a_reason_naming_it(
    s3: config.Settings, database: Engine, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    _, token = users.add_user(database, "ann")
    content = jpeg_bytes(seed=8)
    digest = hashlib.sha256(content).hexdigest()
    for client in open_client(s3):
        client.headers["Authorization"] = f"Bearer {token}"
        assert client.post("/api/photos", files={"file": ("a.jpg", content)}).status_code == 202
    key = f"{PREFIX}/uploads/{digest[:2]}/{digest}.jpg"
    seaweedfs.client().delete_object(Bucket=s3_bucket, Key=key)

    report = drain_in_process(s3, "none")

    with db.read(database) as conn:
        state, error, attempts = conn.execute(select(Job.state, Job.last_error, Job.attempts)).one()
    assert report.failed == 1 and state == "failed" and attempts == 1  # at once, not retried
    assert f"s3://{s3_bucket}/{key}" in error and "missing" in error


def upload_corrupt(settings: config.Settings, database: Engine) -> str:
    """Upload bytes that start like a JPEG but decode to nothing; their sha256."""
    _, token = users.add_user(database, "ann")
    content = b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 100
    for client in open_client(settings):
        client.headers["Authorization"] = f"Bearer {token}"
        assert client.post("/api/photos", files={"file": ("x.jpg", content)}).status_code == 202
    assert drain_in_process(settings, "none").failed == 1
    return hashlib.sha256(content).hexdigest()


def test_pruning_failed_jobs_deletes_failed_uploads_objects_and_rows(
    s3: config.Settings, database: Engine, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    digest = upload_corrupt(s3, database)
    key = f"{PREFIX}/uploads/{digest[:2]}/{digest}.jpg"
    assert key in bucket_keys(seaweedfs, s3_bucket)

    kept = prune(database, s3, 0, include_failed=False)
    pruned = prune(database, s3, 0, include_failed=True)

    assert (kept.jobs, kept.uploads_deleted) == (0, 0)
    assert (pruned.jobs, pruned.uploads_deleted) == (1, 1)
    assert key not in bucket_keys(seaweedfs, s3_bucket)
    with db.read(database) as conn:
        assert conn.execute(select(Photo.id)).all() == []


def test_pruning_failed_jobs_deletes_failed_uploads_on_a_local_disk_too(
    settings: config.Settings, engine: Engine
) -> None:
    digest = upload_corrupt(settings, engine)
    stored = settings.storage_root / "uploads" / digest[:2] / f"{digest}.jpg"
    assert stored.is_file()

    assert prune(engine, settings, 0, include_failed=True).uploads_deleted == 1

    assert not stored.exists()
