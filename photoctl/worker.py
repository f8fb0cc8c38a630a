"""Workers: a supervisor that keeps N worker processes alive, and the loop each one runs.

The supervisor spawns children (fresh interpreters: no database connection crosses a fork),
reaps and replaces the ones that die, requeues what a dead child held at once instead of
waiting for its lease, and on SIGINT/SIGTERM asks children to stop: they finish the job in hand,
give back the jobs they claimed but had not started, and exit; whoever is still busy after
``queue.shutdown_grace`` is killed and its jobs requeued. Signal handlers only set flags.

A child claims small batches, runs each job, and records the result and the job's completion in
one transaction. A heartbeat thread extends the leases of what it holds, so a job is reclaimed
by another worker (on any machine) only when its worker really stopped.

What is not the photo's fault never spends its attempts or kills a worker: while the database
is unreachable a child waits and reconnects with backoff (one log line when the outage starts,
one when it ends); when the disk is full (StorageFull) every child of the supervisor stops
claiming, gives back what it holds with the attempt refunded, and resumes once space can be
allocated again. At start-up a supervisor requeues the jobs of this host's registered workers
whose processes are gone (a kill -9 of a previous supervisor), instead of waiting out leases.

While it runs, the supervisor reports progress from its children's shared counters and the job
table: to a callback about every second (the CLI draws a bar on a terminal), or otherwise as a
log line every ``log.progress_seconds``, so a run from cron or systemd shows it is moving.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import multiprocessing
import os
import random
import signal
import socket
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine

from photoctl import catalog, db, faces, matching, queue, workers_registry
from photoctl.cache import ResponseCache
from photoctl.config import Settings
from photoctl.errors import PermanentError, StorageFull, TransientError
from photoctl.faces import limiter
from photoctl.imaging import read_source
from photoctl.logs import setup_logging
from photoctl.matching import FaceStep
from photoctl.models import JobKind
from photoctl.pipeline import NoFaces, process_photo

log = logging.getLogger(__name__)

_REAP_INTERVAL_SECONDS = 0.2
_CRASH_BACKOFF_SECONDS = 5.0
_FAST_JOB_SECONDS = 0.02
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
# Waiting for the database: first retry after this, doubling up to the longest wait.
_DB_RETRY_FIRST_SECONDS = 0.2
_DB_RETRY_MAX_SECONDS = 5.0
# Claiming resumes after a full disk once this much is free where photoctl writes.
_SPACE_MARGIN_BYTES = 2 << 20
_SPACE_CHECK_SECONDS = 1.0
# A registered worker whose process started later than this after its registration is another
# process that got the same pid.
_PID_START_SLACK_SECONDS = 2.0

T = TypeVar("T")


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
    storage_full: Any  # multiprocessing.Value: time claiming paused for lack of space, 0 = not


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
    requeue_jobs_of_gone_workers(engine)
    with db.read(engine) as conn:
        pending = queue.waiting_count(conn)
    log.info("[Startup] Photo queue initialized with %d pending jobs", pending)

    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    done, failed = context.Value("q", 0), context.Value("q", 0)
    budget = context.Value("q", options.max_jobs if options.max_jobs is not None else -1)
    storage_full = context.Value("d", 0.0)
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
            storage_full,
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
        context.Value("d", 0.0),
    )
    child = _Child(spec)
    child.name = worker_name
    child.run()
    return WorkReport(done=spec.done.value, failed=spec.failed.value, restarted=0)


def requeue_jobs_of_gone_workers(engine: Engine, hostname: str | None = None) -> int:
    """Requeue at once the jobs of this host's registered workers whose processes are gone.

    A supervisor killed with -9 takes its children along without recording anything, and their
    jobs would wait out ``queue.lease_seconds``. Its successor on the same host can tell: a
    worker registered from this host that never recorded a stop, whose pid is no longer running
    or now belongs to a process started after the worker registered (the pid was reused), is
    gone. Workers of other hosts are left to their leases: this host cannot see their processes.
    Returns how many jobs went back to the queue; a database that does not answer is not an
    error here (the leases still bring the jobs back).
    """
    hostname = hostname or socket.gethostname()
    try:
        with db.read(engine) as conn:
            registered = workers_registry.unstopped_workers_on_host(conn, hostname)
        gone = [w for w in registered if not _is_running(w.pid, w.started_at)]
        requeued = 0
        for worker in gone:
            reason = (
                f"worker {worker.id} was gone (pid {worker.pid} not running) when a supervisor "
                "started on its host"
            )
            with db.write(engine) as conn:
                requeued += queue.release_worker_jobs(conn, worker.id, reason)
                workers_registry.mark_worker_gone(conn, worker.id)
            limiter.release_holder(engine, worker.id)
    except TransientError as error:
        log.warning("[Startup] Could not look for jobs of workers that are gone: %s", error)
        return 0
    if gone:
        log.info(
            "[Startup] %d jobs requeued from %d workers of this host that are gone",
            requeued,
            len(gone),
        )
    return requeued


def _is_running(pid: int, registered_at: float) -> bool:
    """Is the process that registered as a worker at ``registered_at`` with this pid alive?

    A pid alone is not enough after a restart: the kernel reuses pids, and a new process (even
    this supervisor) may hold a dead worker's. A worker registers after its process started, so
    a process that started after the registration is another one. Where /proc cannot tell, the
    process is taken as running: its lease will still bring its jobs back.
    """
    if pid == os.getpid():
        return False  # this supervisor is not a worker; the registered one is gone
    try:
        stat_text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return _signal_zero(pid)
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    fields = stat_text[stat_text.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return False  # exited, not yet reaped
    started_at = _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return started_at <= registered_at + _PID_START_SLACK_SECONDS


def _can_reserve(directory: Path, size: int) -> bool:
    """Can ``size`` bytes really be allocated in this directory now (disk and quota alike)?

    statvfs alone misses quotas, which would resume claiming at once and pause again in a loop;
    posix_fallocate asks the filesystem for the blocks themselves (and gives them back).
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=directory, prefix=".space-probe-")
    except OSError as error:
        return error.errno not in (errno.ENOSPC, errno.EDQUOT)
    try:
        os.posix_fallocate(handle, 0, size)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return False
        # No fallocate on this filesystem: what statvfs says will do.
        info = os.statvfs(directory)
        return info.f_bavail * info.f_frsize >= size
    finally:
        os.close(handle)
        os.unlink(probe)
    return True


def _signal_zero(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _boot_time() -> float:
    with open("/proc/stat") as stat_file:
        for line in stat_file:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def _bury(engine: Engine, worker_id: str, name: str, exitcode: int | None) -> None:
    how = f"killed by signal {-exitcode}" if exitcode and exitcode < 0 else f"exit code {exitcode}"
    reason = f"worker {worker_id} died ({how}) while processing"
    try:
        with db.write(engine) as conn:
            released = queue.release_worker_jobs(conn, worker_id, reason)
            workers_registry.stop_worker(conn, worker_id, 0, 0)
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


class _DatabaseOutage:
    """Whether this worker can reach the database, so that an outage is logged once, not per call.

    The main loop and the heartbeat thread both report here; the first failure logs
    "database unreachable", the first success after it "database back".
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.since: float | None = None

    def down(self, error: BaseException) -> None:
        with self._lock:
            if self.since is not None:
                return
            self.since = time.monotonic()
        log.warning("[%s] database unreachable (%s); waiting for it", self.name, error)

    def up(self) -> None:
        with self._lock:
            if self.since is None:
                return
            seconds = time.monotonic() - self.since
            self.since = None
        log.warning("[%s] database back after %.1f s; resuming", self.name, seconds)


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
        self.outage = _DatabaseOutage(self.name)
        self.storage_full: StorageFull | None = None  # set by a job that found no space
        # Jobs this worker could not give back (the database's disk was full): still held,
        # their leases kept alive by the heartbeat, so they are given back as soon as it can.
        self.unreleased: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value
        if hasattr(self, "outage"):
            self.outage.name = value

    def should_stop(self) -> bool:
        return self.stopping or self.spec.stop.is_set() or os.getppid() != self.parent_pid

    def _db(self, action: Callable[[], T]) -> T:
        """Run a database action, waiting out an outage (backoff) instead of failing on it.

        Returns once the action succeeds. Raises StorageFull at once (the caller pauses), and
        the last TransientError only when this worker is asked to stop meanwhile.
        """
        delay = _DB_RETRY_FIRST_SECONDS
        while True:
            try:
                result = action()
            except StorageFull:
                raise
            except TransientError as error:
                self.outage.down(error)
                if self.should_stop():
                    raise
                self._sleep(delay * random.uniform(0.75, 1.0))
                delay = min(_DB_RETRY_MAX_SECONDS, delay * 2)
                continue
            self.outage.up()
            return result

    def run(self) -> None:
        if not self._register_when_possible():
            self.engine.dispose()
            return
        face_engine = getattr(self.faces, "engine", None)
        if face_engine is not None:
            face_engine.warm_up()  # ~0.9 s for dlib: better before the first claim than in it
        heartbeat = threading.Thread(target=self._heartbeat_loop, daemon=True)
        heartbeat.start()
        try:
            self._loop()
        except TransientError as error:
            # Only when asked to stop during an outage: what it holds returns with its lease.
            log.warning("[%s] stopping while the database is unreachable: %s", self.name, error)
        finally:
            self.stopping = True
            try:
                with db.write(self.engine) as conn:
                    workers_registry.stop_worker(
                        conn, self.worker_id, self.jobs_done, self.jobs_failed
                    )
            except TransientError as error:
                log.warning("[%s] could not record its stop: %s", self.name, error)
            self.engine.dispose()

    def _register_when_possible(self) -> bool:
        """Register, waiting out an outage or a full disk; False if asked to stop first."""
        while True:
            try:
                self._db(self._register)
                return True
            except StorageFull as error:  # the database's disk is full: wait like the others
                self._storage_is_full(error)
                self._wait_for_space()
                if self.should_stop():
                    log.warning("[%s] stopped before it could register: %s", self.name, error)
                    return False
            except TransientError as error:
                log.warning("[%s] stopped before it could register: %s", self.name, error)
                return False

    def _register(self) -> None:
        with db.write(self.engine) as conn:
            workers_registry.register_worker(
                conn, self.worker_id, socket.gethostname(), os.getpid()
            )

    def _loop(self) -> None:
        idle_seconds = 0.05
        # Claim one job at a time while jobs are slow (so N workers share a short queue), and
        # grow towards queue.claim_batch while they are fast (so the queue is not the bottleneck).
        batch = 1
        while not self.should_stop():
            if self.storage_full is not None or self.spec.storage_full.value:
                self._wait_for_space()
                continue
            if self.unreleased:
                held, self.unreleased = self.unreleased, []
                self._release(held)
                continue
            limit = self._reserve(batch)
            if limit == 0:
                break
            try:
                claimed = self._db(self._claim(limit))
            except StorageFull as error:  # the database's disk is full
                self._unreserve(limit)
                self._storage_is_full(error)
                continue
            except TransientError:
                self._unreserve(limit)
                raise
            self._unreserve(limit - len(claimed))
            if claimed:
                idle_seconds = 0.05
                started = time.monotonic()
                self._run_batch(claimed)
                per_job = (time.monotonic() - started) / len(claimed)
                fast = per_job < _FAST_JOB_SECONDS
                batch = min(self.settings.queue.claim_batch, batch * 2) if fast else 1
                continue
            if self.spec.until_empty and self._db(self._queue_is_finished):
                break
            self._sleep(idle_seconds * random.uniform(0.5, 1.0))
            idle_seconds = min(self.settings.queue.poll_seconds, idle_seconds * 2)

    def _claim(self, limit: int) -> Callable[[], list[queue.ClaimedJob]]:
        def claim() -> list[queue.ClaimedJob]:
            with db.write(self.engine) as conn:
                return queue.claim_jobs(
                    conn, self.worker_id, limit, self.settings.queue.lease_seconds
                )

        return claim

    def _queue_is_finished(self) -> bool:
        with db.read(self.engine) as conn:
            if queue.unfinished_count(conn) == 0:
                return True
            due_in = queue.next_due_in(conn)
        # Something is retrying later or running elsewhere: wait for it, but not too long at once.
        if due_in is not None and due_in > 0:
            self._sleep(min(due_in, self.settings.queue.poll_seconds))
        return False

    # -- a full disk: stop claiming, keep every attempt, resume when there is space ------------

    def _storage_is_full(self, error: StorageFull) -> None:
        """Pause claiming (every worker of this supervisor); the first to notice says so once."""
        self.storage_full = error
        with self.spec.storage_full.get_lock():
            first = self.spec.storage_full.value == 0
            if first:
                self.spec.storage_full.value = time.time()
        if first:
            log.error(
                "[%s] %s: workers stop claiming until space is freed; jobs keep their attempts",
                self.name,
                error,
            )

    def _wait_for_space(self) -> None:
        while not self.should_stop() and not self._has_space():
            self._sleep(_SPACE_CHECK_SECONDS)
        if self.should_stop():
            return
        self.storage_full = None
        with self.spec.storage_full.get_lock():
            paused_at = self.spec.storage_full.value
            self.spec.storage_full.value = 0.0
        if paused_at:
            log.warning(
                "[%s] storage has space again after %.0f s; claiming resumes",
                self.name,
                time.time() - paused_at,
            )

    def _has_space(self) -> bool:
        """Free space where thumbnails, previews (and a SQLite database) are written."""
        if not _can_reserve(self.settings.storage_root, _SPACE_MARGIN_BYTES):
            return False
        places = []
        if self.engine.dialect.name == "sqlite" and self.engine.url.database:
            places.append(Path(self.engine.url.database).parent)
        for place in places:
            while not place.exists() and place != place.parent:
                place = place.parent
            try:
                info = os.statvfs(place)
            except OSError:
                continue
            if info.f_bavail * info.f_frsize < _SPACE_MARGIN_BYTES:
                return False
        if self.engine.dialect.name != "sqlite":
            # PostgreSQL's disk is not ours to measure: a heartbeat write tells.
            try:
                with db.write(self.engine) as conn:
                    queue.extend_leases(conn, self.worker_id, self.settings.queue.lease_seconds)
            except StorageFull:
                return False
            except TransientError:
                return True  # not a full disk; the claim will wait for the database
        return True

    # -- plumbing ---------------------------------------------------------------------------

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
            except StorageFull:
                continue  # the database's disk is full: the main loop pauses and says so
            except TransientError as error:
                self.outage.down(error)  # logged once per outage, with the main loop's
                continue
            except Exception as error:  # noqa: BLE001 - the heartbeat must outlive hiccups
                log.warning("[%s] heartbeat failed: %s", self.name, error)
                continue
            self.outage.up()

    def _release(self, job_ids: list[str]) -> int:
        """Give jobs back unstarted, their attempt not spent (shutdown, full disk, outage)."""

        def release() -> int:
            with db.write(self.engine) as conn:
                return queue.release_jobs(conn, self.worker_id, job_ids)

        try:
            return self._db(release)
        except StorageFull:
            self.unreleased.extend(job_ids)  # given back once there is space again
            return 0
        except TransientError as error:
            # Stopping during an outage: the jobs come back when their lease expires (or when
            # a supervisor finds this worker gone).
            log.warning("[%s] could not give back %d jobs: %s", self.name, len(job_ids), error)
            return 0

    def _run_batch(self, claimed: list[queue.ClaimedJob]) -> None:
        noops: list[str] = []
        for position, job in enumerate(claimed):
            if self.should_stop() or self.storage_full is not None:
                unstarted = [j.id for j in claimed[position:]]
                released = self._release(unstarted)
                if self.storage_full is None:
                    log.info("[%s] Released %d unstarted jobs on shutdown", self.name, released)
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

            def complete() -> int:
                with db.write(self.engine) as conn:
                    return queue.complete_jobs(conn, self.worker_id, noops)

            self._count_done(self._db(complete))

    def _get_photo(self, photo_id: int | None) -> catalog.PhotoRecord | None:
        with db.read(self.engine) as conn:
            return catalog.get_photo(conn, photo_id) if photo_id else None

    def _current_source(self, photo: catalog.PhotoRecord) -> tuple[catalog.PhotoRecord, bytes]:
        """The photo and the bytes to process: what its file holds now, not what ingest hashed.

        The file is read once (never blocking on a FIFO, never through a final symlink) and its
        size and mtime compared with those ingest registered; only when they differ is it hashed
        again, and a new content recorded (catalog.record_changed_content says how).
        """
        for _ in range(3):  # a photo moves to another of its files at most a few times
            name = catalog.display_path(photo.source_path)
            source = read_source(
                photo.source_path,
                max_bytes=self.settings.ingest.max_bytes,
                display_name=name,
                follow_symlinks=False,
            )

            def known(path: bytes = photo.source_path) -> tuple[int, int, int] | None:
                with db.read(self.engine) as conn:
                    return catalog.source_file_state(conn, path)

            # A re-ingest may have registered the new content already (the file's row then
            # names another photo): that is a change too.
            seen = self._db(known)
            if seen is None or seen == (source.size_bytes, source.mtime_ns, photo.id):
                return photo, source.data
            digest = hashlib.sha256(source.data).hexdigest()

            def record(
                current: catalog.PhotoRecord = photo,
                digest: str = digest,
                size: int = source.size_bytes,
                mtime_ns: int = source.mtime_ns,
            ) -> catalog.ContentChange:
                with db.write(self.engine) as conn:
                    change = catalog.record_changed_content(conn, current, size, mtime_ns, digest)
                    if change.content_changed:
                        matching.forget_photo_faces(conn, current.id)
                    return change

            change = self._db(record)
            if change.photo is None:
                raise PermanentError(
                    f"{name}: content changed after ingest and is now the same as photo "
                    f"{change.duplicate_of}; the content ingested as photo {photo.id} is no "
                    "longer on disk"
                )
            if change.content_changed:
                log.info(
                    "[%s] %s changed after ingest: photo %d now has content %s",
                    self.name,
                    name,
                    photo.id,
                    digest[:12],
                )
            if change.photo.source_path == photo.source_path:
                return change.photo, source.data
            log.info(
                "[%s] %s now holds photo %d's content; photo %d continues from %s",
                self.name,
                name,
                change.duplicate_of,
                photo.id,
                change.photo.filename,
            )
            photo = change.photo
        raise TransientError(f"{catalog.display_path(photo.source_path)}: files keep changing")

    def _record_result(
        self, job: queue.ClaimedJob, photo: catalog.PhotoRecord, outcome: Any
    ) -> None:
        with db.write(self.engine) as conn:
            now = time.time()
            catalog.record_processed(conn, outcome.processed, now)
            matching.mark_findable(conn, photo.id, now)
            if queue.complete_jobs(conn, self.worker_id, [job.id], now) == 0:
                raise queue.LeaseLost(f"job {job.id} was reclaimed by another worker")

    def _run_photo_job(self, job: queue.ClaimedJob) -> None:
        try:
            photo = self._db(lambda: self._get_photo(job.photo_id))
            if photo is None:
                raise PermanentError(f"photo {job.photo_id} no longer exists")
            log.info("[%s] Processing job %s: %s", self.name, job.id, photo.filename)
            photo, data = self._current_source(photo)
            outcome = process_photo(self.settings, photo, self.faces, data)
            # The result is computed: wait for the database rather than throw it away.
            self._db(lambda: self._record_result(job, photo, outcome))
            if outcome.faces.user_ids:
                self._drop_cached_lists(outcome.faces.user_ids)
        except queue.LeaseLost as error:
            log.warning("[%s] %s; its result was discarded", self.name, error)
            return
        except StorageFull as error:
            # Not the photo's fault: give the job back with its attempt, and pause claiming.
            self._storage_is_full(error)
            self._release([job.id])
            return
        except PermanentError as error:
            self._fail(job, str(error), permanent=True)
            return
        except Exception as error:  # noqa: BLE001 - anything else may pass: retry with backoff
            log.debug("[%s] job %s raised:\n%s", self.name, job.id, traceback.format_exc())
            if isinstance(error, TransientError) and self._database_down():
                # The face step lost the database: wait for it, then run the job again with
                # its attempt given back (the outage is not the photo's fault).
                self._release([job.id])
                return
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

    def _database_down(self) -> bool:
        try:
            db.check_connection(self.engine)
        except TransientError as error:
            self.outage.down(error)
            return True
        return False

    def _drop_cached_lists(self, user_ids: tuple[int, ...]) -> None:
        """The users found in this photo see it on their next request, not after the TTL."""
        try:
            if self._cache is None:
                self._cache = ResponseCache(self.settings, db.database_id(self.engine))
            self._cache.drop_users(user_ids)
        except Exception as error:  # noqa: BLE001 - a stale cache must not fail a done job
            log.warning("[%s] could not drop cached photo lists: %s", self.name, error)

    def _fail(self, job: queue.ClaimedJob, error: str, *, permanent: bool) -> None:
        def record() -> queue.JobState:
            with db.write(self.engine) as conn:
                return queue.fail_job(
                    conn, self.worker_id, job, error, permanent=permanent, policy=self.policy
                )

        try:
            state = self._db(record)
        except queue.LeaseLost as lost:
            log.warning("[%s] %s", self.name, lost)
            return
        except StorageFull as full:
            self._storage_is_full(full)
            self.unreleased.append(job.id)  # run again later, this attempt not counted
            return
        except TransientError as unrecorded:
            log.warning("[%s] could not record job %s's failure: %s", self.name, job.id, unrecorded)
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
