"""The job table as a durable queue: enqueue, claim, heartbeat, complete, fail or retry, reclaim.

Every function takes an open connection so that callers can put queue changes in the same
transaction as the work they record (a job is completed in the transaction that stores its
results). Completion and failure are fenced by the worker id: a worker that lost its lease (it
was presumed dead and its job reclaimed) cannot overwrite what the new holder does. The claim
statement is the one place where SQLite and PostgreSQL differ: PostgreSQL locks candidate rows
with ``FOR UPDATE SKIP LOCKED`` so machines never wait on each other; SQLite relies on the
write lock its ``BEGIN IMMEDIATE`` transaction already holds. The workers table (who holds
jobs, from which host and process) is workers_registry.py's.
"""

from __future__ import annotations

import functools
import random
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Integer,
    Select,
    String,
    Update,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    union_all,
    update,
)

from photoctl.errors import NotFound, PhotoctlError
from photoctl.models import Job, JobKind, JobState, Photo, Worker  # noqa: F401

jobs = Job.__table__
workers = Worker.__table__

WAITING_STATES = (JobState.QUEUED, JobState.RETRYING)
UNFINISHED_STATES = (JobState.QUEUED, JobState.RETRYING, JobState.RUNNING)


@dataclass(frozen=True)
class RetryPolicy:
    """When, if at all, a job that failed transiently runs again."""

    max_attempts: int = 3
    base_seconds: float = 2.0
    max_seconds: float = 300.0

    def next_run_at(
        self, attempts: int, now: float, rng: random.Random | None = None
    ) -> float | None:
        """The time to try again after ``attempts`` failed attempts, or None to give up."""
        if attempts >= self.max_attempts:
            return None
        delay = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        # "Equal jitter": spreads retries of a burst of failures without ever retrying at once.
        return now + delay / 2 + (rng or random).uniform(0, delay / 2)


@dataclass(frozen=True)
class ClaimedJob:
    id: str
    kind: str
    photo_id: int | None
    attempts: int
    last_error: str | None


@dataclass(frozen=True)
class JobInfo:
    id: str
    kind: str
    photo_id: int | None
    filename: str | None
    state: str
    attempts: int
    run_at: float
    created_at: float
    started_at: float | None
    finished_at: float | None
    lease_expires_at: float | None
    worker_id: str | None
    last_error: str | None


class LeaseLost(PhotoctlError):
    """The job was reclaimed by another worker; this worker's result must not be recorded."""


def new_job_id() -> str:
    return uuid.uuid4().hex


def enqueue_jobs(
    conn: Connection, kind: str, photo_ids: Sequence[int | None], now: float | None = None
) -> list[str]:
    """Insert one queued job per photo id; returns the new job ids."""
    now = time.time() if now is None else now
    rows: list[dict[str, Any]] = [
        {
            "id": new_job_id(),
            "kind": kind,
            "photo_id": photo_id,
            "state": JobState.QUEUED,
            "attempts": 0,
            "run_at": now,
            "created_at": now,
        }
        for photo_id in photo_ids
    ]
    if rows:
        conn.execute(insert(jobs), rows)
    return [row["id"] for row in rows]


def claim_jobs(
    conn: Connection, worker_id: str, limit: int, lease_seconds: float, now: float | None = None
) -> list[ClaimedJob]:
    """Atomically take up to ``limit`` due jobs, including running ones whose lease expired."""
    now = time.time() if now is None else now
    rows = conn.execute(
        _claim_statement(conn.dialect.name),
        {
            "claim_now": now,
            "claim_limit": limit,
            "claim_worker": worker_id,
            "claim_lease_until": now + lease_seconds,
        },
    ).all()
    return [ClaimedJob(*row) for row in rows]


@functools.cache
def _claim_statement(dialect_name: str) -> Update:
    """The claim statement, built once per dialect: building it costs more than running it.

    Due jobs are taken from one ordered index range per kind (queued and retrying ones by
    ix_jobs_state_run_at, expired leases among the few running jobs), so a claim reads about
    ``limit`` rows whatever the backlog; one ``OR`` over them made both databases read and sort
    every waiting job on each claim. PostgreSQL locks each range's rows with SKIP LOCKED (it
    refuses FOR UPDATE on a UNION, not in a CTE); rows locked but not chosen are free at commit.
    """
    now = bindparam("claim_now", type_=Float)
    limit = bindparam("claim_limit", type_=Integer)
    ranges = (
        and_(jobs.c.state == JobState.QUEUED, jobs.c.run_at <= now),
        and_(jobs.c.state == JobState.RETRYING, jobs.c.run_at <= now),
        and_(jobs.c.state == JobState.RUNNING, jobs.c.lease_expires_at < now),
    )
    arms = []
    for number, due in enumerate(ranges):
        arm = select(jobs.c.id, jobs.c.run_at).where(due).order_by(jobs.c.run_at).limit(limit)
        if dialect_name == "postgresql":
            arm = arm.with_for_update(skip_locked=True)
        cte = arm.cte(f"due_{number}")
        arms.append(select(cte.c.id, cte.c.run_at))
    due_jobs = union_all(*arms).subquery("due")
    candidates = select(due_jobs.c.id).order_by(due_jobs.c.run_at).limit(limit)
    reclaimed_note = func.coalesce(jobs.c.worker_id, "?").concat(" stopped heartbeating")
    return (
        update(jobs)
        .where(jobs.c.id.in_(candidates.scalar_subquery()))
        .values(
            state=JobState.RUNNING,
            attempts=jobs.c.attempts + 1,
            worker_id=bindparam("claim_worker", type_=String),
            lease_expires_at=bindparam("claim_lease_until", type_=Float),
            started_at=now,
            last_error=case(
                (jobs.c.state == JobState.RUNNING, "lease expired: worker " + reclaimed_note),
                else_=jobs.c.last_error,
            ),
        )
        .returning(jobs.c.id, jobs.c.kind, jobs.c.photo_id, jobs.c.attempts, jobs.c.last_error)
    )


def extend_leases(
    conn: Connection, worker_id: str, lease_seconds: float, now: float | None = None
) -> int:
    """Heartbeat: push back the lease of every job this worker runs, and mark it alive."""
    now = time.time() if now is None else now
    conn.execute(update(workers).where(workers.c.id == worker_id).values(heartbeat_at=now))
    result = conn.execute(
        update(jobs)
        .where(jobs.c.state == JobState.RUNNING, jobs.c.worker_id == worker_id)
        .values(lease_expires_at=now + lease_seconds)
    )
    return result.rowcount


def _held_by(worker_id: str, job_ids: Iterable[str]) -> ColumnElement[bool]:
    return and_(
        jobs.c.id.in_(list(job_ids)),
        jobs.c.worker_id == worker_id,
        jobs.c.state == JobState.RUNNING,
    )


def complete_jobs(
    conn: Connection,
    worker_id: str,
    job_ids: Sequence[str],
    now: float | None = None,
    *,
    reason: str | None = None,
) -> int:
    """Mark jobs done; returns how many this worker still held. ``reason``: what the operator
    should know about a job done only in part (its face step failed), kept as its last error."""
    now = time.time() if now is None else now
    values: dict[str, Any] = {"state": JobState.DONE, "finished_at": now, "lease_expires_at": None}
    if reason:
        values["last_error"] = reason[:4000]
    result = conn.execute(update(jobs).where(_held_by(worker_id, job_ids)).values(**values))
    return result.rowcount


def fail_job(
    conn: Connection,
    worker_id: str,
    job: ClaimedJob,
    error: str,
    *,
    permanent: bool,
    policy: RetryPolicy,
    now: float | None = None,
) -> JobState:
    """Record a failed attempt: retry later (RETRYING) or give up (FAILED). Raises LeaseLost."""
    now = time.time() if now is None else now
    run_at = None if permanent else policy.next_run_at(job.attempts, now)
    if run_at is None:
        state, values = JobState.FAILED, {"finished_at": now}
    else:
        state, values = JobState.RETRYING, {"run_at": run_at}
    result = conn.execute(
        update(jobs)
        .where(_held_by(worker_id, [job.id]))
        .values(state=state, last_error=error[:4000], lease_expires_at=None, **values)
    )
    if result.rowcount == 0:
        raise LeaseLost(f"job {job.id} is no longer held by {worker_id}")
    return state


def release_jobs(conn: Connection, worker_id: str, job_ids: Sequence[str]) -> int:
    """Give back claimed jobs that were never started (shutdown); their attempt is not spent."""
    if not job_ids:
        return 0
    result = conn.execute(
        update(jobs)
        .where(_held_by(worker_id, job_ids))
        .values(
            state=JobState.QUEUED,
            attempts=jobs.c.attempts - 1,
            worker_id=None,
            lease_expires_at=None,
        )
    )
    return result.rowcount


def release_worker_jobs(
    conn: Connection, worker_id: str, reason: str, now: float | None = None
) -> int:
    """Requeue every job a dead worker held, at once rather than after its lease expires.

    The attempt stays spent: the job may be what killed the worker, and max_attempts bounds it.
    """
    now = time.time() if now is None else now
    result = conn.execute(
        update(jobs)
        .where(jobs.c.state == JobState.RUNNING, jobs.c.worker_id == worker_id)
        .values(
            state=JobState.RETRYING,
            run_at=now,
            worker_id=None,
            lease_expires_at=None,
            last_error=reason,
        )
    )
    return result.rowcount


def retry_jobs(
    conn: Connection,
    job_ids: Sequence[str] | None = None,
    *,
    failed: bool = False,
    now: float | None = None,
) -> int:
    """Queue finished jobs again with fresh attempts: the given ids, or every failed job."""
    now = time.time() if now is None else now
    if failed:
        where = jobs.c.state == JobState.FAILED
    else:
        where = and_(
            jobs.c.id.in_(list(job_ids or [])), jobs.c.state.in_([JobState.FAILED, JobState.DONE])
        )
    result = conn.execute(
        update(jobs)
        .where(where)
        .values(
            state=JobState.QUEUED,
            attempts=0,
            run_at=now,
            finished_at=None,
            worker_id=None,
            lease_expires_at=None,
        )
    )
    return result.rowcount


def prune_jobs(
    conn: Connection,
    older_than_seconds: float,
    *,
    include_failed: bool = False,
    now: float | None = None,
) -> int:
    """Delete jobs finished before the cutoff (done ones; failed ones only when asked)."""
    now = time.time() if now is None else now
    states = [JobState.DONE, JobState.FAILED] if include_failed else [JobState.DONE]
    cutoff = now - older_than_seconds
    conn.execute(delete(workers).where(workers.c.stopped_at < cutoff))
    result = conn.execute(delete(jobs).where(jobs.c.state.in_(states), jobs.c.finished_at < cutoff))
    return result.rowcount


def resolve_job_id(conn: Connection, id_or_prefix: str) -> str:
    """A full job id from an id or an unambiguous prefix (as printed by `jobs list`)."""
    prefix = id_or_prefix.strip().rstrip(".").lower()
    if not prefix:
        raise NotFound("empty job id")
    matches = (
        conn.execute(
            select(jobs.c.id).where(jobs.c.id.startswith(prefix, autoescape=True)).limit(2)
        )
        .scalars()
        .all()
    )
    if not matches:
        raise NotFound(f"no job {id_or_prefix}")
    if len(matches) > 1:
        raise NotFound(f"job id {id_or_prefix} is ambiguous; give more characters")
    return matches[0]


def _info_query() -> Select[Any]:
    return select(
        jobs.c.id,
        jobs.c.kind,
        jobs.c.photo_id,
        Photo.__table__.c.filename,
        jobs.c.state,
        jobs.c.attempts,
        jobs.c.run_at,
        jobs.c.created_at,
        jobs.c.started_at,
        jobs.c.finished_at,
        jobs.c.lease_expires_at,
        jobs.c.worker_id,
        jobs.c.last_error,
    ).select_from(jobs.outerjoin(Photo.__table__, Photo.__table__.c.id == jobs.c.photo_id))


def get_job(conn: Connection, id_or_prefix: str) -> JobInfo:
    job_id = resolve_job_id(conn, id_or_prefix)
    row = conn.execute(_info_query().where(jobs.c.id == job_id)).one()
    return JobInfo(*row)


def list_jobs(conn: Connection, state: str | None = None, limit: int = 50) -> list[JobInfo]:
    """Most recently created first."""
    query = _info_query().order_by(jobs.c.created_at.desc(), jobs.c.id).limit(limit)
    if state:
        query = query.where(jobs.c.state == state)
    return [JobInfo(*row) for row in conn.execute(query)]


def count_by_state(conn: Connection) -> dict[str, int]:
    counts = {state.value: 0 for state in JobState}
    for (_, state), count in count_by_kind_and_state(conn).items():
        counts[state] = counts.get(state, 0) + count
    return counts


def count_by_kind_and_state(conn: Connection) -> dict[tuple[str, str], int]:
    """Jobs by (kind, state): one pass over ix_jobs_kind_state, which `stats` reads once for
    both its job and its photo counts."""
    rows = conn.execute(
        select(jobs.c.kind, jobs.c.state, func.count()).group_by(jobs.c.kind, jobs.c.state)
    ).all()
    return {(kind, state): count for kind, state, count in rows}


def latest_job_for_photo(conn: Connection, photo_id: int) -> str | None:
    return conn.execute(
        select(jobs.c.id)
        .where(jobs.c.photo_id == photo_id)
        .order_by(jobs.c.created_at.desc())
        .limit(1)
    ).scalar()


@functools.cache
def _waiting_count_query() -> Select[Any]:
    # Asked up to three times per upload: built once (building it cost more than running it).
    return select(func.count()).select_from(jobs).where(jobs.c.state.in_(WAITING_STATES))


def waiting_count(conn: Connection) -> int:
    """Jobs queued or waiting to retry: the queue size users and backpressure see."""
    return conn.execute(_waiting_count_query()).scalar_one()


# Any constant works; every process that enqueues under the cap takes the same one.
_CAPPED_ENQUEUE_LOCK_ID = 0x70686F75


class QueueFull(PhotoctlError):
    """``queue.max_size`` jobs are already waiting: the caller should come back later."""


def lock_capped_enqueue(conn: Connection) -> None:
    """Serialize capped enqueues until this transaction ends, so a count stays true until
    the insert. On SQLite the write transaction's BEGIN IMMEDIATE already does; PostgreSQL's
    READ COMMITTED would let two transactions count the same free places, so they queue on a
    transaction-level advisory lock (released at commit or rollback)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_CAPPED_ENQUEUE_LOCK_ID)))


def unfinished_count(conn: Connection) -> int:
    """Jobs queued, waiting to retry, or running: what `work --until-empty` waits for."""
    return conn.execute(
        select(func.count()).select_from(jobs).where(jobs.c.state.in_(UNFINISHED_STATES))
    ).scalar_one()


def progress_counts(conn: Connection, since: float) -> tuple[int, int, int]:
    """(done since ``since``, failed since ``since``, unfinished), by every worker.

    One statement, so one snapshot: a job finishing meanwhile is counted once, either as
    finished or as unfinished (three separate counts could miss it or count it twice). Each
    count reads its own index range.
    """
    counts = [
        select(func.count()).select_from(jobs).where(*conditions).scalar_subquery()
        for conditions in (
            (jobs.c.state == JobState.DONE, jobs.c.finished_at >= since),
            (jobs.c.state == JobState.FAILED, jobs.c.finished_at >= since),
            (jobs.c.state.in_(UNFINISHED_STATES),),
        )
    ]
    done, failed, unfinished = conn.execute(select(*counts)).one()
    return int(done), int(failed), int(unfinished)


def next_due_in(conn: Connection, now: float | None = None) -> float | None:
    """Seconds until the next waiting job or expiring lease is due, None if there is none."""
    now = time.time() if now is None else now
    waiting = conn.execute(
        select(func.min(jobs.c.run_at)).where(jobs.c.state.in_(WAITING_STATES))
    ).scalar_one()
    leased = conn.execute(
        select(func.min(jobs.c.lease_expires_at)).where(jobs.c.state == JobState.RUNNING)
    ).scalar_one()
    times = [t for t in (waiting, leased) if t is not None]
    return max(0.0, min(times) - now) if times else None


def retry_named_jobs(
    conn: Connection, names: Sequence[str] = (), *, failed: bool = False
) -> tuple[list[str], int]:
    """Queue finished jobs again as an operator names them: ids or unique prefixes of ids (as
    `jobs list` prints them), or every failed job. Returns (the full ids, how many were queued
    again; fewer than named when some are still queued or running).

    The one composition `jobs retry` and the admin retry route share: every name is resolved
    before anything changes, so an unknown or ambiguous one (NotFound) retries nothing.
    """
    full_ids = [resolve_job_id(conn, name) for name in names]
    return full_ids, retry_jobs(conn, full_ids, failed=failed)
