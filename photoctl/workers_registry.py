"""The workers table: who works on the queue, from which host and process, and since when.

Apart from the job queue (queue.py) because it answers other questions: not "which job runs
next" but "which worker processes exist". A supervisor reads it at start-up to find this host's
workers that were killed without recording a stop (their jobs are requeued at once rather than
after their leases), and `stats` counts the live ones. Like queue.py, every function takes an
open connection and never commits. The heartbeat that keeps a worker's row and its jobs' leases
fresh together is queue.extend_leases: one statement pair in one transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select, update

from photoctl.models import Worker

workers = Worker.__table__


@dataclass(frozen=True)
class RegisteredWorker:
    id: str
    pid: int
    started_at: float


def register_worker(
    conn: Connection, worker_id: str, hostname: str, pid: int, now: float | None = None
) -> None:
    """Record a worker process as it starts, before it claims anything."""
    now = time.time() if now is None else now
    conn.execute(
        insert(workers).values(
            id=worker_id,
            hostname=hostname,
            pid=pid,
            started_at=now,
            heartbeat_at=now,
            jobs_done=0,
            jobs_failed=0,
        )
    )


def stop_worker(
    conn: Connection, worker_id: str, jobs_done: int, jobs_failed: int, now: float | None = None
) -> None:
    """Record a worker's stop and what it did; a dead worker's is recorded by its supervisor."""
    now = time.time() if now is None else now
    conn.execute(
        update(workers)
        .where(workers.c.id == worker_id)
        .values(stopped_at=now, heartbeat_at=now, jobs_done=jobs_done, jobs_failed=jobs_failed)
    )


def unstopped_workers_on_host(conn: Connection, hostname: str) -> list[RegisteredWorker]:
    """Workers registered from this host that never recorded a stop (alive, or killed -9)."""
    rows = conn.execute(
        select(workers.c.id, workers.c.pid, workers.c.started_at).where(
            workers.c.hostname == hostname, workers.c.stopped_at.is_(None)
        )
    )
    return [RegisteredWorker(*row) for row in rows]


def mark_worker_gone(conn: Connection, worker_id: str, now: float | None = None) -> None:
    """Record that a worker stopped without saying so (its counters stay as last written)."""
    now = time.time() if now is None else now
    conn.execute(
        update(workers)
        .where(workers.c.id == worker_id, workers.c.stopped_at.is_(None))
        .values(stopped_at=now)
    )


def count_live_workers(conn: Connection, within_seconds: float, now: float | None = None) -> int:
    """Workers not stopped that heartbeated within the last ``within_seconds``."""
    now = time.time() if now is None else now
    return conn.execute(
        select(func.count())
        .select_from(workers)
        .where(workers.c.stopped_at.is_(None), workers.c.heartbeat_at >= now - within_seconds)
    ).scalar_one()


__all__ = [
    "RegisteredWorker",
    "count_live_workers",
    "mark_worker_gone",
    "register_worker",
    "stop_worker",
    "unstopped_workers_on_host",
]
