"""The supervisor of `photoctl work`: keeps N worker processes alive and stops them cleanly.

Its steps, each a method of Supervisor: at start-up it requeues the jobs of this host's registered
workers whose processes are gone (a kill -9 of a previous supervisor) instead of waiting out their
leases; it spawns children (forked from a server that has imported the worker and its face engine,
worker_processes.py: no database connection crosses the fork); it reaps the ones that exited,
buries the ones that died (their jobs are requeued at once instead of waiting for their leases) and
respawns them when due (at once, or after a back-off when a child died right after starting); on
SIGINT/SIGTERM it shuts down: it asks children to stop (they finish the job in hand, give back the
jobs they claimed but had not started, and exit); whoever is still busy after
``queue.shutdown_grace`` is killed and its jobs requeued. Signal handlers only set a flag, read by
the loop between steps.

While it runs, it reports progress from the job table: to a callback about every half second
(the CLI draws a bar on a terminal), or otherwise as a log line every ``log.progress_seconds``,
so a run from cron or systemd shows it is moving. The loop each child runs is worker.py's.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from photoctl import db, faces, processes, queue, workers_registry
from photoctl.config import Settings
from photoctl.errors import TransientError
from photoctl.faces import limiter
from photoctl.wording import plural
from photoctl.worker_processes import STOP_SIGNALS, child_main, worker_context
from photoctl.worker_spec import ChildSpec, WorkReport, new_worker_id, supervisor_pid_of

log = logging.getLogger(__name__)

_REAP_INTERVAL_SECONDS = 0.2
_CRASH_BACKOFF_SECONDS = 5.0
_KILLED_EXIT_SECONDS = 5.0  # a process killed with SIGKILL is gone well within this
_SERVER_LOST = 255  # multiprocessing's exit code for a child whose forkserver died


@dataclass(frozen=True)
class WorkOptions:
    """How many workers, and when to stop. The face engine is ``settings.faces.engine``."""

    workers: int = 3
    until_empty: bool = False
    max_jobs: int | None = None
    max_seconds: float | None = None


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


class ProgressReporter:
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
        except Exception as error:  # an outage is the workers' to report
            log.debug("progress: could not count jobs: %s", error)
            return
        progress = WorkProgress(
            done=done, failed=failed, remaining=remaining, seconds=now - self.started
        )
        if self.callback:
            self.callback(progress)
        else:
            log.info("[Progress] %s", progress.describe())


SignalHandler = Callable[[int, Any], None]


@contextmanager
def stop_signals_handled(handler: SignalHandler) -> Iterator[None]:
    """Let ``handler`` receive SIGINT and SIGTERM inside the block; restore the previous after."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Supervisor:
    """Keeps ``options.workers`` worker processes alive until the work is done or a signal.

    The children share five values with it: ``stop`` (an Event: finish and exit), the jobs
    done and failed by all of them, the jobs left to claim under --max-jobs (-1: no limit),
    and the time claiming paused for a full disk (0: not paused).
    """

    def __init__(
        self,
        settings: Settings,
        options: WorkOptions,
        verbosity: int = 0,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.settings, self.options, self.verbosity = settings, options, verbosity
        self.progress = progress
        self.engine = db.make_engine(settings, settings.database_url)
        self.context = worker_context(settings)
        self.stop = self.context.Event()
        self.done, self.failed = self.context.Value("q", 0), self.context.Value("q", 0)
        budget = options.max_jobs if options.max_jobs is not None else -1
        self.budget = self.context.Value("q", budget)
        self.storage_full = self.context.Value("d", 0.0)
        # Workers get the reading end, only this process holds the writing one: when it dies,
        # however it dies, each worker reads end-of-file and stops. Their parent is the
        # forkserver, which lives on while they do, so a changed parent pid cannot tell them.
        self.alive_reader, self.alive_writer = self.context.Pipe(duplex=False)
        self.children: dict[int, tuple[Any, str]] = {}  # index: (process, worker id)
        self.spawned_at: dict[int, float] = {}
        self.respawn_at: dict[int, float] = {}  # index of a dead child: when to replace it
        self.restarted = 0
        self.stop_requested = False

    def run(self) -> WorkReport:
        """Start up, supervise until done, a limit or a signal, and shut down."""
        try:
            if self.start_up():
                self.supervise_children()
        finally:
            self.engine.dispose()
        return WorkReport(done=self.done.value, failed=self.failed.value, restarted=self.restarted)

    def supervise_children(self) -> None:
        """Spawn the children, supervise them, shut them down."""
        reporter = ProgressReporter(self.engine, self.progress, self.settings.log.progress_seconds)
        with stop_signals_handled(self.request_stop):
            for index in range(self.options.workers):
                self.spawn(index)
            self.supervise(reporter)
            self.shutdown()
            reporter.tick(last=True)

    def request_stop(self, signum: int, _frame: object) -> None:
        """SIGINT/SIGTERM: only a flag (the loop acts on it: nothing else is safe in a handler)."""
        self.stop_requested = True

    def start_up(self) -> bool:
        """Before any child: the schema, the jobs of workers that are gone, the face engine.

        False for --until-empty when nothing is queued, retrying or running: the children would
        only start and exit, so none is started (cron on an idle queue costs a query, not a
        forkserver, a model load or a call to the face service).
        """
        db.ensure_schema(self.engine)
        # First, as the engine's check calls the service under the limiter: a worker killed
        # with every call slot in hand would otherwise make it wait for their leases.
        requeue_jobs_of_gone_workers(self.engine, orphan_grace=self.settings.queue.shutdown_grace)
        if self.options.until_empty:
            with db.read(self.engine) as conn:
                unfinished = queue.unfinished_count(conn)
            if not unfinished:
                log.info(
                    "[Startup] Nothing queued, retrying or running: no worker started",
                    extra={"event": "nothing_to_do"},
                )
                return False
        face_engine = faces.make_engine(self.settings.faces.engine, self.settings, self.engine)
        if face_engine is not None:
            # Fail fast, with the reason, rather than in every child.
            log.info("[Startup] Face engine %s: %s", face_engine.name, face_engine.check())
        with db.read(self.engine) as conn:
            pending = queue.waiting_count(conn)
        log.info("[Startup] Photo queue initialized with %d pending jobs", pending)
        return True

    def supervise(self, reporter: ProgressReporter) -> None:
        """Reap, bury and respawn until no child is left, a signal, or --max-seconds."""
        max_seconds = self.options.max_seconds
        deadline = time.monotonic() + max_seconds if max_seconds else None
        while self.children or self.respawn_at:
            if self.stop_requested or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(_REAP_INTERVAL_SECONDS)
            reporter.tick()
            self.respawn_due()
            self.reap()

    def spawn(self, index: int) -> None:
        """Start child ``index`` (again) under a new worker id."""
        self.spawned_at[index] = time.monotonic()
        worker_id = new_worker_id(index)
        spec = ChildSpec(
            self.settings,
            self.settings.database_url,
            index,
            worker_id,
            self.options.until_empty,
            self.settings.faces.engine,
            self.verbosity,
            self.stop,
            self.done,
            self.failed,
            self.budget,
            self.storage_full,
            os.getpid(),
            dict(os.environ),
            self.alive_reader,
        )
        process = self.context.Process(target=child_main, args=(spec,), name=f"PhotoWorker-{index}")
        # The child starts with these signals blocked and unblocks them once its handlers are
        # set: a SIGTERM during its start-up then stops it cleanly instead of killing it. The
        # forkserver, started by the first start, inherits the mask and keeps it: a signal to
        # the process group (Ctrl-C, a service manager's stop) cannot kill it under the live
        # workers whose exit codes it reports.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        self.children[index] = (process, worker_id)

    def respawn_due(self) -> None:
        """Replace the dead children whose back-off is over."""
        for index, when in list(self.respawn_at.items()):
            if time.monotonic() >= when:
                del self.respawn_at[index]
                self.spawn(index)

    def reap(self) -> None:
        """Collect the children that exited; bury the dead ones and plan their replacement."""
        for index, (process, worker_id) in list(self.children.items()):
            if process.is_alive():
                continue
            process.join()
            del self.children[index]
            if process.exitcode == 0:
                continue  # finished: queue empty (--until-empty) or budget spent
            if process.exitcode == _SERVER_LOST and processes.is_running(process.pid, time.time()):
                self.outlive(index, process.pid)
            self.restarted += 1
            self.bury(index, worker_id, process.exitcode)
            # A child that dies right after starting would die again at once: back off.
            lived = time.monotonic() - self.spawned_at[index]
            backoff = _CRASH_BACKOFF_SECONDS if lived < 5 else 0
            self.respawn_at[index] = time.monotonic() + backoff

    def outlive(self, index: int, pid: int) -> None:
        """Wait for a worker whose forkserver died (multiprocessing then reports exit code 255
        for a worker that still runs): it stops by itself, its parent gone; after the grace it
        is killed. Only then are its jobs requeued, so no job runs twice."""
        log.warning("[PhotoWorker-%d] lost its forkserver; waiting for it to stop", index)
        deadline = time.monotonic() + self.settings.queue.shutdown_grace
        while processes.is_running(pid, time.time()) and time.monotonic() < deadline:
            time.sleep(_REAP_INTERVAL_SECONDS)
        if processes.is_running(pid, time.time()):
            os.kill(pid, signal.SIGKILL)

    def bury(self, index: int, worker_id: str, exitcode: int | None) -> None:
        """Requeue at once what a dead child held, and record its stop."""
        name = f"PhotoWorker-{index}"
        how = (
            f"killed by signal {-exitcode}"
            if exitcode and exitcode < 0
            else f"exit code {exitcode}"
        )
        reason = f"worker {worker_id} died ({how}) while processing"
        try:
            with db.write(self.engine) as conn:
                released = queue.release_worker_jobs(conn, worker_id, reason)
                workers_registry.stop_worker(conn, worker_id, 0, 0)
            limiter.release_holder(self.engine, worker_id)
        except TransientError as error:
            log.warning(
                "[%s] died (%s); could not requeue its jobs now (%s): they return when their "
                "lease expires",
                name,
                how,
                error,
            )
            return
        log.warning(
            "[%s] died (%s); %d of its jobs requeued",
            name,
            how,
            released,
            extra={"event": "worker_died", "worker": name, "how": how, "requeued": released},
        )

    def shutdown(self) -> None:
        """Ask every child to stop; kill and bury whoever is still busy after the grace."""
        if not self.children:
            return
        grace_seconds = self.settings.queue.shutdown_grace
        log.info(
            "[Shutdown] Stopping %s (grace %.0f s)",
            plural(len(self.children), "worker"),
            grace_seconds,
            extra={"event": "shutdown", "workers": len(self.children)},
        )
        self.stop.set()
        for process, _ in self.children.values():
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for index, (process, worker_id) in self.children.items():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
                self.bury(index, worker_id, process.exitcode)
            elif process.exitcode != 0:
                self.bury(index, worker_id, process.exitcode)


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
    return Supervisor(settings, options, verbosity, progress).run()


def requeue_jobs_of_gone_workers(
    engine: Engine, hostname: str | None = None, orphan_grace: float = 0.0
) -> int:
    """Requeue at once the jobs of this host's registered workers whose processes are gone.

    A supervisor killed with -9 takes its children along without recording anything, and their
    jobs would wait out ``queue.lease_seconds``. Its successor on the same host can tell: a
    worker registered from this host that never recorded a stop, whose pid is no longer running
    or now belongs to a process started after the worker registered (the pid was reused), is
    gone. Workers of other hosts are left to their leases: this host cannot see their processes.

    A worker whose supervisor is gone but which still runs is finishing that supervisor's
    shutdown: killed along with it and still exiting, or stopping by itself once its job in hand
    is done. It is given ``orphan_grace`` seconds, as a shutdown gives, then killed; counted as
    running instead, it would keep its call slots for their whole lease (two minutes) while
    this supervisor waited for one.

    Returns how many jobs went back to the queue; a database that does not answer is not an
    error here (the leases still bring the jobs back).
    """
    hostname = hostname or socket.gethostname()
    try:
        with db.read(engine) as conn:
            registered = workers_registry.unstopped_workers_on_host(conn, hostname)
        stop_orphans(registered, orphan_grace)
        gone = [w for w in registered if not processes.is_running(w.pid, w.started_at)]
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
            "[Startup] %s requeued from %s of this host that %s gone",
            plural(requeued, "job"),
            plural(len(gone), "worker"),
            "is" if len(gone) == 1 else "are",
        )
    return requeued


def stop_orphans(registered: list[workers_registry.RegisteredWorker], grace: float) -> None:
    """Wait up to ``grace`` seconds for the running workers whose supervisor is gone to exit;
    kill those still running then (see requeue_jobs_of_gone_workers)."""

    def orphaned(worker: workers_registry.RegisteredWorker) -> bool:
        supervisor = supervisor_pid_of(worker.id)
        return (
            supervisor is not None
            and processes.is_running(worker.pid, worker.started_at)
            and not processes.is_running(supervisor, worker.started_at)
        )

    orphans = [worker for worker in registered if orphaned(worker)]
    if not orphans:
        return
    log.info(
        "[Startup] Waiting up to %.0f s for %s whose supervisor is gone to stop",
        grace,
        plural(len(orphans), "worker"),
    )
    orphans = _running_until(orphans, time.monotonic() + grace)
    killed = []
    for worker in orphans:
        if not processes.is_photoctl(worker.pid):
            # Another pid namespace (a container with this host name) or a reused pid: not
            # ours to kill. Its jobs and slots wait for their leases.
            continue
        log.warning("[Startup] Killing worker %s: still running after the grace", worker.id)
        try:
            os.kill(worker.pid, signal.SIGKILL)
            killed.append(worker)
        except ProcessLookupError:
            pass
        except PermissionError:
            log.warning("[Startup] Worker %s is another user's: left to its leases", worker.id)
    _running_until(killed, time.monotonic() + _KILLED_EXIT_SECONDS)


def _running_until(
    workers: list[workers_registry.RegisteredWorker], deadline: float
) -> list[workers_registry.RegisteredWorker]:
    """Wait until none of ``workers`` runs or the deadline; those still running."""
    while True:
        workers = [w for w in workers if processes.is_running(w.pid, w.started_at)]
        if not workers or time.monotonic() >= deadline:
            return workers
        time.sleep(_REAP_INTERVAL_SECONDS / 2)
