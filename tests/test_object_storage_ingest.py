"""Ingest with S3 storage (issue 12, item 2), against a real SeaweedFS, on both databases.

``ingest DIR`` copies each new original into the storage bucket (content-addressed, in parts
when large, not twice), so a worker that cannot see the folder still processes it; ``ingest
s3://bucket/prefix`` registers the images already in a bucket, deduplicated by content hash,
and a re-run skips unchanged objects by ETag and size without reading them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from photoctl import config, db
from photoctl.ingest import ingest_paths
from photoctl.models import Job, Photo
from photoctl.object_store import client_for
from photoctl.worker import drain_in_process
from testkit.photos import jpeg_bytes, write_photo
from testkit.seaweedfs import SeaweedFS
from tests.support.cli import photoctl_env, run_photoctl

# One SeaweedFS for all of them: the S3 tests share an xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("seaweedfs")

PREFIX = "store"


@pytest.fixture
def s3(tmp_path: Path, db_url: str, seaweedfs: SeaweedFS, s3_bucket: str) -> config.Settings:
    overrides = {
        "database.url": db_url,
        "storage.root": f"s3://{s3_bucket}/{PREFIX}",
        "storage.endpoint_url": seaweedfs.endpoint_url,
        "storage.multipart_mb": 5,
    }
    return config.load(data_dir=str(tmp_path / "data"), environ={}, overrides=overrides)


@pytest.fixture
def database(s3: config.Settings) -> Iterator[Engine]:
    engine = db.make_engine(s3)
    db.ensure_schema(engine)
    yield engine
    engine.dispose()


def sources(database: Engine) -> list[bytes]:
    with db.read(database) as conn:
        return sorted(bytes(path) for path in conn.execute(select(Photo.source_path)).scalars())


def job_states(database: Engine) -> list[str]:
    with db.read(database) as conn:
        return sorted(conn.execute(select(Job.state)).scalars())


def count_gets(s3: config.Settings) -> list[str]:
    """The keys this process's storage client GETs from now on (botocore's event hook)."""
    calls: list[str] = []
    client_for(s3.storage).meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: calls.append(params["url_path"])
    )
    return calls


def test_ingest_of_a_folder_copies_new_originals_into_the_bucket_once_for_any_worker(
    tmp_path: Path, s3: config.Settings, database: Engine, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    folder = tmp_path / "card"
    first = write_photo(folder / "IMG_1.jpg", seed=1)
    write_photo(folder / "IMG_2.jpg", seed=2)
    shutil.copy2(first, folder / "copy_of_1.jpg")  # same content: one photo, one object
    digest = hashlib.sha256(first.read_bytes()).hexdigest()

    report = ingest_paths(database, s3, [str(folder)])
    again = ingest_paths(database, s3, [str(folder)])
    shutil.rmtree(folder)  # the worker must not need the ingesting machine's disk
    drained = drain_in_process(s3, "none")

    assert (report.new, report.duplicates) == (2, 1)
    assert (again.new, again.unchanged) == (0, 3)  # skipped by path, size and mtime
    listed = seaweedfs.client().list_objects_v2(Bucket=s3_bucket, Prefix=f"{PREFIX}/originals/")
    keys = sorted(item["Key"] for item in listed["Contents"])
    assert len(keys) == 2 and f"{PREFIX}/originals/{digest[:2]}/{digest}.jpg" in keys
    assert sources(database) == sorted(f"s3://{s3_bucket}/{key}".encode() for key in keys)
    assert drained.done == 2 and job_states(database) == ["done", "done"]


def test_a_large_original_is_copied_in_parts_and_arrives_whole(
    tmp_path: Path, s3: config.Settings, database: Engine, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    big = tmp_path / "big" / "IMG_BIG.jpg"
    big.parent.mkdir()
    # A JPEG with 7 MiB of trailing bytes (decoders ignore them): two 5 MiB parts.
    big.write_bytes(jpeg_bytes(seed=3) + os.urandom(7 * 1024 * 1024))
    past = big.stat().st_mtime - 60
    os.utime(big, (past, past))
    digest = hashlib.sha256(big.read_bytes()).hexdigest()

    assert ingest_paths(database, s3, [str(big.parent)]).new == 1

    key = f"{PREFIX}/originals/{digest[:2]}/{digest}.jpg"
    stored = seaweedfs.client().get_object(Bucket=s3_bucket, Key=key)
    assert stored["ETag"].strip('"').endswith("-2")  # a multipart upload of two parts
    assert hashlib.sha256(stored["Body"].read()).hexdigest() == digest


def test_ingest_of_a_bucket_registers_its_images_and_skips_unchanged_ones_without_reading(
    s3: config.Settings, database: Engine, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    client = seaweedfs.client()
    incoming = seaweedfs.new_bucket("incoming")
    client.put_object(Bucket=incoming, Key="day1/a.jpg", Body=jpeg_bytes(seed=10))
    client.put_object(Bucket=incoming, Key="day1/b.jpg", Body=jpeg_bytes(seed=11))
    client.put_object(Bucket=incoming, Key="day1/sub/a-again.jpg", Body=jpeg_bytes(seed=10))
    client.put_object(Bucket=incoming, Key="day1/notes.txt", Body=b"not a photo")
    client.put_object(Bucket=incoming, Key="day2/c.jpg", Body=jpeg_bytes(seed=12))

    first = ingest_paths(database, s3, [f"s3://{incoming}/day1"])
    drained = drain_in_process(s3, "none").done  # the workers read them from the bucket
    gets = count_gets(s3)
    second = ingest_paths(database, s3, [f"s3://{incoming}/day1"])
    reads_of_the_rerun = list(gets)
    client.put_object(Bucket=incoming, Key="day1/b.jpg", Body=jpeg_bytes(seed=13))  # replaced
    third = ingest_paths(database, s3, [f"s3://{incoming}/day1"])
    reads_of_the_third_run = list(gets)
    drained += drain_in_process(s3, "none").done

    assert (first.new, first.duplicates, first.found, first.errors) == (2, 1, 3, [])
    assert (second.new, second.unchanged) == (0, 3)
    assert reads_of_the_rerun == []  # ETag and size said unchanged: nothing was read
    assert (third.new, third.unchanged) == (1, 2)
    assert reads_of_the_third_run == ["/day1/b.jpg"]  # only the replaced object
    assert f"s3://{incoming}/day1/a.jpg".encode() in sources(database)
    assert drained == 3 and job_states(database) == ["done"] * 3
    seaweedfs.delete_bucket(incoming)


def test_the_cli_ingests_a_bucket_and_doctor_says_the_store_answers(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    env = photoctl_env(
        tmp_path,
        **seaweedfs.env,
        PHOTOCTL_STORAGE_ROOT=f"s3://{s3_bucket}/st",
        PHOTOCTL_STORAGE_ENDPOINT_URL=seaweedfs.endpoint_url,
    )
    seaweedfs.client().put_object(Bucket=s3_bucket, Key="in/a.jpg", Body=jpeg_bytes(seed=20))

    ingested = run_photoctl(["ingest", "--json", f"s3://{s3_bucket}/in"], env, cwd=tmp_path)
    doctor = run_photoctl(["doctor", "--json"], env, cwd=tmp_path)

    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout)["new"] == 1
    checks = {check["name"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert checks["storage"]["ok"], checks["storage"]
    assert checks["storage"]["detail"] == f"s3://{s3_bucket}/st answers"
