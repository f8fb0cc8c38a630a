"""Benchmark the durable job queue: no-op jobs drained by `photoctl work` on SQLite and PostgreSQL.

For each database and each claim batch size asked for, REPEAT times:

  1. create a fresh database (a SQLite file in a temporary directory; a scratch PostgreSQL
     database created next to --postgres-url and dropped afterwards) with the schema;
  2. enqueue JOBS no-op jobs (kind `noop`) with photoctl.queue.enqueue_jobs in one transaction;
  3. run the real `photoctl -q work -n WORKERS --until-empty --engine none` as a subprocess,
     with PHOTOCTL_QUEUE_CLAIM_BATCH set to the batch size (a worker's claim batch grows from 1
     towards it while jobs are fast);
  4. read the job table: jobs/s = JOBS / (last finished_at - first started_at) of the no-op
     jobs, i.e. the queue alone, without process start-up; the wall time of the subprocess
     (interpreter start-up, spawning workers, draining, shutting down) is reported beside it.

The target is at least 2,000 no-op jobs/s on each database with 2 worker processes on a
2-core machine. PostgreSQL is skipped, with a message, when --postgres-url cannot be reached.
`--profile` also drains one extra queue per database inside this process under cProfile
(photoctl.worker.drain_in_process: the same child loop, one process) and prints where the time
goes.

    .venv/bin/python scripts/bench_queue.py --jobs 20000 --batches 10,50 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _bench import clean_env, cli_command, load_average, run_counting_descendants
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from photoctl import db, queue
from photoctl.config import Settings
from photoctl.models import Job, JobKind, JobState

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_JOBS_PER_SECOND = 2000
ENQUEUE_CHUNK = 5000
jobs_table = Job.__table__


@dataclass(frozen=True)
class Result:
    database: str
    batch: int
    enqueue_seconds: float
    drain_seconds: float  # first started_at to last finished_at
    wall_seconds: float  # the `photoctl work` subprocess, start to exit
    startup_seconds: float  # subprocess start to the first claim
    tail_seconds: float  # last completion to subprocess exit
    cpu_seconds: float  # user + system CPU of `photoctl work` and its worker processes
    done: int
    workers_used: int
    commit_ms: float | None  # PostgreSQL: median time of one tiny durable commit, just before

    def rate(self, jobs: int) -> float:
        return jobs / self.drain_seconds if self.drain_seconds > 0 else float("inf")


def bench_settings(data_dir: Path, url: str) -> Settings:
    """Defaults only (no config.ini, no environment), with the given database."""
    return Settings(data_dir=data_dir).replace("database", url=url)


# -- databases ----------------------------------------------------------------------------------


def postgres_reachable(admin_url: str) -> str | None:
    """None when a connection to admin_url works, else the reason."""
    import psycopg

    try:
        with psycopg.connect(_libpq_url(admin_url), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        return str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
    return None


def _libpq_url(url: str) -> str:
    """A SQLAlchemy-style URL as libpq takes it (no +driver)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    """A fresh, empty database next to admin_url's, dropped on exit; yields its URL."""
    import psycopg

    name = f"photoctl_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_libpq_url(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq_url(admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_sqlite(work: Path) -> Iterator[str]:
    path = work / f"queue-{uuid.uuid4().hex[:8]}.db"
    try:
        yield f"sqlite:///{path}"
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def scratch(kind: str, work: Path, admin_url: str) -> contextlib.AbstractContextManager[str]:
    return scratch_sqlite(work) if kind == "sqlite" else scratch_postgres(admin_url)


# -- one measurement ----------------------------------------------------------------------------


def enqueue_noops(settings: Settings, url: str, count: int) -> float:
    """Create the schema and enqueue COUNT no-op jobs; returns the seconds the enqueue took."""
    engine = db.make_engine(settings, url)
    try:
        db.ensure_schema(engine)
        started = time.perf_counter()
        with db.write(engine) as conn:
            for start in range(0, count, ENQUEUE_CHUNK):
                size = min(ENQUEUE_CHUNK, count - start)
                queue.enqueue_jobs(conn, JobKind.NOOP, [None] * size)
        return time.perf_counter() - started
    finally:
        engine.dispose()


def drained_figures(settings: Settings, url: str) -> tuple[int, float, float, int, int]:
    """(done, first started_at, last finished_at, distinct workers, not done) of no-op jobs."""
    engine = db.make_engine(settings, url)
    try:
        with db.read(engine) as conn:
            noop = jobs_table.c.kind == JobKind.NOOP
            done, first, last, workers = conn.execute(
                select(
                    func.count(),
                    func.min(jobs_table.c.started_at),
                    func.max(jobs_table.c.finished_at),
                    func.count(func.distinct(jobs_table.c.worker_id)),
                ).where(noop, jobs_table.c.state == JobState.DONE)
            ).one()
            left = conn.execute(
                select(func.count()).where(noop, jobs_table.c.state != JobState.DONE)
            ).scalar_one()
    finally:
        engine.dispose()
    return done, first or 0.0, last or 0.0, workers, left


def run_workers(
    url: str, data_dir: Path, workers: int, batch: int, nice: int | None
) -> tuple[float, float, float]:
    """(epoch at start, epoch at exit, CPU seconds) of `photoctl -q work -n WORKERS`."""
    env = clean_env()
    env["PHOTOCTL_QUEUE_CLAIM_BATCH"] = str(batch)
    if nice is not None:
        env["PHOTOCTL_QUEUE_WORKER_NICE"] = str(nice)
    command = [
        *cli_command(),
        "-q",
        "--data-dir",
        str(data_dir),
        "--database-url",
        url,
        "work",
        "-n",
        str(workers),
        "--until-empty",
        "--engine",
        "none",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    done = run_counting_descendants(
        command, cwd=data_dir, env=env, capture_output=True, text=True, check=False
    )
    ended = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"photoctl work failed ({done.returncode}):\n{done.stderr}")
    # The forkserver waits for the workers and run_counting_descendants for it: all in ours.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return started, ended, cpu


def measure(
    kind: str, work: Path, admin_url: str, jobs: int, workers: int, batch: int, nice: int | None
) -> Result:
    data_dir = work / "data"
    data_dir.mkdir(exist_ok=True)
    with scratch(kind, work, admin_url) as url:
        settings = bench_settings(data_dir, url)
        enqueue_seconds = enqueue_noops(settings, url, jobs)
        commit_ms = commit_latency_ms(url) if kind == "postgresql" else None
        started, ended, cpu = run_workers(url, data_dir, workers, batch, nice)
        done, first, last, workers_used, left = drained_figures(settings, url)
    if done != jobs or left:
        sys.exit(f"{kind}: expected {jobs} done no-op jobs, found {done} done and {left} not")
    return Result(
        kind,
        batch,
        enqueue_seconds,
        drain_seconds=last - first,
        wall_seconds=ended - started,
        startup_seconds=first - started,
        tail_seconds=ended - last,
        cpu_seconds=cpu,
        done=done,
        workers_used=workers_used,
        commit_ms=commit_ms,
    )


def fixed_cost(kind: str, work: Path, admin_url: str, workers: int, nice: int | None) -> Result:
    """`photoctl work --until-empty` over an empty queue: start-up and exit alone."""
    data_dir = work / "data"
    data_dir.mkdir(exist_ok=True)
    with scratch(kind, work, admin_url) as url:
        enqueue_noops(bench_settings(data_dir, url), url, 0)
        started, ended, cpu = run_workers(url, data_dir, workers, 1, nice)
    return Result(kind, 0, 0.0, 0.0, ended - started, 0.0, 0.0, cpu, 0, 0, None)


def commit_latency_ms(url: str, commits: int = 40) -> float:
    """Median milliseconds of one one-row UPDATE + COMMIT: the WAL flush every claim waits for.

    On a shared virtual disk fdatasync ranges from 0.1 ms to several ms, and a worker commits
    twice per claimed batch (claim, then completion), so this bounds jobs/s at batch 10.
    """
    import psycopg

    with psycopg.connect(_libpq_url(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_commit_probe (id int PRIMARY KEY, n int)")
        conn.execute("INSERT INTO bench_commit_probe VALUES (1, 0)")
        times = []
        for _ in range(commits):
            started = time.perf_counter()
            conn.execute("UPDATE bench_commit_probe SET n = n + 1 WHERE id = 1")
            times.append(time.perf_counter() - started)
        conn.execute("DROP TABLE bench_commit_probe")
    return statistics.median(times) * 1000


def profile_inline(
    kind: str, work: Path, admin_url: str, jobs: int, batch: int, lines: int
) -> None:
    """Drain a fresh queue in this process under cProfile and print the top functions."""
    from photoctl.worker import drain_in_process

    data_dir = work / "data"
    data_dir.mkdir(exist_ok=True)
    with scratch(kind, work, admin_url) as url:
        settings = bench_settings(data_dir, url).replace("queue", claim_batch=batch)
        enqueue_noops(settings, url, jobs)
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        report = drain_in_process(settings, "none", "bench")
        profiler.disable()
        seconds = time.perf_counter() - started
    print(
        f"\ncProfile, {kind}, one process, claim batch {batch}: {report.done} jobs in "
        f"{seconds:.2f} s ({report.done / seconds:.0f}/s under the profiler); top {lines}:"
    )
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(lines)


# -- main ---------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    kinds = []
    if not args.no_sqlite:
        kinds.append("sqlite")
    if not args.no_postgres:
        reason = postgres_reachable(args.postgres_url)
        if reason is None:
            kinds.append("postgresql")
        else:
            print(f"PostgreSQL skipped: {args.postgres_url} unreachable ({reason})")
    nice = "queue.worker_nice default (10)" if args.nice is None else f"nice {args.nice}"
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="photoctl-bench-queue-") as temp:
        work = Path(temp)
        print(
            f"{args.jobs} no-op jobs, photoctl work -n {args.workers} --until-empty, claim "
            f"batches {args.batches}, {args.repeat} runs each; workers at {nice}; "
            f"{os.cpu_count()} CPUs, load average {load_average()} before"
        )
        fixed = {}
        for kind in kinds:
            fixed[kind] = fixed_cost(kind, work, args.postgres_url, args.workers, args.nice)
            print(
                f"  {kind:10} empty queue: wall {fixed[kind].wall_seconds:5.2f} s, "
                f"CPU {fixed[kind].cpu_seconds:5.2f} s (start-up and exit of "
                f"{args.workers + 1} processes; subtracted from CPU us/job below)",
                flush=True,
            )
        for attempt in range(1, args.repeat + 1):
            for kind in kinds:
                for batch in args.batches:
                    result = measure(
                        kind, work, args.postgres_url, args.jobs, args.workers, batch, args.nice
                    )
                    results.append(result)
                    print_result(attempt, result, args.jobs, fixed[kind].cpu_seconds)
        if args.profile:
            for kind in kinds:
                profile_inline(
                    kind, work, args.postgres_url, args.jobs, max(args.batches), args.profile_lines
                )
    summarize(results, kinds, args, {kind: fixed[kind].cpu_seconds for kind in kinds})


def print_result(attempt: int, result: Result, jobs: int, fixed_cpu: float) -> None:
    commit = f", commit {result.commit_ms:.2f} ms" if result.commit_ms is not None else ""
    print(
        f"  run {attempt} {result.database:10} batch {result.batch:3}: "
        f"{result.rate(jobs):6.0f} jobs/s in the table ({result.drain_seconds:5.2f} s); "
        f"wall {result.wall_seconds:5.2f} s = {jobs / result.wall_seconds:5.0f}/s "
        f"(start-up {result.startup_seconds:4.2f} s, exit {result.tail_seconds:4.2f} s); "
        f"CPU {result.cpu_seconds:5.2f} s = "
        f"{(result.cpu_seconds - fixed_cpu) / jobs * 1e6:4.0f} us/job; "
        f"enqueue {jobs / result.enqueue_seconds:6.0f}/s; {result.workers_used} workers; "
        f"load {load_average()}{commit}",
        flush=True,
    )


def summarize(
    results: list[Result], kinds: list[str], args: argparse.Namespace, fixed_cpu: dict[str, float]
) -> None:
    print()
    print(
        f"{'database':10} {'batch':>5} {'best /s':>8} {'median /s':>9} {'median wall s':>13}"
        f" {'wall /s':>8} {'CPU us/job':>10}"
    )
    for kind in kinds:
        for batch in args.batches:
            mine = [r for r in results if r.database == kind and r.batch == batch]
            rates = [r.rate(args.jobs) for r in mine]
            wall = statistics.median(r.wall_seconds for r in mine)
            cpu = statistics.median(r.cpu_seconds - fixed_cpu[kind] for r in mine)
            cpu = cpu / args.jobs * 1e6
            median = statistics.median(rates)
            verdict = "meets" if median >= TARGET_JOBS_PER_SECOND else "MISSES"
            print(
                f"{kind:10} {batch:5} {max(rates):8.0f} {median:9.0f} {wall:13.2f} "
                f"{args.jobs / wall:8.0f} {cpu:10.0f}  {verdict} {TARGET_JOBS_PER_SECOND}/s "
                "(table, median)"
            )
    print(
        "CPU us/job counts photoctl's processes only (not the PostgreSQL server); with other "
        "work on the machine, niced workers wait for a core, so compare CPU figures as well."
    )


def parse_batches(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("batch sizes must be at least 1")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20000, help="no-op jobs per run (20000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument(
        "--batches",
        type=parse_batches,
        default=[10, 50],
        help="comma-separated queue.claim_batch values to compare (10,50)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each figure (3)")
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help=f"a database on the server to use; scratch databases are made beside it "
        f"({DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument(
        "--nice",
        type=int,
        help="queue.worker_nice for the workers (default: the configured 10); 0 measures "
        "the queue without yielding to whatever else runs on the machine",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="skip SQLite")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also drain one queue per database in-process under cProfile and print the top",
    )
    parser.add_argument("--profile-lines", type=int, default=30, help="functions shown (30)")
    args = parser.parse_args()
    if args.jobs < 1 or args.workers < 1 or args.repeat < 1:
        parser.error("--jobs, --workers and --repeat must be at least 1")
    run(args)


if __name__ == "__main__":
    main()
