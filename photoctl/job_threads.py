"""Several jobs in flight in one worker process, for face engines that mostly wait (Rekognition).

A Rekognition job spends most of its time waiting for AWS (200-500 ms a call), so one job at a
time per process would need 15-25 processes, each with its own memory and database connections,
to keep a 50 TPS quota busy. Such a worker runs up to ``size`` jobs at once on threads instead
(the engine says how many: its share of the limiter's concurrency slots, which bound the calls
really in flight across every process). CPU-bound engines (local, none) keep one job per
process, run on the worker's own thread as before.

Nothing here touches the queue: the worker claims at most ``free()`` jobs and submits them, so
every claimed job starts at once; the heartbeat extends the lease of every job the worker holds,
however many, and a worker killed with jobs in flight loses none (their leases run out, or its
supervisor requeues them at once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

J = TypeVar("J")


class JobThreads(Generic[J]):
    """Up to ``size`` jobs running at once, each on a thread of its own."""

    def __init__(self, size: int, run: Callable[[J], None], name: str) -> None:
        self.size = size
        self._run = run
        self._name = name
        self._running = 0
        self._changed = threading.Condition()
        self._pool: ThreadPoolExecutor | None = None

    def free(self) -> int:
        with self._changed:
            return self.size - self._running

    def running(self) -> int:
        with self._changed:
            return self._running

    def submit(self, jobs: Sequence[J]) -> None:
        """Start these jobs now; the caller claimed no more than ``free()``."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.size, thread_name_prefix=self._name)
        with self._changed:
            if self._running + len(jobs) > self.size:
                raise RuntimeError(f"{len(jobs)} jobs submitted, {self.size - self._running} free")
            self._running += len(jobs)
        for job in jobs:
            self._pool.submit(self._run_one, job)

    def _run_one(self, job: J) -> None:
        try:
            self._run(job)
        except BaseException:
            # The job runner records every failure itself; this is a bug, not a job's fault.
            log.exception("[%s] a job thread raised", self._name)
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    def wait_for_free(self, timeout: float) -> None:
        """Return once a thread is free, or after ``timeout`` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: self._running < self.size, timeout)

    def wait_until_idle(self, timeout: float | None = None) -> bool:
        """Wait for every job in flight to finish; False if some still run after ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: self._running == 0, timeout)

    def shutdown(self) -> None:
        self.wait_until_idle()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
