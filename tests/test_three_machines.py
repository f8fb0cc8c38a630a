"""Several machines for real (issue 12, item 7): one PostgreSQL, one SeaweedFS, and photoctl
processes that share no directory.

Machine A ingests a folder (its originals are copied into the bucket; the folder is then gone,
as if it were on A's disk only), B runs `work -n 2 --until-empty` and is killed with SIGKILL
mid-run, a fourth machine D finishes the queue, and C runs `serve`: a participant who enrolls on
C gets every photo they are in, and the preview bytes they download equal the object the workers
wrote. Faces come from the fake Rekognition endpoint (testkit/fake_rekognition.py: a face is a
coloured square), which every machine reaches over HTTP, as they would reach AWS.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from photoctl.models import Job
from testkit.fake_rekognition import FakeRekognition, make_face_image
from testkit.photos import settle
from testkit.seaweedfs import SeaweedFS
from tests.support.cli import photoctl_env, run_photoctl
from tests.support.serve import launch_server, stop_server
from tests.support.worker import list_jobs, start_photoctl, wait_for

# One SeaweedFS for all of them: the S3 tests share an xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("seaweedfs")

RED, BLUE = (255, 0, 0), (0, 0, 255)
SLUG = "finish-line"
PHOTOS = 24  # every third photo shows RED (with BLUE), the others BLUE alone


@pytest.fixture
def slow_fake() -> FakeRekognition:
    # Slow enough that B is still busy when it is killed.
    with FakeRekognition(latency_seconds=0.4) as server:
        yield server


def machine(tmp_path: Path, name: str, common: dict[str, str]) -> tuple[dict[str, str], Path]:
    """A machine's own working and data directory, and its environment."""
    home = tmp_path / name
    home.mkdir()
    return photoctl_env(home, **common), home


@pytest.mark.slow
@pytest.mark.postgres
def test_three_machines_share_only_the_database_and_the_bucket(
    tmp_path: Path,
    postgres_url: str,
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    slow_fake: FakeRekognition,
) -> None:
    common = {
        **seaweedfs.env,
        "PHOTOCTL_DATABASE_URL": postgres_url,
        "PHOTOCTL_STORAGE_ROOT": f"s3://{s3_bucket}/event",
        "PHOTOCTL_STORAGE_ENDPOINT_URL": seaweedfs.endpoint_url,
        "PHOTOCTL_FACES_ENGINE": "rekognition",
        "PHOTOCTL_REKOGNITION_ENDPOINT_URL": slow_fake.endpoint_url,
        "PHOTOCTL_REKOGNITION_REGION": "eu-west-1",
        "PHOTOCTL_REKOGNITION_MAX_TPS": "200",
        "PHOTOCTL_QUEUE_LEASE_SECONDS": "3",  # B's jobs come back soon after it dies
    }
    env_a, home_a = machine(tmp_path, "a", common)
    env_b, home_b = machine(tmp_path, "b", common)
    env_c, home_c = machine(tmp_path, "c", common)
    env_d, home_d = machine(tmp_path, "d", common)

    # A: the event and the folder, ingested; then the folder is gone.
    created = run_photoctl(["events", "create", SLUG, "--title", "Finish line"], env_a, cwd=home_a)
    assert created.returncode == 0, created.stderr
    folder = home_a / "card"
    folder.mkdir()
    red_photos: dict[str, str] = {}  # file name -> content hash
    for index in range(PHOTOS):
        colours = [RED, BLUE] if index % 3 == 0 else [BLUE]
        name = f"IMG_{index:03d}.jpg"
        content = make_face_image(colours, (640 + index, 480))
        (folder / name).write_bytes(content)
        settle(folder / name)
        if RED in colours:
            red_photos[name] = hashlib.sha256(content).hexdigest()
    ingested = run_photoctl(["ingest", str(folder), "--event", SLUG], env_a, cwd=home_a)
    assert ingested.returncode == 0, ingested.stderr
    shutil.rmtree(folder)

    # B works until killed with SIGKILL part-way; D finishes the queue.
    work = ["work", "-n", "2", "--until-empty"]
    b = start_photoctl(work, env_b, home_b, "work-b")

    database = create_engine(postgres_url)

    def done_count() -> int:
        with database.connect() as conn:
            return conn.execute(select(func.count()).where(Job.state == "done")).scalar_one()

    wait_for(lambda: done_count() >= 3, 120, "B to finish a few jobs", interval=0.2)
    b.kill()
    assert done_count() < PHOTOS, "B finished before it could be killed"
    d = run_photoctl(work, env_d, cwd=home_d, timeout=240)
    jobs = list_jobs(env_a)
    database.dispose()
    failures = [(job["filename"], job["attempts"], job["last_error"]) for job in jobs]
    assert d.returncode == 0, (failures, b.stderr()[-2000:], d.stderr[-3000:])
    assert [job["state"] for job in jobs] == ["done"] * PHOTOS, failures

    # C serves; a participant enrolls there with a selfie showing RED.
    server = launch_server(env_c, home_c / "serve.log", cwd=home_c)
    try:
        with server.client() as client:
            selfie = make_face_image([RED], (400, 400))
            enrolled = client.post(
                f"/api/e/{SLUG}", data={"consent": "true"}, files={"selfie": ("me.jpg", selfie)}
            )
            assert enrolled.status_code == 201, enrolled.text
            token = enrolled.json()["gallery_token"]
            listed = client.get(f"/api/g/{token}", params={"limit": 200}).json()["photos"]
            assert {photo["filename"] for photo in listed} == set(red_photos)
            s3 = seaweedfs.client()
            for photo in listed:
                answer = client.get(f"/api/g/{token}/photos/{photo['id']}/preview")
                assert answer.status_code == 302, answer.text
                downloaded = httpx.get(answer.headers["location"], timeout=30)
                assert downloaded.status_code == 200
                digest = red_photos[photo["filename"]]
                key = f"event/previews/{digest[:2]}/{digest}.jpg"
                assert downloaded.url.path == f"/{s3_bucket}/{key}"
                written = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
                assert downloaded.content == written and written[:2] == b"\xff\xd8"
    finally:
        stop_server(server)
    for home in (home_b, home_c, home_d):  # nothing of the event's photos on those disks
        assert not list(home.rglob("*.jpg"))
