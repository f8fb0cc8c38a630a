"""The job table as a queue, on SQLite and on PostgreSQL: the same tests for both."""

from __future__ import annotations

import random
import threading

import pytest

from photoctl import db, queue, workers_registry
from photoctl.models import JobKind, JobState
from photoctl.queue import RetryPolicy

LEASE = 30.0
POLICY = RetryPolicy(max_attempts=3, base_seconds=2.0, max_seconds=60.0)


def enqueue(engine, count: int, now: float = 1000.0) -> list[str]:
    with db.write(engine) as conn:
        return queue.enqueue_jobs(conn, JobKind.NOOP, [None] * count, now=now)


def claim(engine, worker: str, limit: int = 10, now: float = 1000.0):
    with db.write(engine) as conn:
        return queue.claim_jobs(conn, worker, limit, LEASE, now=now)


def states(engine) -> dict[str, int]:
    with db.read(engine) as conn:
        return {k: v for k, v in queue.count_by_state(conn).items() if v}


def test_enqueued_jobs_are_claimed_once_and_completed(engine) -> None:
    ids = enqueue(engine, 5)
    first = claim(engine, "w1", limit=3)
    second = claim(engine, "w2", limit=10)
    assert len(first) == 3 and len(second) == 2
    assert {j.id for j in first} | {j.id for j in second} == set(ids)
    assert all(j.attempts == 1 for j in first + second)
    assert claim(engine, "w3") == []
    with db.write(engine) as conn:
        assert queue.complete_jobs(conn, "w1", [j.id for j in first], now=1001.0) == 3
        # Another worker cannot complete jobs it does not hold.
        assert queue.complete_jobs(conn, "w1", [j.id for j in second], now=1001.0) == 0
    assert states(engine) == {"done": 3, "running": 2}


def test_concurrent_claimers_never_get_the_same_job(engine) -> None:
    ids = enqueue(engine, 200)
    claimed: list[str] = []
    lock = threading.Lock()

    def drain(worker: str) -> None:
        while True:
            with db.write(engine) as conn:
                jobs = queue.claim_jobs(conn, worker, 7, LEASE)
                queue.complete_jobs(conn, worker, [j.id for j in jobs])
            if not jobs:
                return
            with lock:
                claimed.extend(j.id for j in jobs)

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(claimed) == sorted(ids)
    assert states(engine) == {"done": 200}


def test_transient_failure_retries_with_growing_backoff_then_fails(engine) -> None:
    [job_id] = enqueue(engine, 1)
    now = 1000.0
    delays = []
    for attempt in (1, 2):
        [job] = claim(engine, "w1", now=now)
        assert job.attempts == attempt
        with db.write(engine) as conn:
            state = queue.fail_job(
                conn, "w1", job, "database busy", permanent=False, policy=POLICY, now=now
            )
        assert state == JobState.RETRYING
        with db.read(engine) as conn:
            info = queue.get_job(conn, job_id)
        delays.append(info.run_at - now)
        assert claim(engine, "w1", now=now) == [], "not due before its backoff"
        now = info.run_at
    # Equal jitter: attempt 1 waits 1-2 s, attempt 2 waits 2-4 s.
    assert 1.0 <= delays[0] <= 2.0 and 2.0 <= delays[1] <= 4.0
    [job] = claim(engine, "w1", now=now)
    with db.write(engine) as conn:
        state = queue.fail_job(
            conn, "w1", job, "database busy", permanent=False, policy=POLICY, now=now
        )
    assert state == JobState.FAILED
    with db.read(engine) as conn:
        info = queue.get_job(conn, job_id)
    assert (info.state, info.attempts, info.last_error) == ("failed", 3, "database busy")


def test_permanent_failure_fails_at_once_with_reason(engine) -> None:
    [job_id] = enqueue(engine, 1)
    [job] = claim(engine, "w1")
    with db.write(engine) as conn:
        state = queue.fail_job(
            conn, "w1", job, "x.jpg: not an image", permanent=True, policy=POLICY
        )
    assert state == JobState.FAILED
    with db.read(engine) as conn:
        info = queue.get_job(conn, job_id)
    assert (info.state, info.attempts, info.last_error) == ("failed", 1, "x.jpg: not an image")


def test_expired_lease_is_reclaimed_by_another_worker(engine) -> None:
    [job_id] = enqueue(engine, 1)
    [job] = claim(engine, "dead-worker", now=1000.0)
    assert claim(engine, "w2", now=1000.0 + LEASE - 1) == [], "lease still valid"
    [rescued] = claim(engine, "w2", now=1000.0 + LEASE + 1)
    assert rescued.id == job_id and rescued.attempts == 2
    assert "dead-worker stopped heartbeating" in rescued.last_error
    with db.write(engine) as conn:
        # The presumed-dead worker wakes up: its result must not count.
        assert queue.complete_jobs(conn, "dead-worker", [job.id]) == 0
        with pytest.raises(queue.LeaseLost):
            queue.fail_job(conn, "dead-worker", job, "late", permanent=True, policy=POLICY)
        assert queue.complete_jobs(conn, "w2", [job_id]) == 1
    assert states(engine) == {"done": 1}


def test_heartbeat_keeps_a_long_job_from_being_reclaimed(engine) -> None:
    enqueue(engine, 1)
    claim(engine, "w1", now=1000.0)
    with db.write(engine) as conn:
        workers_registry.register_worker(conn, "w1", "host", 1, now=1000.0)
        assert queue.extend_leases(conn, "w1", LEASE, now=1000.0 + LEASE - 1) == 1
    assert claim(engine, "w2", now=1000.0 + LEASE + 1) == []


def test_released_jobs_return_without_spending_an_attempt(engine) -> None:
    enqueue(engine, 3)
    jobs = claim(engine, "w1")
    with db.write(engine) as conn:
        assert queue.release_jobs(conn, "w1", [j.id for j in jobs[1:]]) == 2
    again = claim(engine, "w2")
    assert len(again) == 2 and all(j.attempts == 1 for j in again)


def test_dead_workers_jobs_are_requeued_at_once_and_bounded_by_max_attempts(engine) -> None:
    [job_id] = enqueue(engine, 1)
    for attempt in range(1, 4):
        [job] = claim(engine, f"w{attempt}", now=1000.0 + attempt)
        assert job.attempts == attempt
        with db.write(engine) as conn:
            assert (
                queue.release_worker_jobs(conn, f"w{attempt}", "worker died", now=1000.0 + attempt)
                == 1
            )
    [job] = claim(engine, "w4", now=1010.0)
    # The worker loop fails a job claimed beyond max_attempts ("gave up").
    assert job.attempts == 4 > POLICY.max_attempts
    assert job.last_error == "worker died"


def test_retry_failed_jobs_gives_fresh_attempts(engine) -> None:
    enqueue(engine, 2)
    for job in claim(engine, "w1"):
        with db.write(engine) as conn:
            queue.fail_job(conn, "w1", job, "bad", permanent=True, policy=POLICY)
    with db.write(engine) as conn:
        assert queue.retry_jobs(conn, failed=True) == 2
    jobs = claim(engine, "w2", now=2e9)
    assert len(jobs) == 2 and all(j.attempts == 1 for j in jobs)


def test_prune_deletes_old_done_jobs_and_keeps_failed_ones(engine) -> None:
    enqueue(engine, 3)
    jobs = claim(engine, "w1")
    with db.write(engine) as conn:
        queue.complete_jobs(conn, "w1", [jobs[0].id, jobs[1].id], now=1000.0)
        queue.fail_job(conn, "w1", jobs[2], "bad", permanent=True, policy=POLICY, now=1000.0)
        assert queue.prune_jobs(conn, 3600, now=1000.0 + 7200) == 2
        assert queue.prune_jobs(conn, 3600, include_failed=True, now=1000.0 + 7200) == 1
    assert states(engine) == {}


def test_job_ids_resolve_from_unambiguous_prefixes(engine) -> None:
    [job_id] = enqueue(engine, 1)
    with db.read(engine) as conn:
        assert queue.resolve_job_id(conn, job_id[:8]) == job_id
        with pytest.raises(queue.NotFound):
            queue.resolve_job_id(conn, "zz")


def test_retry_policy_jitter_stays_within_bounds() -> None:
    policy = RetryPolicy(max_attempts=10, base_seconds=1.0, max_seconds=8.0)
    rng = random.Random(1)
    for attempts, (low, high) in {1: (0.5, 1), 2: (1, 2), 3: (2, 4), 4: (4, 8), 9: (4, 8)}.items():
        delays = [policy.next_run_at(attempts, 0.0, rng) for _ in range(200)]
        assert all(low <= d <= high for d in delays)
    assert policy.next_run_at(10, 0.0) is None
