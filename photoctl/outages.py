"""What a worker waits out instead of failing jobs: an unreachable database, a full disk (or an
object store that does not answer, which is waited out the same way).

Neither is the photo's fault, so neither may spend a job's attempts or kill a worker. While the
database does not answer, a worker retries with backoff and says so once when the outage starts
and once when it ends (its main loop and its heartbeat thread report to the same
DatabaseOutage). When the disk is full, every worker of a supervisor stops claiming (the pause
is shared through a value in shared memory), gives back what it holds with the attempt refunded,
and resumes once space can really be allocated again (FullDisk). The worker loop (worker.py)
decides what to do with a job; this module only knows how to wait.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine

from photoctl import db, queue
from photoctl.config import Settings
from photoctl.errors import StorageFull, StoreUnavailable, TransientError

log = logging.getLogger(__name__)

# Waiting for the database: first retry after this, doubling up to the longest wait.
_DB_RETRY_FIRST_SECONDS = 0.2
_DB_RETRY_MAX_SECONDS = 5.0
# Claiming resumes after a full disk once this much is free where photoctl writes.
_SPACE_MARGIN_BYTES = 2 << 20
_SPACE_CHECK_SECONDS = 1.0

T = TypeVar("T")


class DatabaseOutage:
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

    def wait_out(
        self,
        action: Callable[[], T],
        should_stop: Callable[[], bool],
        sleep: Callable[[float], None],
    ) -> T:
        """Run a database action, waiting out an outage (backoff) instead of failing on it.

        Returns once the action succeeds. Raises StorageFull at once (the caller pauses), and
        the last TransientError only when ``should_stop()`` turns true meanwhile.
        """
        delay = _DB_RETRY_FIRST_SECONDS
        while True:
            try:
                result = action()
            except StorageFull:
                raise
            except TransientError as error:
                self.down(error)
                if should_stop():
                    raise
                sleep(delay * random.uniform(0.75, 1.0))
                delay = min(_DB_RETRY_MAX_SECONDS, delay * 2)
                continue
            self.up()
            return result


class FullDisk:
    """A full disk as one worker sees it: stop claiming, keep every attempt, resume with space.

    ``shared`` (a multiprocessing.Value shared by the supervisor's workers) holds the time
    claiming paused, 0 when it is not: the first worker to find no space pauses them all and
    says so once; the first to find space again resumes them all.
    """

    def __init__(
        self, name: str, settings: Settings, engine: Engine, worker_id: str, shared: Any
    ) -> None:
        self.name = name
        self.settings, self.engine, self.worker_id, self.shared = (
            settings,
            engine,
            worker_id,
            shared,
        )
        self.error: StorageFull | None = None  # set by a job of this worker that found no space

    @property
    def paused(self) -> bool:
        return self.error is not None or bool(self.shared.value)

    def noticed(self, error: StorageFull) -> None:
        """Pause claiming (every worker of this supervisor); the first to notice says so once."""
        self.error = error
        with self.shared.get_lock():
            first = self.shared.value == 0
            if first:
                self.shared.value = time.time()
        if first:
            until = (
                "the object store answers"
                if isinstance(error, StoreUnavailable)
                else "space is freed"
            )
            log.error(
                "[%s] %s: workers stop claiming until %s; jobs keep their attempts",
                self.name,
                error,
                until,
            )

    def wait_for_space(
        self, should_stop: Callable[[], bool], sleep: Callable[[float], None]
    ) -> None:
        while not should_stop() and not self.has_space():
            sleep(_SPACE_CHECK_SECONDS)
        if should_stop():
            return
        back = "the object store answers" if isinstance(self.error, StoreUnavailable) else None
        self.error = None
        with self.shared.get_lock():
            paused_at = self.shared.value
            self.shared.value = 0.0
        if paused_at:
            log.warning(
                "[%s] %s again after %.0f s; claiming resumes",
                self.name,
                back or "storage has space",
                time.time() - paused_at,
            )

    def has_space(self) -> bool:
        """Free space where thumbnails, previews (and a SQLite database) are written; on S3
        storage, an object store that answers."""
        if self.settings.storage.is_s3:
            from photoctl.object_store import store_for  # boto3 only where S3 is used

            if not store_for(self.settings.storage).reachable():
                return False
        elif not _can_reserve(self.settings.storage_root, _SPACE_MARGIN_BYTES):
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
