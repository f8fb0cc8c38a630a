"""The loop each worker process runs: claim a few jobs, run them, record each result.

A worker (a child of the supervisor's forkserver, supervisor.py, or the whole process in
drain_in_process) claims small batches, runs each job, and records the result and the job's
completion in one transaction. A worker whose face engine mostly waits (Rekognition) runs several
jobs at once on threads (job_threads.py says why); CPU-bound engines run one at a time. A heartbeat
thread extends the leases of everything it holds, so a job is reclaimed by another worker (on any
machine) only when its worker really stopped. On SIGINT/SIGTERM (or when the supervisor sets the
shared stop event, or dies) it finishes the job in hand, gives back the jobs it claimed but had not
started, records its stop and exits.

What is not the photo's fault never spends its attempts or kills a worker: a worker waits out
an unreachable database and a full disk (outages.py says how), giving back what it holds with
the attempt refunded. A file changed since ingest is read and hashed again before processing.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from photoctl import catalog, db, face_store, queue, workers_registry
from photoctl.bib_step import BibStep
from photoctl.budget import DailyBudget
from photoctl.cache import ResponseCache
from photoctl.changed_files import current_source
from photoctl.config import Settings
from photoctl.errors import PermanentError, StorageFull, TransientError
from photoctl.face_step import make_face_step
from photoctl.job_threads import JobThreads
from photoctl.logs import job_fields
from photoctl.models import JobKind
from photoctl.outages import DatabaseOutage, FullDisk
from photoctl.pipeline import PhotoOutcome, process_photo, read_bibs
from photoctl.wording import plural
from photoctl.worker_spec import ChildSpec, WorkReport, new_worker_id

log = logging.getLogger(__name__)

_FAST_JOB_SECONDS = 0.02

T = TypeVar("T")


def drain_in_process(
    settings: Settings, engine_name: str, worker_name: str = "inline"
) -> WorkReport:
    """Process every job in this process until the queue is finished (tests, benchmarks)."""
    context = multiprocessing.get_context("spawn")
    spec = ChildSpec(
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
        os.getpid(),
        {},
        None,
    )
    WorkerLoop(spec, worker_name).run()
    return WorkReport(done=spec.done.value, failed=spec.failed.value, restarted=0)


class WorkerLoop:
    """One worker process's loop (worker_processes.child_main starts it in a worker process)."""

    def __init__(self, spec: ChildSpec, name: str | None = None) -> None:
        self.spec = spec
        self.settings = spec.settings
        self.name = name or f"PhotoWorker-{spec.index}"  # in every log line of this worker
        self.worker_id = spec.worker_id
        self.stopping = False
        self.parent_pid = os.getppid()
        self.engine = db.make_engine(self.settings, spec.database_url)
        self.faces = make_face_step(spec.engine_name, self.settings, self.engine, self.worker_id)
        # With Rekognition, bibs are read by its DetectText (same client, limiter and budget).
        text_engine = (
            getattr(self.faces, "engine", None) if spec.engine_name == "rekognition" else None
        )
        self.bibs = BibStep(self.settings, self.engine, text_engine)
        self.policy = queue.RetryPolicy(
            max_attempts=self.settings.queue.max_attempts,
            base_seconds=self.settings.queue.retry_base_seconds,
            max_seconds=self.settings.queue.retry_max_seconds,
        )
        self.jobs_done = 0
        self.jobs_failed = 0
        self._cache: ResponseCache | None = None
        self.outage = DatabaseOutage(self.name)
        self.daily_budget = DailyBudget(self.settings, self.engine, spec.engine_name, self.name)
        self.disk = FullDisk(
            self.name, self.settings, self.engine, self.worker_id, spec.storage_full
        )
        # Jobs this worker could not give back (the database's disk was full): still held,
        # their leases kept alive by the heartbeat, so they are given back as soon as it can.
        self.unreleased: list[str] = []
        self._counts_lock = threading.Lock()  # job threads count and park jobs together
        in_flight = self.faces.jobs_in_flight
        self.threads = JobThreads(in_flight, self._start_job, self.name) if in_flight > 1 else None

    def should_stop(self) -> bool:
        if self.stopping or self.spec.stop.is_set() or os.getppid() != self.parent_pid:
            return True  # a changed parent: the forkserver that reports this worker is gone
        alive = self.spec.supervisor_alive  # end-of-file reads as ready: the supervisor is gone
        return alive is not None and alive.poll()

    def _db(self, action: Callable[[], T]) -> T:
        """Run a database action, waiting out an outage (outages.DatabaseOutage.wait_out)."""
        return self.outage.wait_out(action, self.should_stop, self._sleep)

    def run(self) -> None:
        if not self._register_when_possible():
            self.engine.dispose()
            return
        self.faces.warm_up()  # ~0.9 s for dlib: better before the first claim than in it
        self._db(self.bibs.warm_up)  # ~0.1 s for the OCR model, when some event reads bibs
        heartbeat = threading.Thread(target=self._heartbeat_loop, daemon=True)
        heartbeat.start()
        try:
            self._loop()
        except TransientError as error:
            # Only when asked to stop during an outage: what it holds returns with its lease.
            log.warning("[%s] stopping while the database is unreachable: %s", self.name, error)
        finally:
            if self.threads is not None:
                self.threads.shutdown()  # the jobs in flight finish first, heartbeat alive
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
                self.disk.noticed(error)
                self.disk.wait_for_space(self.should_stop, self._sleep)
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
            if self.disk.paused:
                self.disk.wait_for_space(self.should_stop, self._sleep)
                continue
            if self.unreleased:
                with self._counts_lock:
                    held, self.unreleased = self.unreleased, []
                self._release(held)
                continue
            if self.daily_budget.paused(self._sleep, self.should_stop, self.spec.until_empty):
                break  # photos wait pending until the next UTC day or a raised budget
            wanted = batch
            if self.threads is not None:
                wanted = self.threads.free()
                if wanted == 0:
                    self.threads.wait_for_free(self.settings.queue.poll_seconds)
                    continue
            limit = self._reserve(wanted)
            if limit == 0:
                break
            try:
                claimed = self._db(self._claim(limit))
            except StorageFull as error:  # the database's disk is full
                self._unreserve(limit)
                self.disk.noticed(error)
                continue
            except TransientError:
                self._unreserve(limit)
                raise
            self._unreserve(limit - len(claimed))
            if claimed and self.threads is not None:
                idle_seconds = 0.05
                self.threads.submit(claimed)  # each starts at once, on a thread of its own
                continue
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
            except Exception as error:
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
            with self._counts_lock:
                self.unreleased.extend(job_ids)  # given back once there is space again
            return 0
        except TransientError as error:
            # Stopping during an outage: the jobs come back when their lease expires (or when
            # a supervisor finds this worker gone).
            log.warning(
                "[%s] could not give back %s: %s", self.name, plural(len(job_ids), "job"), error
            )
            return 0

    def _run_batch(self, claimed: list[queue.ClaimedJob]) -> None:
        noops: list[str] = []
        for position, job in enumerate(claimed):
            if self.should_stop() or self.disk.error is not None:
                unstarted = [j.id for j in claimed[position:]]
                released = self._release(unstarted)
                if self.disk.error is None:
                    log.info("[%s] Released %d unstarted jobs on shutdown", self.name, released)
                break
            if job.kind == JobKind.NOOP and job.attempts <= self.policy.max_attempts:
                noops.append(job.id)  # completed together below: measures the queue alone
            else:
                self._run_job(job)
        self._complete_noops(noops)

    def _start_job(self, job: queue.ClaimedJob) -> None:
        """One job on a job thread (see job_threads.py)."""
        if self.should_stop() or self.disk.error is not None:
            self._release([job.id])  # claimed as the worker was stopping: never started
            return
        if job.kind == JobKind.NOOP and job.attempts <= self.policy.max_attempts:
            self._complete_noops([job.id])
        else:
            self._run_job(job)

    def _run_job(self, job: queue.ClaimedJob) -> None:
        if job.attempts > self.policy.max_attempts:
            self._fail(
                job,
                f"gave up after {job.attempts - 1} attempts: {job.last_error or 'worker lost'}",
                permanent=True,
            )
        elif job.kind == JobKind.PROCESS_PHOTO:
            self._run_photo_job(job)
        elif job.kind == JobKind.READ_BIBS:
            self._run_photo_job(job, bibs_only=True)
        else:
            self._fail(job, f"unknown job kind {job.kind!r}", permanent=True)

    def _complete_noops(self, noops: list[str]) -> None:
        if not noops:
            return

        def complete() -> int:
            with db.write(self.engine) as conn:
                return queue.complete_jobs(conn, self.worker_id, noops)

        self._count_done(self._db(complete))

    def _get_photo(self, photo_id: int | None) -> catalog.PhotoRecord | None:
        with db.read(self.engine) as conn:
            return catalog.get_photo(conn, photo_id) if photo_id else None

    def _record_result(
        self, job: queue.ClaimedJob, photo: catalog.PhotoRecord, outcome: PhotoOutcome
    ) -> None:
        # The job's final transaction, all or nothing: it shows the photo (processed) and the
        # matches the face step stored (findable), which is what lets that step commit early.
        with db.write(self.engine) as conn:
            now = time.time()
            catalog.record_processed(conn, outcome.processed, now)
            face_store.mark_findable(conn, photo.id, now)
            reason = outcome.faces.reason
            if queue.complete_jobs(conn, self.worker_id, [job.id], now, reason=reason) == 0:
                raise queue.LeaseLost(f"job {job.id} was reclaimed by another worker")

    def _complete(self, job: queue.ClaimedJob) -> None:
        """The final transaction of a job that records nothing else (a bib job: its step
        committed the photo's bibs and checkpoint already)."""
        with db.write(self.engine) as conn:
            if queue.complete_jobs(conn, self.worker_id, [job.id]) == 0:
                raise queue.LeaseLost(f"job {job.id} was reclaimed by another worker")

    def _run_photo_job(self, job: queue.ClaimedJob, *, bibs_only: bool = False) -> None:
        try:
            photo = self._db(lambda: self._get_photo(job.photo_id))
            if photo is None:
                raise PermanentError(f"photo {job.photo_id} no longer exists")
            fields = self._fields("job_started", job, photo.id)
            log.info("[%s] Processing job %s: %s", self.name, job.id, photo.filename, extra=fields)
            photo, data = current_source(self.engine, self.settings, photo, self._db, self.name)
            if bibs_only:
                summary = read_bibs(self.settings, photo, self.bibs, data)
                self._db(lambda: self._complete(job))
                self._count_done(1)
                log.info(
                    "[%s] Job %s completed: photo %d (%s)",
                    self.name,
                    job.id,
                    photo.id,
                    plural(len(summary.bibs), "bib") if summary else "bibs read before",
                    extra=self._fields("job_completed", job, photo.id),
                )
                return
            outcome = process_photo(self.settings, photo, self.faces, data, self.bibs)
            # The result is computed: wait for the database rather than throw it away.
            self._db(lambda: self._record_result(job, photo, outcome))
            if outcome.faces.user_ids:
                self._drop_cached_lists(outcome.faces.user_ids)
        except queue.LeaseLost as error:
            log.warning("[%s] %s; its result was discarded", self.name, error)
            return
        except StorageFull as error:
            # Not the photo's fault: give the job back with its attempt, and pause claiming.
            self.disk.noticed(error)
            self._release([job.id])
            return
        except PermanentError as error:
            self._fail(job, str(error), permanent=True)
            return
        except Exception as error:
            transient = isinstance(error, TransientError)
            if transient and self._database_down():
                # A step (faces, bibs) lost the database: wait for it, then run the job again
                # with its attempt given back (the outage is not the photo's fault). One line:
                # the outage is logged once where it is waited out, not as a traceback a job.
                log.debug("[%s] job %s given back: %s", self.name, job.id, error)
                self._release([job.id])
                return
            log.debug("[%s] job %s raised:\n%s", self.name, job.id, traceback.format_exc())
            message = str(error) if transient else f"{type(error).__name__}: {error}"
            self._fail(job, message, permanent=False)
            return
        self._count_done(1)
        faces = outcome.faces
        log.log(
            logging.WARNING if faces.reason else logging.INFO,
            "[%s] Job %s completed: photo %d (%d %s, %d %s)%s",
            self.name,
            job.id,
            photo.id,
            faces.faces,
            "face" if faces.faces == 1 else "faces",
            faces.matches,
            "match" if faces.matches == 1 else "matches",
            f"; {faces.reason}" if faces.reason else "",
            extra=self._fields("job_completed", job, photo.id),
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
        except Exception as error:
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
            self.disk.noticed(full)
            with self._counts_lock:
                self.unreleased.append(job.id)  # run again later, this attempt not counted
            return
        except TransientError as unrecorded:
            log.warning("[%s] could not record job %s's failure: %s", self.name, job.id, unrecorded)
            return
        if state == queue.JobState.FAILED:
            with self._counts_lock:
                self.jobs_failed += 1
            with self.spec.failed.get_lock():
                self.spec.failed.value += 1
            fields = self._fields("job_failed", job, job.photo_id)
            log.error("[%s] Job %s failed: %s", self.name, job.id, error, extra=fields)
        else:
            log.warning(
                "[%s] Job %s will be retried (attempt %d of %d): %s",
                self.name,
                job.id,
                job.attempts,
                self.policy.max_attempts,
                error,
                extra=self._fields("job_retrying", job, job.photo_id),
            )

    def _fields(self, event: str, job: queue.ClaimedJob, photo_id: int | None) -> dict[str, Any]:
        return job_fields(event, self.name, self.worker_id, job.id, photo_id)

    def _count_done(self, count: int) -> None:
        with self._counts_lock:
            self.jobs_done += count
        with self.spec.done.get_lock():
            self.spec.done.value += count
