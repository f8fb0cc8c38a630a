"""Several Rekognition jobs in flight per worker process, one job per process for CPU-bound
engines; the limiter's slots still bound the calls in flight, and nothing is lost under kill -9.

Real boto3 against the fake endpoint (testkit/fake_rekognition.py), which measures the calls in
flight where AWS would: at the endpoint.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from photoctl import db, queue
from photoctl.face_step import make_face_step
from photoctl.faces.local import LocalEngine
from photoctl.ingest import ingest_paths
from photoctl.worker import drain_in_process
from testkit.fake_rekognition import AWS_ENV, PALETTE, make_face_image
from testkit.photos import settle
from tests.support.cli import photoctl_env, run_photoctl
from tests.support.worker import start_photoctl


def write_event(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        path = folder / f"IMG_{index:03d}.jpg"
        path.write_bytes(make_face_image([PALETTE[index % len(PALETTE)]]))
        settle(path)


def test_io_bound_engines_run_several_jobs_per_process_cpu_bound_ones_one(
    settings, engine, fake, aws
) -> None:
    rk_settings = settings.replace(
        "rekognition", endpoint_url=fake.endpoint_url, region="eu-west-1", max_concurrency=7
    )
    assert make_face_step("rekognition", rk_settings, engine).jobs_in_flight == 7
    assert make_face_step("none", settings, engine).jobs_in_flight == 1
    assert LocalEngine.jobs_in_flight == 1  # dlib: one job per process, not loaded here


def test_one_worker_keeps_several_calls_in_flight_never_more_than_the_slots(
    settings, engine, fake, aws, tmp_path
) -> None:
    rk_settings = settings.replace(
        "rekognition",
        endpoint_url=fake.endpoint_url,
        region="eu-west-1",
        max_concurrency=4,
        max_tps=100.0,
    ).replace("queue", lease_seconds=1.0)  # shorter than a job: only the heartbeat keeps them
    write_event(tmp_path / "event", 12)
    ingest_paths(engine, rk_settings, [str(tmp_path / "event")])
    fake.latency_seconds = 0.6
    report = drain_in_process(rk_settings, "rekognition")
    assert (report.done, report.failed) == (12, 0)
    assert 3 <= fake.max_in_flight <= 4  # one process, several calls; the slots bound them
    indexing = fake.calls("IndexFaces")
    took = max(r.end for r in indexing) - min(r.start for r in indexing)
    assert took < 12 * 0.6 * 0.6, "jobs ran one after another"
    with db.read(engine) as conn:
        jobs = queue.list_jobs(conn, limit=20)
    assert all(job.state == "done" and job.attempts == 1 for job in jobs), "a lease ran out"


@pytest.mark.slow
def test_worker_killed_with_several_jobs_in_flight_loses_none_and_indexes_each_once(
    tmp_path, db_url, fake
) -> None:
    env = photoctl_env(
        tmp_path,
        db_url,
        **AWS_ENV,
        PHOTOCTL_REKOGNITION_ENDPOINT_URL=fake.endpoint_url,
        PHOTOCTL_INGEST_SETTLE_SECONDS="0",
        PHOTOCTL_QUEUE_LEASE_SECONDS="2",
        AWS_CONCURRENT_REQUESTS="4",
        PHOTOCTL_REKOGNITION_MAX_TPS="50",
    )
    write_event(tmp_path / "event", 6)
    assert run_photoctl(["ingest", str(tmp_path / "event")], env).returncode == 0
    fake.hold_responses["IndexFaces"] = 30.0  # indexed, but the answers never come back
    worker = start_photoctl(["work", "-n", "1", "--engine", "rekognition"], env, tmp_path, "worker")
    deadline = time.monotonic() + 60
    while fake.processed.count("IndexFaces") < 3:
        running = worker.process.poll() is None
        assert time.monotonic() < deadline and running, "IndexFaces never came"
        time.sleep(0.05)
    worker.kill()  # the machine dies: nobody requeues its jobs
    fake.hold_responses.clear()

    rescue = run_photoctl(
        ["work", "-n", "1", "--until-empty", "--engine", "rekognition"], env, timeout=120
    )
    assert rescue.returncode == 0, rescue.stderr[-3000:]
    from photoctl import config

    check = db.make_engine(config.load(environ={}, overrides={"database.url": db_url}))
    with db.read(check) as conn:
        states = {k: v for k, v in queue.count_by_state(conn).items() if v}
    check.dispose()
    assert states == {"done": 6}
    per_photo = Counter(face["ExternalImageId"] for face in fake.stored_faces("photoctl"))
    assert sorted(per_photo) == [str(n) for n in range(1, 7)]
    assert set(per_photo.values()) == {1}, "an interrupted attempt left a second face set"
