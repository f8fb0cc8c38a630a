"""Workers ride out a full disk, a database outage and a kill -9 of their supervisor.

Real `photoctl work` subprocesses: the storage root on a real tiny tmpfs filled to the last
byte, a real PostgreSQL database that stops accepting connections, a real SIGKILL of a
supervisor's whole process group. Before: a full disk spent every attempt in seconds, an outage
crashed workers in a respawn storm, and a restart after kill -9 waited out the lease.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from photoctl import db, queue, workers_registry
from photoctl.models import Job
from photoctl.wording import plural
from testkit.photos import write_tree
from tests.support.cli import photoctl_env
from tests.support.worker import ingest_json, list_jobs, start_photoctl, wait_for

_COMPLETED = re.compile(r"\[PhotoWorker-\d+\] Job [0-9a-f]{32} completed")


def recovery_env(tmp_path: Path, db_url: str, **extra: str) -> dict[str, str]:
    return photoctl_env(
        tmp_path,
        db_url,
        PHOTOCTL_INGEST_SETTLE_SECONDS="0",
        PHOTOCTL_QUEUE_RETRY_BASE_SECONDS="0.2",
        PHOTOCTL_QUEUE_POLL_SECONDS="0.2",
        PHOTOCTL_QUEUE_WORKER_NICE="0",
        **extra,
    )


def completions(text: str) -> int:
    return len(_COMPLETED.findall(text))


# -- a full disk ------------------------------------------------------------------------------


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB tmpfs, mounted for this test and unmounted after it."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(directory: Path) -> Path:
    """Write one file until the filesystem says ENOSPC; returns it (delete it to free space)."""
    filler = directory / "filler"
    chunk = b"\0" * (64 << 10)
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
        try:
            while True:  # the last partial chunk's worth
                handle.write(b"\0" * 512)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    return filler


def test_full_storage_pauses_claiming_without_spending_attempts_until_space_is_back(
    tmp_path: Path, db_url: str, tiny_filesystem: Path
) -> None:
    env = recovery_env(tmp_path, db_url, PHOTOCTL_STORAGE_ROOT=str(tiny_filesystem))
    write_tree(tmp_path / "photos", 12, size=(640, 480))
    code, report = ingest_json(env, tmp_path / "photos")
    assert (code, report["new"]) == (0, 12), report
    filler = fill(tiny_filesystem)

    work = start_photoctl(
        ["work", "-n", "2", "--until-empty", "--engine", "none"], env, tmp_path / "out", "work"
    )
    try:
        wait_for(lambda: "stop claiming until space is freed" in work.stderr(), 60, "the pause")

        # Paused: no job failed or spent an attempt, and none stays claimed. Watched for 3 s,
        # several times the retry delays that used to exhaust every attempt.
        def settled_paused() -> bool:
            jobs = list_jobs(env)
            assert all(job["state"] != "failed" for job in jobs), jobs
            assert all(job["attempts"] == 0 for job in jobs if job["state"] != "running"), jobs
            return all(job["state"] == "queued" for job in jobs)

        wait_for(settled_paused, 30, "every job back in the queue")
        watch_until = time.monotonic() + 3
        while time.monotonic() < watch_until:
            assert settled_paused(), list_jobs(env)
        assert work.process.poll() is None, work.stderr()[-3000:]

        filler.unlink()
        code = work.wait(90)
    finally:
        work.kill()
    stderr = work.stderr()
    assert code == 0, stderr[-3000:]
    assert "work: 12 jobs done, 0 failed, 0 workers restarted" in stderr, stderr[-3000:]
    assert Counter(job["state"] for job in list_jobs(env)) == {"done": 12}
    pause_lines = [line for line in stderr.splitlines() if "stop claiming" in line]
    assert len(pause_lines) == 1, pause_lines
    assert "No space left on device" in pause_lines[0], pause_lines
    assert len(re.findall("storage has space again", stderr)) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]


# -- a database outage ------------------------------------------------------------------------


@pytest.mark.postgres
def test_workers_wait_out_a_postgresql_outage_and_finish_every_job(
    tmp_path: Path, postgres_url: str, postgres_admin_url: str
) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    name = make_url(postgres_url).database
    env = recovery_env(tmp_path, postgres_url)
    write_tree(tmp_path / "photos", 40, size=(1600, 1200))
    code, report = ingest_json(env, tmp_path / "photos")
    assert (code, report["new"]) == (0, 40), report

    work = start_photoctl(
        ["work", "-n", "2", "--until-empty", "--engine", "none", "-v"],
        env,
        tmp_path / "out",
        "work",
    )
    try:
        wait_for(lambda: completions(work.stderr()) >= 4, 60, "4 jobs completed")
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            try:
                wait_for(
                    lambda: work.stderr().count("database unreachable") >= 2,
                    60,
                    "both workers to notice the outage",
                )
                assert completions(work.stderr()) < 40
                assert work.process.poll() is None, work.stderr()[-3000:]
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        code = work.wait(120)
    finally:
        work.kill()
    stderr = work.stderr()
    assert code == 0, stderr[-3000:]
    assert "work: 40 jobs done, 0 failed, 0 workers restarted" in stderr, stderr[-3000:]
    assert Counter(job["state"] for job in list_jobs(env)) == {"done": 40}
    assert "Traceback" not in stderr, stderr[-3000:]
    for worker in ("PhotoWorker-0", "PhotoWorker-1"):
        lines = [line for line in stderr.splitlines() if f"[{worker}]" in line]
        down = [line for line in lines if "database unreachable" in line]
        back = [line for line in lines if "database back" in line]
        assert len(down) == 1 and len(back) == 1, (worker, down, back)


# -- a supervisor killed with -9 --------------------------------------------------------------


def test_restart_after_kill_9_resumes_the_dead_workers_jobs_at_once(
    tmp_path: Path, db_url: str
) -> None:
    lease_seconds = 300
    env = recovery_env(tmp_path, db_url, PHOTOCTL_QUEUE_LEASE_SECONDS=str(lease_seconds))
    write_tree(tmp_path / "photos", 30, size=(3000, 2000))
    code, report = ingest_json(env, tmp_path / "photos")
    assert (code, report["new"]) == (0, 30), report

    first = start_photoctl(
        ["work", "-n", "2", "--engine", "none", "-v"], env, tmp_path / "out", "first"
    )
    try:
        wait_for(lambda: completions(first.stderr()) >= 3, 90, "3 jobs completed")
    finally:
        first.kill()  # SIGKILL to the supervisor and its workers at once
    held = [job for job in list_jobs(env) if job["state"] == "running"]
    assert held, "the kill caught no job in progress"

    began = time.monotonic()
    second = start_photoctl(
        ["work", "-n", "2", "--until-empty", "--engine", "none"], env, tmp_path / "out", "second"
    )
    try:
        code = second.wait(lease_seconds / 3)
    finally:
        second.kill()
    seconds = time.monotonic() - began
    stderr = second.stderr()
    assert code == 0, stderr[-3000:]
    assert seconds < lease_seconds / 5, f"took {seconds:.0f} s\n{stderr[-3000:]}"
    requeued = plural(len(held), "job")
    assert f"[Startup] {requeued} requeued from 2 workers of this host that are gone" in (stderr), (
        stderr[-3000:]
    )
    jobs = {job["id"]: job for job in list_jobs(env)}
    assert Counter(job["state"] for job in jobs.values()) == {"done": 30}
    for job in held:
        assert jobs[job["id"]]["attempts"] == 2, jobs[job["id"]]


def test_only_workers_whose_process_is_gone_lose_their_jobs(engine, settings) -> None:
    """A live worker keeps its jobs; a dead one, or one whose pid a newer process reuses, not."""
    from photoctl.supervisor import requeue_jobs_of_gone_workers

    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        dead = subprocess.Popen(["true"])
        dead.wait()
        now = time.time()
        workers = {
            # (pid, registered at): the sleeper started before it registered: alive.
            "alive": (sleeper.pid, now + 1),
            "dead": (dead.pid, now),
            # The pid is the sleeper's, but its process started an hour after this worker
            # registered: the pid was reused, the worker is gone.
            "reused": (sleeper.pid, now - 3600),
            "elsewhere": (dead.pid, now),  # another host: not ours to judge
        }
        with db.write(engine) as conn:
            for name, (pid, registered_at) in workers.items():
                host = "another-host" if name == "elsewhere" else "this-host"
                workers_registry.register_worker(conn, name, host, pid, now=registered_at)
            ids = queue.enqueue_jobs(conn, "noop", [None] * 4, now=now - 10)
            for name in workers:
                assert queue.claim_jobs(conn, name, 1, lease_seconds=300)
        assert requeue_jobs_of_gone_workers(engine, hostname="this-host") == 2
        with db.read(engine) as conn:
            rows = conn.execute(
                select(Job.__table__.c.worker_id, Job.__table__.c.state).where(
                    Job.__table__.c.id.in_(ids)
                )
            ).all()
        assert sorted((worker or "-", state) for worker, state in rows) == [
            ("-", "retrying"),
            ("-", "retrying"),
            ("alive", "running"),
            ("elsewhere", "running"),
        ]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_workers_whose_supervisor_is_gone_are_waited_for_then_killed_and_lose_their_jobs(
    engine, caplog: pytest.LogCaptureFixture
) -> None:
    """A supervisor started right after a kill -9 of the last one finds its workers still
    running: killed along with it but not gone yet, or finishing their job in hand. It waits
    for them (the grace), kills those still there, and only then gives their jobs and call
    slots back. A worker whose supervisor runs is left alone, and so is a process that is not
    photoctl's (another pid namespace with this host name, or a reused pid)."""
    from photoctl.faces import limiter
    from photoctl.supervisor import requeue_jobs_of_gone_workers

    caplog.set_level(logging.INFO, logger="photoctl")
    dead_supervisor = subprocess.Popen(["true"])
    dead_supervisor.wait()
    # Ignores that its supervisor is gone; its command line names photoctl, as a worker's does.
    stuck = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "photoctl"])
    not_ours = subprocess.Popen(["sleep", "60"])
    # Stops by itself within the grace: once its input ends, half a second into the wait.
    stopping = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    supervised = subprocess.Popen(["sleep", "60"])
    live_supervisor = subprocess.Popen(["sleep", "60"])
    calls_in_flight = contextlib.ExitStack()  # closed at the end: as in the middle of calls
    try:
        now = time.time() + 1  # each registered after its process started
        workers = {
            f"this-host:{dead_supervisor.pid}:0:stuck": stuck.pid,
            f"this-host:{dead_supervisor.pid}:1:stoppin": stopping.pid,
            f"this-host:{dead_supervisor.pid}:2:not-ours": not_ours.pid,
            f"this-host:{live_supervisor.pid}:0:supervis": supervised.pid,
        }
        with db.write(engine) as conn:
            for worker_id, pid in workers.items():
                workers_registry.register_worker(conn, worker_id, "this-host", pid, now=now)
            queue.enqueue_jobs(conn, "noop", [None] * 4, now=now - 10)
            for worker_id in workers:
                assert queue.claim_jobs(conn, worker_id, 1, lease_seconds=300)
        limits = limiter.LimiterSettings("rekognition", max_concurrency=4, max_tps=5.0)
        for worker_id in workers:
            calls_in_flight.enter_context(limiter.CallLimiter(engine, limits, worker_id).call())

        began = time.monotonic()
        assert stopping.stdin is not None
        threading.Timer(0.5, stopping.stdin.close).start()
        requeued = requeue_jobs_of_gone_workers(engine, hostname="this-host", orphan_grace=2.0)

        assert 2.0 <= time.monotonic() - began < 7
        assert requeued == 2
        assert stopping.wait(1) == 0, "the worker that stopped by itself was not killed"
        assert stuck.wait(1) == -signal.SIGKILL
        assert supervised.poll() is None and not_ours.poll() is None
        with db.read(engine) as conn:
            held = sorted(conn.execute(select(Job.state, Job.worker_id)).all(), key=str)
            slot_holders = set(conn.execute(select(limiter.slots_table.c.holder)).scalars())
        assert held == [
            ("retrying", None),
            ("retrying", None),
            ("running", f"this-host:{dead_supervisor.pid}:2:not-ours"),
            ("running", f"this-host:{live_supervisor.pid}:0:supervis"),
        ]
        assert slot_holders == {
            None,
            f"this-host:{dead_supervisor.pid}:2:not-ours",
            f"this-host:{live_supervisor.pid}:0:supervis",
        }
        said = "\n".join(record.getMessage() for record in caplog.records)
        assert "Waiting up to 2 s for 3 workers whose supervisor is gone to stop" in said
        assert f"Killing worker this-host:{dead_supervisor.pid}:0:stuck" in said
    finally:
        calls_in_flight.close()
        for process in (stuck, not_ours, stopping, supervised, live_supervisor):
            process.kill()
            process.wait()


def test_sqlite_database_on_a_full_disk_pauses_claiming_until_space_is_back(
    tmp_path: Path, tiny_filesystem: Path
) -> None:
    """The database itself cannot grow: the same pause, not failed jobs or dead workers."""
    data = tiny_filesystem / "data"
    env = recovery_env(
        tmp_path,
        f"sqlite:///{data / 'photoctl.db'}",
        PHOTOCTL_DATA_DIR=str(data),
        PHOTOCTL_STORAGE_ROOT=str(tmp_path / "storage"),
    )
    write_tree(tmp_path / "photos", 300, size=(320, 240))
    code, report = ingest_json(env, tmp_path / "photos")
    assert (code, report["new"]) == (0, 300), report

    work = start_photoctl(
        ["work", "-n", "2", "--until-empty", "--engine", "none", "-v"],
        env,
        tmp_path / "out",
        "work",
    )
    try:
        # Filled once the workers have the database open: SQLite cannot even open a database
        # on a disk without room for its shared-memory file ("disk I/O error" at start-up).
        wait_for(lambda: completions(work.stderr()) >= 2, 60, "2 jobs completed")
        filler = fill(tiny_filesystem)
        wait_for(lambda: "stop claiming until space is freed" in work.stderr(), 60, "the pause")
        watch_until = time.monotonic() + 2  # paused while full, however often it looks
        while time.monotonic() < watch_until:
            assert "space again" not in work.stderr(), work.stderr()[-3000:]
            assert work.process.poll() is None, work.stderr()[-3000:]
            time.sleep(0.1)
        filler.unlink()
        code = work.wait(90)
    finally:
        work.kill()
    stderr = work.stderr()
    assert code == 0, stderr[-3000:]
    assert "work: 300 jobs done, 0 failed, 0 workers restarted" in stderr, stderr[-3000:]
    jobs = list_jobs(env)
    assert Counter(job["state"] for job in jobs) == {"done": 300}
    assert all(job["attempts"] == 1 for job in jobs), [j for j in jobs if j["attempts"] != 1]
    assert len(re.findall("stop claiming until space is freed", stderr)) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
