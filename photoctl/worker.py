"""Workers: a supervisor that keeps N worker processes alive, and the loop each one runs.

The supervisor spawns children (fresh interpreters: no database connection crosses a fork),
reaps and replaces the ones that die, requeues what a dead child held at once instead of
waiting for its lease, and on SIGINT/SIGTERM asks children to stop: they finish the job in hand,
give back the jobs they claimed but had not started, and exit; whoever is still busy after
``queue.shutdown_grace`` is killed and its jobs requeued. Signal handlers only set flags.

A child claims small batches, runs each job, and records the result and the job's completion in
one transaction. A heartbeat thread extends the leases of what it holds, so a job is reclaimed
by another worker (on any machine) only when its worker really stopped.

While it runs, the supervisor reports progress from its children's shared counters and the job
table: to a callback about every second (the CLI draws a bar on a terminal), or otherwise as a
log line every ``log.progress_seconds``, so a run from cron or systemd shows it is moving.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from photoctl import catalog, db, faces, matching, queue
from photoctl.cache import ResponseCache
from photoctl.config import Settings
from photoctl.errors import PermanentError, TransientError
from photoctl.faces import limiter
from photoctl.logs import setup_logging
from photoctl.matching import FaceStep
from photoctl.models import JobKind
from photoctl.pipeline import NoFaces, process_photo

log = logging.getLogger(__name__)

_REAP_INTERVAL_SECONDS = 0.2
_CRASH_BACKOFF_SECONDS = 5.0
_FAST_JOB_SECONDS = 0.02
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@dataclass(frozen=True)
class WorkOptions:
    workers: int = 3
    until_empty: bool = False
    max_jobs: int | None = None
    max_seconds: float | None = None
    engine: str = "none"


@dataclass(frozen=True)
class WorkReport:
    done: int
    failed: int
    restarted: int


@dataclass(frozen=True)
class WorkProgress:
    """Where a `work` run stands, from one snapshot of the job table."""

    done: int  # jobs completed since the run started, by any worker on any machine
    failed: int  # jobs failed for good since the run started
    remaining: int  # queued, retrying or running
    seconds: float  # since the run started

    @property
    def finished(self) -> int:
        return self.done + self.failed

    def describe(self) -> str:
        rate = self.finished / self.seconds if self.seconds > 0 else 0.0
        if not self.remaining:
            eta = ""
        elif rate > 0:
            eta = f", about {_duration(self.remaining / rate)} to go"
        else:
            eta = ", no rate yet"
        return (
            f"{self.done} done, {self.failed} failed in {_duration(self.seconds)} "
            f"({rate:.1f} jobs/s); {self.remaining} left (queued, retrying or running){eta}"
        )


ProgressCallback = Callable[[WorkProgress], None]
_BAR_INTERVAL_SECONDS = 0.5


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _ProgressReporter:
    """Progress for the operator, from the supervisor's loop (it never stops the loop).

    Counts come from the job table, in one statement: jobs finished since the run started and
    jobs not finished yet, so done + left is exact at every moment and other machines' work
    shows too.
    """

    def __init__(self, engine: Engine, callback: ProgressCallback | None, every: float) -> None:
        self.engine, self.callback = engine, callback
        self.every = _BAR_INTERVAL_SECONDS if callback else every
        self.started_at = time.time()
        self.started = time.monotonic()
        self.next_at = self.started if callback else self.started + every

    def tick(self, *, last: bool = False) -> None:
        """Report if it is time; ``last``: the bar's final state, drawn before it closes."""
        now = time.monotonic()
        if last and not self.callback:
            return  # the summary follows: a last log line would only repeat it
        if now < self.next_at and not last:
            return
        self.next_at = now + self.every
        try:
            with db.read(self.engine) as conn:
                done, failed, remaining = queue.progress_counts(conn, self.started_at)
        except Exception as error:  # noqa: BLE001 - an outage is the workers' to report
            log.debug("progress: could not count jobs: %s", error)
            return
        progress = WorkProgress(
            done=done, failed=failed, remaining=remaining, seconds=now - self.started
        )
        if self.callback:
            self.callback(progress)
        else:
            log.info("[Progress] %s", progress.describe())


@dataclass(frozen=True)
class _ChildSpec:
    settings: Settings
    database_url: str
    index: int
    worker_id: str
    until_empty: bool
    engine_name: str
    verbosity: int
    stop: Any  # multiprocessing.Event
    done: Any  # multiprocessing.Value, jobs completed by every child together
    failed: Any
    budget: Any  # multiprocessing.Value: jobs left to claim under --max-jobs, -1 = unlimited


def make_face_step(
    engine_name: str, settings: Settings, database: Engine, holder: str | None = None
) -> FaceStep:
    """The pipeline's face step for an engine name (`none`: thumbnails and metadata only)."""
    face_engine = faces.make_engine(engine_name, settings, database, holder)
    if face_engine is None:
        return NoFaces()
    return FaceStep(database, face_engine)


def new_worker_id(index: int) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{index}:{uuid.uuid4().hex[:8]}"


def run_workers(
    settings: Settings,
    options: WorkOptions,
    verbosity: int = 0,
    progress: ProgressCallback | None = None,
) -> WorkReport:
    """Run the supervisor until the queue is empty (--until-empty), limits are hit, or a signal.

    ``progress`` gets a WorkProgress about every half second; without it, a progress line is
    logged every ``log.progress_seconds``.
    """
    database_url = settings.database_url
    engine = db.make_engine(settings, database_url)
    db.ensure_schema(engine)
    face_engine = faces.make_engine(options.engine, settings, engine)
    if face_engine is not None:
        # Fail fast, with the reason, rather than in every child.
        log.info("[Startup] Face engine %s: %s", face_engine.name, face_engine.check())
    with db.read(engine) as conn:
        pending = queue.waiting_count(conn)
    log.info("[Startup] Photo queue initialized with %d pending jobs", pending)

    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    done, failed = context.Value("q", 0), context.Value("q", 0)
    budget = context.Value("q", options.max_jobs if options.max_jobs is not None else -1)
    requested = {"stop": False}
    reporter = _ProgressReporter(engine, progress, settings.log.progress_seconds)

    def request_stop(signum: int, _frame: object) -> None:
        requested["stop"] = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: dict[int, tuple[Any, str]] = {}
    spawned_at: dict[int, float] = {}
    respawn_at: dict[int, float] = {}
    restarted = 0

    def spawn(index: int) -> None:
        spawned_at[index] = time.monotonic()
        worker_id = new_worker_id(index)
        spec = _ChildSpec(
            settings,
            database_url,
            index,
            worker_id,
            options.until_empty,
            options.engine,
            verbosity,
            stop,
            done,
            failed,
            budget,
        )
        process = context.Process(target=_child_main, args=(spec,), name=f"PhotoWorker-{index}")
        # The child inherits blocked signals and unblocks them once its handlers are set: a
        # SIGTERM during its start-up then stops it cleanly instead of killing it.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        children[index] = (process, worker_id)

    try:
        for index in range(options.workers):
            spawn(index)
        deadline = time.monotonic() + options.max_seconds if options.max_seconds else None
        while children or respawn_at:
            if requested["stop"] or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(_REAP_INTERVAL_SECONDS)
            reporter.tick()
            for index, when in list(respawn_at.items()):
                if time.monotonic() >= when:
                    del respawn_at[index]
                    spawn(index)
            for index, (process, worker_id) in list(children.items()):
                if process.is_alive():
                    continue
                process.join()
                del children[index]
                if process.exitcode == 0:
                    continue  # finished: queue empty (--until-empty) or budget spent
                restarted += 1
                _bury(engine, worker_id, f"PhotoWorker-{index}", process.exitcode)
                # A child that dies right after starting would die again at once: back off.
                lived = time.monotonic() - spawned_at[index]
                respawn_at[index] = time.monotonic() + (_CRASH_BACKOFF_SECONDS if lived < 5 else 0)
        _shutdown(engine, children, stop, settings.queue.shutdown_grace)
        reporter.tick(last=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        engine.dispose()
    return WorkReport(done=done.value, failed=failed.value, restarted=restarted)


def drain_in_process(
    settings: Settings, engine_name: str, worker_name: str = "inline"
) -> WorkReport:
    """Process every job in this process until the queue is finished (tests, benchmarks)."""
    context = multiprocessing.get_context("spawn")
    spec = _ChildSpec(
        settings,
        settings.database_url,
        0,
        new_worker_id(0),
        True,
        engine_name,
        0,
        context.Event(),
        context.Value("q", 0),
        context.Value("q", 0),
        context.Value("q", -1),
    )
    child = _Child(spec)
    child.name = worker_name
    child.run()
    return WorkReport(done=spec.done.value, failed=spec.failed.value, restarted=0)


def _bury(engine: Engine, worker_id: str, name: str, exitcode: int | None) -> None:
    how = f"killed by signal {-exitcode}" if exitcode and exitcode < 0 else f"exit code {exitcode}"
    reason = f"worker {worker_id} died ({how}) while processing"
    try:
        with db.write(engine) as conn:
            released = queue.release_worker_jobs(conn, worker_id, reason)
            queue.stop_worker(conn, worker_id, 0, 0)
        limiter.release_holder(engine, worker_id)
    except TransientError as error:
        log.warning(
            "[%s] died (%s); could not requeue its jobs now (%s): they return when their "
            "lease expires",
            name,
            how,
            error,
        )
        return
    log.warning("[%s] died (%s); %d of its jobs requeued", name, how, released)


def _shutdown(
    engine: Engine, children: dict[int, tuple[Any, str]], stop: Any, grace_seconds: float
) -> None:
    if not children:
        return
    log.info("[Shutdown] Stopping %d workers (grace %.0f s)", len(children), grace_seconds)
    stop.set()
    for process, _ in children.values():
        if process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for index, (process, worker_id) in children.items():
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
            _bury(engine, worker_id, f"PhotoWorker-{index}", process.exitcode)
        elif process.exitcode != 0:
            _bury(engine, worker_id, f"PhotoWorker-{index}", process.exitcode)


class _Child:
    """One worker process's loop."""

    def __init__(self, spec: _ChildSpec) -> None:
        self.spec = spec
        self.settings = spec.settings
        self.name = f"PhotoWorker-{spec.index}"
        self.worker_id = spec.worker_id
        self.stopping = False
        self.parent_pid = os.getppid()
        self.engine = db.make_engine(self.settings, spec.database_url)
        self.faces = make_face_step(spec.engine_name, self.settings, self.engine, self.worker_id)
        self.policy = queue.RetryPolicy(
            max_attempts=self.settings.queue.max_attempts,
            base_seconds=self.settings.queue.retry_base_seconds,
            max_seconds=self.settings.queue.retry_max_seconds,
        )
        self.jobs_done = 0
        self.jobs_failed = 0
        self._cache: ResponseCache | None = None

    def should_stop(self) -> bool:
        return self.stopping or self.spec.stop.is_set() or os.getppid() != self.parent_pid

    def run(self) -> None:
        with db.write(self.engine) as conn:
            queue.register_worker(conn, self.worker_id, socket.gethostname(), os.getpid())
        face_engine = getattr(self.faces, "engine", None)
        if face_engine is not None:
            face_engine.warm_up()  # ~0.9 s for dlib: better before the first claim than in it
        heartbeat = threading.Thread(target=self._heartbeat_loop, daemon=True)
        heartbeat.start()
        idle_seconds = 0.05
        # Claim one job at a time while jobs are slow (so N workers share a short queue), and
        # grow towards queue.claim_batch while they are fast (so the queue is not the bottleneck).
        batch = 1
        try:
            while not self.should_stop():
                limit = self._reserve(batch)
                if limit == 0:
                    break
                try:
                    with db.write(self.engine) as conn:
                        claimed = queue.claim_jobs(
                            conn, self.worker_id, limit, self.settings.queue.lease_seconds
                        )
                except TransientError as error:
                    self._unreserve(limit)
                    log.warning("[%s] claim failed, retrying: %s", self.name, error)
                    self._sleep(idle_seconds)
                    idle_seconds = min(self.settings.queue.poll_seconds, idle_seconds * 2)
                    continue
                self._unreserve(limit - len(claimed))
                if claimed:
                    idle_seconds = 0.05
                    started = time.monotonic()
                    self._run_batch(claimed)
                    per_job = (time.monotonic() - started) / len(claimed)
                    fast = per_job < _FAST_JOB_SECONDS
                    batch = min(self.settings.queue.claim_batch, batch * 2) if fast else 1
                    continue
                if self.spec.until_empty and self._queue_is_finished():
                    break
                self._sleep(idle_seconds * random.uniform(0.5, 1.0))
                idle_seconds = min(self.settings.queue.poll_seconds, idle_seconds * 2)
        finally:
            self.stopping = True
            with db.write(self.engine) as conn:
                queue.stop_worker(conn, self.worker_id, self.jobs_done, self.jobs_failed)
            self.engine.dispose()

    def _queue_is_finished(self) -> bool:
        with db.read(self.engine) as conn:
            if queue.unfinished_count(conn) == 0:
                return True
            due_in = queue.next_due_in(conn)
        # Something is retrying later or running elsewhere: wait for it, but not too long at once.
        if due_in is not None and due_in > 0:
            self._sleep(min(due_in, self.settings.queue.poll_seconds))
        return False

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.should_stop() and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def _reserve(self, wanted: int) -> int:
        with self.spec.budget.get_lock():
            left = self.spec.budget.value
            if left < 0:
                return wanted
            granted = min(wanted, left)
            self.spec.budget.value = left - granted
            return granted

    def _unreserve(self, count: int) -> None:
        if count <= 0:
            return
        with self.spec.budget.get_lock():
            if self.spec.budget.value >= 0:
                self.spec.budget.value += count

    def _heartbeat_loop(self) -> None:
        interval = max(0.2, min(10.0, self.settings.queue.lease_seconds / 4))
        while not self.stopping:
            time.sleep(interval)
            if self.stopping:
                break
            try:
                with db.write(self.engine) as conn:
                    queue.extend_leases(conn, self.worker_id, self.settings.queue.lease_seconds)
            except Exception as error:  # noqa: BLE001 - the heartbeat must outlive hiccups
                log.warning("[%s] heartbeat failed: %s", self.name, error)

    def _run_batch(self, claimed: list[queue.ClaimedJob]) -> None:
        noops: list[str] = []
        for position, job in enumerate(claimed):
            if self.should_stop():
                unstarted = [j.id for j in claimed[position:]]
                with db.write(self.engine) as conn:
                    queue.release_jobs(conn, self.worker_id, unstarted)
                log.info("[%s] Released %d unstarted jobs on shutdown", self.name, len(unstarted))
                break
            if job.attempts > self.policy.max_attempts:
                self._fail(
                    job,
                    f"gave up after {job.attempts - 1} attempts: {job.last_error or 'worker lost'}",
                    permanent=True,
                )
            elif job.kind == JobKind.NOOP:
                noops.append(job.id)  # completed together below: measures the queue alone
            elif job.kind == JobKind.PROCESS_PHOTO:
                self._run_photo_job(job)
            else:
                self._fail(job, f"unknown job kind {job.kind!r}", permanent=True)
        if noops:
            with db.write(self.engine) as conn:
                completed = queue.complete_jobs(conn, self.worker_id, noops)
            self._count_done(completed)

    def _run_photo_job(self, job: queue.ClaimedJob) -> None:
        try:
            with db.read(self.engine) as conn:
                photo = catalog.get_photo(conn, job.photo_id) if job.photo_id else None
            if photo is None:
                raise PermanentError(f"photo {job.photo_id} no longer exists")
            log.info("[%s] Processing job %s: %s", self.name, job.id, photo.filename)
            outcome = process_photo(self.settings, photo, self.faces)
            with db.write(self.engine) as conn:
                now = time.time()
                catalog.record_processed(conn, outcome.processed, now)
                matching.mark_findable(conn, photo.id, now)
                if queue.complete_jobs(conn, self.worker_id, [job.id], now) == 0:
                    raise queue.LeaseLost(f"job {job.id} was reclaimed by another worker")
            if outcome.faces.user_ids:
                self._drop_cached_lists(outcome.faces.user_ids)
        except queue.LeaseLost as error:
            log.warning("[%s] %s; its result was discarded", self.name, error)
            return
        except PermanentError as error:
            self._fail(job, str(error), permanent=True)
            return
        except Exception as error:  # noqa: BLE001 - anything else may pass: retry with backoff
            log.debug("[%s] job %s raised:\n%s", self.name, job.id, traceback.format_exc())
            message = (
                str(error)
                if isinstance(error, TransientError)
                else (f"{type(error).__name__}: {error}")
            )
            self._fail(job, message, permanent=False)
            return
        self._count_done(1)
        faces = outcome.faces
        log.info(
            "[%s] Job %s completed: photo %d (%d %s, %d %s)",
            self.name,
            job.id,
            photo.id,
            faces.faces,
            "face" if faces.faces == 1 else "faces",
            faces.matches,
            "match" if faces.matches == 1 else "matches",
        )

    def _drop_cached_lists(self, user_ids: tuple[int, ...]) -> None:
        """The users found in this photo see it on their next request, not after the TTL."""
        try:
            if self._cache is None:
                self._cache = ResponseCache(self.settings)
            self._cache.drop_users(user_ids)
        except Exception as error:  # noqa: BLE001 - a stale cache must not fail a done job
            log.warning("[%s] could not drop cached photo lists: %s", self.name, error)

    def _fail(self, job: queue.ClaimedJob, error: str, *, permanent: bool) -> None:
        try:
            with db.write(self.engine) as conn:
                state = queue.fail_job(
                    conn, self.worker_id, job, error, permanent=permanent, policy=self.policy
                )
        except queue.LeaseLost as lost:
            log.warning("[%s] %s", self.name, lost)
            return
        if state == queue.JobState.FAILED:
            self.jobs_failed += 1
            with self.spec.failed.get_lock():
                self.spec.failed.value += 1
            log.error("[%s] Job %s failed: %s", self.name, job.id, error)
        else:
            log.warning(
                "[%s] Job %s will be retried (attempt %d of %d): %s",
                self.name,
                job.id,
                job.attempts,
                self.policy.max_attempts,
                error,
            )

    def _count_done(self, count: int) -> None:
        self.jobs_done += count
        with self.spec.done.get_lock():
            self.spec.done.value += count


def _lower_priority(nice: int) -> None:
    """Run this worker process `nice` steps below serve.

    On Linux with autogroups (kernel.sched_autogroup_enabled = 1, the default of most
    distributions) the CPU is shared fairly between sessions first, and a process's nice value
    only counts against processes of its own session: a `photoctl work` started by setsid, as a
    daemon or from another terminal competes with serve at full weight whatever its nice value
    (measured with scripts/bench_serve.py). When the supervisor leads its own session, that
    session's autogroup holds nothing but this `photoctl work`, so it is lowered too.
    """
    try:
        os.nice(nice)
    except OSError:
        return  # not permitted here; run at normal priority
    try:
        if os.getsid(0) != os.getppid():
            return  # the session holds a shell or other programs too: leave it alone
        with open("/proc/self/autogroup") as current:  # "/autogroup-123 nice 0"
            if int(current.read().split()[-1]) >= nice:
                return
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(nice))
    except (OSError, ValueError, IndexError):
        pass  # no autogroups (disabled, a cgroup, not Linux): os.nice is what there is


def _child_main(spec: _ChildSpec) -> None:
    child: _Child | None = None
    stop_requested = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True
        if child is not None:
            child.stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    setup_logging(spec.settings, spec.verbosity)
    if spec.settings.queue.worker_nice:
        _lower_priority(spec.settings.queue.worker_nice)
    child = _Child(spec)
    child.stopping = stop_requested
    child.run()
