"""One SQLite file under load from many processes at once never answers "database is locked".

For LOAD_SECONDS, real `photoctl` subprocesses share one database: a supervisor with five
workers claiming, heartbeating and completing jobs; an ingest of a new batch of photos every
second, written into the tree as the event goes on; and a reader calling `photoctl stats --json`
over and over. Every write transaction takes the lock up front (BEGIN IMMEDIATE) and waits for
it (busy timeout), and readers in WAL mode never wait, so none of them may fail on the lock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.photos import write_photo
from tests.support.cli import ForkedCommand, photoctl_env, run_photoctl, start_photoctl

pytestmark = pytest.mark.slow

LOAD_SECONDS = 20.0
BATCH_EVERY_SECONDS = 1.0
PHOTOS_PER_BATCH = 20
PHOTO_SIZE = (320, 240)
SHUTDOWN_GRACE_SECONDS = 10
LOCKED = "database is locked"


@dataclass(frozen=True)
class Call:
    """One finished photoctl command: what it was, how it ended, everything it printed."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"photoctl {' '.join(self.args)} -> exit {self.returncode}\n"
            f"stdout: {self.stdout[-1500:]}\nstderr: {self.stderr[-1500:]}"
        )


def call(args: list[str], env: dict[str, str], timeout: float = 60) -> Call:
    result = run_photoctl(args, env, timeout=timeout)
    return Call(tuple(args), result.returncode, result.stdout, result.stderr)


MIN_INGESTS = 10


def write_batch(tree: Path, batch: int) -> None:
    """A new folder of distinct photos, each complete (and settled) before ingest sees it."""
    for position in range(PHOTOS_PER_BATCH):
        seed = batch * PHOTOS_PER_BATCH + position
        write_photo(tree / f"batch{batch:03d}" / f"IMG_{seed:05d}.jpg", seed=seed, size=PHOTO_SIZE)


def ingest_batches_for(
    seconds: float, tree: Path, env: dict[str, str], first_batch: int
) -> list[Call]:
    """Every BATCH_EVERY_SECONDS: write a new batch into the tree, then ingest the whole tree."""
    calls: list[Call] = []
    started = time.monotonic()
    batch = first_batch
    # At least MIN_INGESTS however slow the machine: the overlap is what the test is about.
    while time.monotonic() - started < seconds or len(calls) < MIN_INGESTS:
        write_batch(tree, batch)
        calls.append(call(["ingest", "--json", str(tree)], env))
        batch += 1
        # Pacing, not synchronisation: the next batch "arrives" on the next tick.
        next_tick = started + (batch - first_batch) * BATCH_EVERY_SECONDS
        time.sleep(max(0.0, next_tick - time.monotonic()))
    return calls


def read_stats_until(stop: threading.Event, env: dict[str, str]) -> list[Call]:
    calls: list[Call] = []
    while not stop.is_set():
        calls.append(call(["stats", "--json"], env))
    return calls


@pytest.fixture
def supervisor_output(tmp_path: Path) -> Iterator[tuple[Path, Path, list[ForkedCommand]]]:
    """Files for the supervisor's output; a supervisor still running at teardown is killed."""
    started: list[ForkedCommand] = []
    yield tmp_path / "work.stdout", tmp_path / "work.stderr", started
    for process in started:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its own group: supervisor + workers
        except ProcessLookupError:
            pass
        process.wait(10)


def test_ingest_workers_and_stats_reader_never_see_database_locked(
    tmp_path: Path, supervisor_output: tuple[Path, Path, list[ForkedCommand]]
) -> None:
    log_file = tmp_path / "logs" / "photoctl.log"
    env = photoctl_env(
        tmp_path,
        PHOTOCTL_LOG_FILE=str(log_file),
        PHOTOCTL_LOG_MAX_BYTES=str(1 << 30),  # one file holds every line of the test
        PHOTOCTL_QUEUE_LEASE_SECONDS="3",  # a heartbeat write every 0.75 s per worker
        PHOTOCTL_QUEUE_POLL_SECONDS="0.1",  # idle workers come back for jobs often
        PHOTOCTL_QUEUE_SHUTDOWN_GRACE=str(SHUTDOWN_GRACE_SECONDS),
        PHOTOCTL_QUEUE_RETRY_BASE_SECONDS="0.2",
        PHOTOCTL_INGEST_SETTLE_SECONDS="0",
        PHOTOCTL_QUEUE_WORKER_NICE="0",  # workers compete for the lock as hard as the others
    )
    tree = tmp_path / "event"
    # The first batch creates the database before the crowd arrives.
    write_batch(tree, 0)
    first = call(["ingest", "--json", str(tree)], env)
    assert first.returncode == 0, first.describe()

    stdout_path, stderr_path, started = supervisor_output
    supervisor = start_photoctl(
        ["work", "-n", "5", "--engine", "none"]
        + ["--max-seconds", str(LOAD_SECONDS * 4)],  # a safety net; stopped by SIGTERM below
        env,
        stdout_path,
        stderr_path,
        new_session=True,
    )
    started.append(supervisor)

    stop_reading = threading.Event()
    with ThreadPoolExecutor(max_workers=2) as pool:
        reading = pool.submit(read_stats_until, stop_reading, env)
        try:
            ingests = pool.submit(ingest_batches_for, LOAD_SECONDS, tree, env, 1).result()
        finally:
            stop_reading.set()
        stats_calls = reading.result()

    assert supervisor.poll() is None, "the supervisor stopped during the load"
    supervisor.send_signal(signal.SIGTERM)
    try:
        supervisor.wait(SHUTDOWN_GRACE_SECONDS + 20)
    except subprocess.TimeoutExpired:
        raise AssertionError("the supervisor did not stop on SIGTERM") from None
    work_output = stdout_path.read_text() + stderr_path.read_text()
    assert supervisor.returncode == 0, work_output[-3000:]

    final = call(["work", "-n", "3", "--until-empty", "--engine", "none"], env, timeout=120)
    assert final.returncode == 0, final.describe()
    listed = call(["jobs", "list", "--json", "--limit", "2000"], env)
    assert listed.returncode == 0, listed.describe()

    # Nobody ever saw the lock: not the ingests, the reader, the workers, nor the log file.
    everything = [first, *ingests, *stats_calls, final, listed]
    for finished in everything:
        assert LOCKED not in (finished.stdout + finished.stderr).lower(), finished.describe()
    assert LOCKED not in work_output.lower(), work_output[-3000:]
    log_text = log_file.read_text("utf-8", "replace")
    locked_lines = [line for line in log_text.splitlines() if LOCKED in line.lower()]
    assert not locked_lines, "\n".join(locked_lines[:10])

    # The load was real: many ingests and stats calls overlapped a working supervisor.
    assert len(ingests) >= MIN_INGESTS, len(ingests)
    assert len(stats_calls) >= 10, len(stats_calls)
    assert "jobs done" in work_output, work_output[-3000:]
    assert "work: 0 jobs done" not in work_output, "the workers did nothing during the load"

    # Every ingest registered exactly its new batch; every stats call answered with JSON.
    for batch_ingest in [first, *ingests]:
        assert batch_ingest.returncode == 0, batch_ingest.describe()
        report = json.loads(batch_ingest.stdout)
        assert (report["new"], report["errors"]) == (PHOTOS_PER_BATCH, 0), report
    processed_seen, workers_seen = [], []
    for stats_call in stats_calls:
        assert stats_call.returncode == 0, stats_call.describe()
        try:
            figures = json.loads(stats_call.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"stats printed no JSON\n{stats_call.describe()}") from None
        processed_seen.append(figures["queue"]["total_processed"])
        workers_seen.append(figures["queue"]["workers_active"])
    assert max(processed_seen) > 0, "the reader never saw a processed job"
    assert max(workers_seen) > 0, "the reader never saw a live worker"

    # Afterwards every ingested photo is done, once.
    jobs = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    ingested = PHOTOS_PER_BATCH * (1 + len(ingests))
    states = Counter(job["state"] for job in jobs)
    assert states == {"done": ingested}, f"{dict(states)} for {ingested} ingested photos"
    assert len({job["photo_id"] for job in jobs}) == ingested
