"""The rekognition engine with real boto3 against a local endpoint speaking Rekognition's protocol.

Faces in these photos are solid colour squares; the fake endpoint recognises a person by colour
(see tests/fake_rekognition.py). Quota, concurrency and throttling are measured where AWS would
see them: at the endpoint.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from photoctl import db, face_store, faces, queue, users
from photoctl.faces.base import EnrolledFace
from photoctl.faces.rekognition import RekognitionEngine
from photoctl.ingest import ingest_paths
from photoctl.models import Face, Match, Photo
from photoctl.worker import drain_in_process
from testkit.fake_rekognition import AWS_ENV, PALETTE, FakeRekognition, make_face_image
from testkit.photos import settle
from tests.support.cli import photoctl_env, run_photoctl, start_photoctl
from tests.support.worker import start_photoctl as start_worker

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 153, 0)


@pytest.fixture
def rk_settings(settings, fake):
    return settings.replace(
        "rekognition", endpoint_url=fake.endpoint_url, region="eu-west-1", max_tps=50.0
    )


def write_face_photo(path: Path, colours: list[tuple[int, int, int]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(make_face_image(colours))
    settle(path)
    return path


def matched_files(engine, user_id: int) -> set[str]:
    with db.read(engine) as conn:
        ids = [photo_id for photo_id, _ in face_store.photos_of_user(conn, user_id)]
        return set(conn.execute(select(Photo.filename).where(Photo.id.in_(ids))).scalars())


def test_photos_are_matched_to_enrolled_users_both_ways_and_deletion_reaches_the_collection(
    rk_settings, engine, fake, aws, tmp_path
) -> None:
    folder = tmp_path / "event"
    write_face_photo(folder / "red-and-blue.jpg", [RED, BLUE])
    write_face_photo(folder / "red.jpg", [RED])
    write_face_photo(folder / "green.jpg", [GREEN])
    write_face_photo(tmp_path / "selfies" / "red.jpg", [RED])
    write_face_photo(tmp_path / "selfies" / "green.jpg", [GREEN])
    engine_rk = faces.make_engine("rekognition", rk_settings, engine)
    red_user, _ = users.add_user(engine, "red")
    users.enroll(engine, engine_rk, rk_settings, "red", tmp_path / "selfies" / "red.jpg")

    ingest_paths(engine, rk_settings, [str(folder)])
    assert drain_in_process(rk_settings, "rekognition").failed == 0
    assert matched_files(engine, red_user) == {"red-and-blue.jpg", "red.jpg"}

    green_user, _ = users.add_user(engine, "green")
    assert (
        users.enroll(engine, engine_rk, rk_settings, "green", tmp_path / "selfies" / "green.jpg")
        == 1
    )
    assert matched_files(engine, green_user) == {"green.jpg"}

    collection = rk_settings.rekognition.collection_id
    assert len(fake.stored_faces(collection)) == 4 + 2  # photo faces + two selfies
    users.delete_user(engine, engine_rk, "red")
    remaining = {f["ExternalImageId"] for f in fake.stored_faces(collection)}
    assert f"user-{red_user}" not in remaining and f"user-{green_user}" in remaining
    with db.read(engine) as conn:
        assert conn.execute(select(func.count()).select_from(Match)).scalar_one() == 1


def test_only_indexing_creates_a_deleted_collection_again(
    rk_settings, engine, fake, aws, tmp_path
) -> None:
    """A search, listing or deletion that finds the collection gone (its event purged meanwhile)
    answers "no faces" instead of creating it again; indexing still creates it."""
    engine_rk = faces.make_engine("rekognition", rk_settings, engine)
    assert isinstance(engine_rk, RekognitionEngine)
    red = engine_rk.index_selfie(1, Image.open(write_face_photo(tmp_path / "r.jpg", [RED])))
    assert red is not None and red.external_id
    collection = rk_settings.rekognition.collection_id
    engine_rk.client.delete_collection(CollectionId=collection)  # another process's purge

    assert engine_rk.match_selfie(EnrolledFace(1, None, red.external_id), _NoFaces()) == []
    engine_rk.forget([red.external_id])
    engine_rk.discard_photo_faces(7)
    assert collection not in engine_rk.client.list_collections()["CollectionIds"]
    assert [c.operation for c in fake.calls("CreateCollection")] == ["CreateCollection"]

    assert engine_rk.index_photo(8, Image.open(write_face_photo(tmp_path / "b.jpg", [BLUE])))
    assert collection in engine_rk.client.list_collections()["CollectionIds"]


class _NoFaces:
    def all_faces(self, engine: str) -> list:
        return []

    def faces_by_external_id(self, external_ids) -> list:
        return []


def test_no_search_calls_are_spent_while_nobody_is_enrolled(
    rk_settings, engine, fake, aws, tmp_path
) -> None:
    write_face_photo(tmp_path / "event" / "a.jpg", [RED, BLUE])
    ingest_paths(engine, rk_settings, [str(tmp_path / "event")])
    drain_in_process(rk_settings, "rekognition")
    assert fake.calls("SearchFaces") == [] and len(fake.calls("IndexFaces")) == 1


def test_throttling_bursts_slow_down_but_fail_no_job(
    rk_settings, engine, fake, aws, tmp_path
) -> None:
    for index in range(6):
        write_face_photo(tmp_path / "event" / f"{index}.jpg", [PALETTE[index]])
    ingest_paths(engine, rk_settings, [str(tmp_path / "event")])
    fake.throttle_next(8)
    report = drain_in_process(rk_settings, "rekognition")
    assert (report.done, report.failed) == (6, 0)
    assert fake.throttled_count >= 8
    with db.read(engine) as conn:
        jobs = queue.list_jobs(conn, limit=10)
    assert all(job.state == "done" and job.attempts == 1 for job in jobs), "no attempt spent"


def test_other_aws_errors_retry_with_the_error_code_in_the_job(
    rk_settings, engine, fake, aws, tmp_path
) -> None:
    write_face_photo(tmp_path / "event" / "a.jpg", [RED])
    ingest_paths(engine, rk_settings, [str(tmp_path / "event")])
    fake.fail_next(1, "InternalServerError", status=500)
    fake.fail_next(3, "AccessDeniedException")
    settings = rk_settings.replace("queue", retry_base_seconds=0.05, max_attempts=2)
    report = drain_in_process(settings, "rekognition")
    with db.read(engine) as conn:
        [job] = queue.list_jobs(conn)
    assert report.failed == 1 and job.state == "failed"
    assert "AccessDeniedException" in job.last_error


def _rekognition_env(tmp_path: Path, db_url: str, fake: FakeRekognition, **extra: str) -> dict:
    settings = {
        "PHOTOCTL_REKOGNITION_ENDPOINT_URL": fake.endpoint_url,
        "PHOTOCTL_INGEST_SETTLE_SECONDS": "0",
        "PHOTOCTL_QUEUE_LEASE_SECONDS": "5",
        # Workers at the test's own priority: the quota is judged at the endpoint, and niced
        # workers starved by other tests' load send the calls the limiter granted late, several
        # bunched into one second (as the crash tests do).
        "PHOTOCTL_QUEUE_WORKER_NICE": "0",
    }
    return photoctl_env(tmp_path, db_url, **{**AWS_ENV, **settings, **extra})


def _prepare_event(tmp_path: Path, env: dict, count: int) -> None:
    for index in range(count):
        write_face_photo(
            tmp_path / "event" / f"IMG_{index:03d}.jpg", [PALETTE[index % len(PALETTE)]]
        )
    write_face_photo(tmp_path / "selfie.jpg", [PALETTE[0]])
    added = run_photoctl(
        [
            "--engine",
            "rekognition",
            "users",
            "add",
            "first",
            "--selfie",
            str(tmp_path / "selfie.jpg"),
        ],
        env,
    )
    assert added.returncode == 0, added.stderr
    assert run_photoctl(["ingest", str(tmp_path / "event")], env).returncode == 0


def _job_states(db_url: str) -> dict[str, int]:
    from photoctl import config

    settings = config.load(environ={}, overrides={"database.url": db_url})
    engine = db.make_engine(settings)
    try:
        with db.read(engine) as conn:
            return {k: v for k, v in queue.count_by_state(conn).items() if v}
    finally:
        engine.dispose()


@pytest.mark.slow
def test_four_workers_stay_within_the_quota_of_five_calls_a_second(tmp_path, db_url, fake) -> None:
    env = _rekognition_env(tmp_path, db_url, fake, PHOTOCTL_REKOGNITION_MAX_TPS="5")
    _prepare_event(tmp_path, env, 16)
    fake.reset_stats()
    fake.tps_quota = 5
    work = run_photoctl(
        ["work", "-n", "4", "--until-empty", "--engine", "rekognition"], env, timeout=180
    )
    assert work.returncode == 0, work.stderr[-3000:]
    assert _job_states(db_url) == {"done": 16}
    assert len(fake.calls(throttled=False)) >= 32  # IndexFaces + SearchFaces per photo
    assert fake.max_calls_in_any_window(1.0) <= 5 + 1


@pytest.mark.slow
def test_concurrency_limit_holds_across_worker_processes(tmp_path, db_url, fake) -> None:
    env = _rekognition_env(
        tmp_path, db_url, fake, PHOTOCTL_REKOGNITION_MAX_TPS="100", AWS_CONCURRENT_REQUESTS="3"
    )
    _prepare_event(tmp_path, env, 16)
    fake.reset_stats()
    fake.latency_seconds = 0.3
    work = run_photoctl(
        ["work", "-n", "4", "--until-empty", "--engine", "rekognition"], env, timeout=180
    )
    assert work.returncode == 0, work.stderr[-3000:]
    assert _job_states(db_url) == {"done": 16}
    assert 2 <= fake.max_in_flight <= 3


@pytest.mark.slow
@pytest.mark.postgres
def test_two_supervisors_on_one_postgresql_database_share_the_limits(
    tmp_path, postgres_url, fake
) -> None:
    env = _rekognition_env(
        tmp_path, postgres_url, fake, PHOTOCTL_REKOGNITION_MAX_TPS="5", AWS_CONCURRENT_REQUESTS="2"
    )
    _prepare_event(tmp_path, env, 16)
    fake.reset_stats()
    fake.tps_quota = 5
    fake.latency_seconds = 0.2
    command = ["work", "-n", "2", "--until-empty", "--engine", "rekognition"]
    machines = [
        start_photoctl(
            command, env, tmp_path / f"machine{n}.stdout", tmp_path / f"machine{n}.stderr"
        )
        for n in range(2)
    ]
    for n, machine in enumerate(machines):
        assert machine.wait(180) == 0, (tmp_path / f"machine{n}.stderr").read_text()[-3000:]
    assert _job_states(postgres_url) == {"done": 16}
    assert fake.max_calls_in_any_window(1.0) <= 5 + 1
    assert fake.max_in_flight <= 2


@pytest.mark.slow
def test_worker_killed_right_after_index_faces_leaves_one_face_set(tmp_path, db_url, fake) -> None:
    env = _rekognition_env(tmp_path, db_url, fake, PHOTOCTL_QUEUE_LEASE_SECONDS="2")
    write_face_photo(tmp_path / "event" / "two-people.jpg", [RED, BLUE])
    assert run_photoctl(["ingest", str(tmp_path / "event")], env).returncode == 0
    fake.hold_responses["IndexFaces"] = 30.0  # the answer never reaches the worker
    worker = start_worker(["work", "-n", "1", "--engine", "rekognition"], env, tmp_path, "worker")
    deadline = time.monotonic() + 60
    while "IndexFaces" not in fake.processed:
        running = worker.process.poll() is None
        assert time.monotonic() < deadline and running, "IndexFaces never came"
        time.sleep(0.05)
    worker.kill()  # the whole machine dies: nobody requeues the job
    fake.hold_responses.clear()
    collection = "photoctl"
    assert len(fake.stored_faces(collection)) == 2, "the interrupted attempt did index"

    rescue = run_photoctl(
        ["work", "-n", "1", "--until-empty", "--engine", "rekognition"], env, timeout=120
    )
    assert rescue.returncode == 0, rescue.stderr[-3000:]
    assert _job_states(db_url) == {"done": 1}
    stored = fake.stored_faces(collection)
    assert len(stored) == 2 and {f["ExternalImageId"] for f in stored} == {"1"}
    from photoctl import config

    engine = db.make_engine(config.load(environ={}, overrides={"database.url": db_url}))
    with db.read(engine) as conn:
        rows = conn.execute(select(Face.external_id)).scalars().all()
    engine.dispose()
    assert sorted(rows) == sorted(f["FaceId"] for f in stored)

    # Content already processed, ingested again under another name: zero Rekognition calls.
    fake.reset_stats()
    reset_at = time.monotonic()
    (tmp_path / "event2").mkdir()
    (tmp_path / "event2" / "copy.jpg").write_bytes(
        (tmp_path / "event" / "two-people.jpg").read_bytes()
    )
    settle(tmp_path / "event2" / "copy.jpg")
    run_photoctl(["ingest", str(tmp_path / "event2")], env)
    run_photoctl(["work", "-n", "1", "--until-empty", "--engine", "rekognition"], env)
    per_photo = {"IndexFaces", "SearchFaces", "SearchFacesByImage"}
    # The killed worker's held IndexFaces is recorded when its hold ends, maybe after the reset
    # on a loaded machine: only requests started since the reset count.
    assert [r for r in fake.records if r.operation in per_photo and r.start >= reset_at] == []
