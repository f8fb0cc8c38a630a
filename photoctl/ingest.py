"""Ingest: walk folders, hash new files, register photos and enqueue one job per new photo.

Paths are handled as bytes end to end, so names that are not valid UTF-8 are ingested like any
other. A re-run skips files whose path, size and mtime are unchanged without reading them;
files modified within ``ingest.settle_seconds`` are still being written: a one-shot ingest waits
up to ``settle_wait`` seconds for them to settle (a photographer's copy in progress is then
ingested by the run that saw it), ``--watch`` leaves them for its next scan. Files and folders
whose name matches an ignore glob (NAS housekeeping such as ``@eaDir``) are never looked at
(the walk and its ignore rules are walk.py's). Hashing runs in a few threads: hashlib releases
the GIL on large buffers, so reading and hashing overlap on both cores. Progress goes through a
callback; the CLI draws it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from photoctl import catalog, db, queue
from photoctl.catalog import NewFile, display_path
from photoctl.config import Settings
from photoctl.errors import ConfigError
from photoctl.imaging import looks_like_image, open_regular
from photoctl.ingest_objects import copy_original, is_bucket_root, original_copier, scan_buckets
from photoctl.ingest_report import IngestReport as IngestReport
from photoctl.models import DEFAULT_EVENT_ID, JobKind
from photoctl.walk import (
    Candidate,
    ignore_globs,
    ignore_matcher,
    ingest_roots,
    read_error_reason,
    walk_images,
)
from photoctl.wording import plural

if TYPE_CHECKING:
    from photoctl.object_store import S3Store

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]  # (files examined, files to examine)
StopCheck = Callable[[], bool]  # True once the caller wants the settle wait cut short

_REGISTER_BATCH = 1000
_HASH_THREADS = 4
# Files go to the hashing threads in groups of about this many bytes (at most _HASH_TASK_FILES
# files): one task per small file cost more in thread hand-offs than hashing it (5,000 files of
# 25 KiB: 0.26 s in single-file tasks, 0.19 s in groups), while a large file is still a task alone.
_HASH_TASK_BYTES = 1 << 20
_HASH_TASK_FILES = 64
# Longest single sleep while waiting for files to settle: short enough to notice a stop request.
_SETTLE_POLL_SECONDS = 0.25


def check_roots(roots: Sequence[str | bytes]) -> None:
    """ConfigError naming every root that does not exist: a typo, not a file that failed."""
    missing = []
    for root in roots:
        if is_bucket_root(root):
            continue
        try:
            os.stat(root)
        except (FileNotFoundError, NotADirectoryError):
            missing.append(display_path(os.fsencode(root)))
        except OSError:
            pass  # exists but unreadable: the walk reports it with its reason
    if missing:
        raise ConfigError("; ".join(f"no such file or directory: {path}" for path in missing))


MAX_ALBUM_CHARS = 200


def check_album(album: str | None) -> str | None:
    """The album name, or ConfigError: at most 200 characters and no control characters (a NUL
    cannot even be stored in PostgreSQL text). Checked before anything is stored."""
    if album is None:
        return None
    if len(album) > MAX_ALBUM_CHARS:
        raise ConfigError(f"album name longer than {MAX_ALBUM_CHARS} characters")
    if any(unicodedata.category(char) == "Cc" for char in album):
        raise ConfigError("album name contains control characters")
    return album


_Hashed = tuple[Candidate, str | None, str | None, bytes | None]


def _hash_file(candidate: Candidate, copier: S3Store | None = None) -> _Hashed:
    """(candidate as read, sha256 hex or None, error or None, where its copy is stored or None);
    None, None = changed meanwhile. With ``copier`` (S3 storage) the original is copied there."""
    stored_at = None
    try:
        # Not a plain open: the file may have been replaced by a FIFO since the walk.
        with os.fdopen(open_regular(candidate.path, follow_symlinks=False), "rb") as handle:
            head = handle.read(16)
            if not looks_like_image(head):
                reason = "not an image (content is not JPEG, PNG, WebP, TIFF, HEIC or GIF)"
                return candidate, None, reason, None
            handle.seek(0)
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            after = os.fstat(handle.fileno())
            if after.st_size != candidate.size_bytes or after.st_mtime_ns != candidate.mtime_ns:
                return candidate, None, None, None
            if copier is not None:  # (the transfer closes the file once it is sent)
                stored_at = copy_original(copier, handle, candidate.path, digest)
    except OSError as error:
        return candidate, None, read_error_reason(error), None
    return candidate, digest, None, stored_at


def _hash_tasks(candidates: Sequence[Candidate]) -> list[list[Candidate]]:
    tasks: list[list[Candidate]] = []
    task: list[Candidate] = []
    task_bytes = 0
    for candidate in candidates:
        task.append(candidate)
        task_bytes += candidate.size_bytes
        if task_bytes >= _HASH_TASK_BYTES or len(task) >= _HASH_TASK_FILES:
            tasks.append(task)
            task, task_bytes = [], 0
    if task:
        tasks.append(task)
    return tasks


def _hash_files(task: Sequence[Candidate], copier: S3Store | None = None) -> list[_Hashed]:
    return [_hash_file(candidate, copier) for candidate in task]


def ingest_paths(
    engine: Engine | None,
    settings: Settings,
    roots: Sequence[str | bytes],
    *,
    album: str | None = None,
    event_id: int = DEFAULT_EVENT_ID,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
    now: float | None = None,
    ignore: Sequence[str] = (),
    settle_wait: float = 0.0,
    should_stop: StopCheck | None = None,
) -> IngestReport:
    """Register every image below ``roots``; enqueue a job for each new photo.

    New photos belong to the event ``event_id`` (content ingested before stays in its event).
    ``ignore`` adds globs to ``ingest.ignore``. Files still being written are waited for up to
    ``settle_wait`` seconds (0: left for the next run); ``should_stop`` cuts that wait short.
    """
    started = time.perf_counter()
    now = time.time() if now is None else now
    album = check_album(album)
    report = IngestReport()
    buckets = [os.fsdecode(root) for root in roots if is_bucket_root(root)]
    roots = [root for root in roots if not is_bucket_root(root)]
    if engine is not None and not dry_run:
        with db.write(engine) as conn:
            catalog.register_roots(conn, ingest_roots(roots), now)
    ignored = ignore_matcher(ignore_globs(settings, ignore))
    candidates = list(walk_images(roots, report.errors, ignored))
    report.found = len(candidates)
    if engine is not None:
        with db.read(engine) as conn:
            known = catalog.known_files(conn, [c.path for c in candidates])
    else:
        known = {}
    settle_before_ns = int((now - settings.ingest.settle_seconds) * 1e9)
    unsettled: list[Candidate] = []
    fresh: list[Candidate] = []
    for candidate in candidates:
        if known.get(candidate.path) == (candidate.size_bytes, candidate.mtime_ns):
            report.unchanged += 1
        elif candidate.mtime_ns > settle_before_ns:
            unsettled.append(candidate)
        else:
            fresh.append(candidate)
    writing = engine is not None and not dry_run
    hashed: list[NewFile] = scan_buckets(engine, settings, buckets, report) if buckets else []
    unsettled += _hash_and_register(
        engine,
        settings,
        _admissible(fresh, settings, report),
        album,
        event_id,
        report,
        now,
        writing,
        hashed,
        progress,
        should_stop,
    )
    if settle_wait > 0 and unsettled:
        if writing and engine is not None and hashed:
            # Workers can start on these while the rest settles.
            _register_batch(engine, hashed, album, event_id, report, now)
            hashed.clear()
        unsettled = _wait_for_settled(
            engine,
            settings,
            unsettled,
            album,
            event_id,
            report,
            writing,
            hashed,
            settle_wait,
            should_stop,
        )
    if not writing:
        _count_without_writing(engine, hashed, report)
    elif hashed and engine is not None:
        _register_batch(engine, hashed, album, event_id, report, now)
    report.unsettled = len(unsettled)
    report.skipped = report.unchanged + report.unsettled
    if report.unsettled:
        log.info(
            "left %s for the next run",
            plural(report.unsettled, "file still being written", "files still being written"),
        )
    report.seconds = time.perf_counter() - started
    return report


def _admissible(
    candidates: Sequence[Candidate], settings: Settings, report: IngestReport
) -> list[Candidate]:
    """The candidates worth hashing; empty and oversized files become errors."""
    admissible = []
    for candidate in candidates:
        if candidate.size_bytes == 0:
            report.errors.append((display_path(candidate.path), "empty file"))
        elif candidate.size_bytes > settings.ingest.max_bytes:
            report.errors.append(
                (
                    display_path(candidate.path),
                    f"file too large ({candidate.size_bytes:,} bytes, limit "
                    f"{settings.ingest.max_bytes:,})",
                )
            )
        else:
            admissible.append(candidate)
    return admissible


def _hash_and_register(
    engine: Engine | None,
    settings: Settings,
    to_hash: Sequence[Candidate],
    album: str | None,
    event_id: int,
    report: IngestReport,
    now: float,
    writing: bool,
    hashed: list[NewFile],
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> list[Candidate]:
    """Hash ``to_hash`` into ``hashed``, registering full batches as they come (when writing).

    Returns the candidates that changed while they were read (still being written). A stop
    request ends the hashing early: what is hashed is still registered, the rest is left for the
    next run (leaving the loop cancels the hashing tasks not yet started).
    """
    if progress:
        progress(0, len(to_hash))
    changed: list[Candidate] = []
    done = 0
    copier = original_copier(settings) if writing else None
    with ThreadPoolExecutor(max_workers=_HASH_THREADS) as pool:
        tasks = _hash_tasks(to_hash)
        for results in pool.map(functools.partial(_hash_files, copier=copier), tasks):
            for candidate, digest, error, stored_at in results:
                if error:
                    report.errors.append((display_path(candidate.path), error))
                elif digest is None:
                    changed.append(candidate)
                else:
                    hashed.append(
                        NewFile(
                            candidate.path,
                            candidate.size_bytes,
                            candidate.mtime_ns,
                            digest,
                            stored_at=stored_at,
                        )
                    )
            done += len(results)
            if progress:
                progress(done, len(to_hash))
            if writing and engine is not None and len(hashed) >= _REGISTER_BATCH:
                # Registered while the threads hash the rest.
                _register_batch(engine, hashed, album, event_id, report, now)
                hashed.clear()
            if should_stop and should_stop():
                log.info("stopping: %d of %s hashed", done, plural(len(to_hash), "file"))
                break
    return changed


def _wait_for_settled(
    engine: Engine | None,
    settings: Settings,
    unsettled: list[Candidate],
    album: str | None,
    event_id: int,
    report: IngestReport,
    writing: bool,
    hashed: list[NewFile],
    settle_wait: float,
    should_stop: StopCheck | None,
) -> list[Candidate]:
    """Wait (at most ``settle_wait`` s) for files still being written; hash each once settled.

    A file is settled once it has not been modified for ``ingest.settle_seconds``. Returns what
    is still being written when the wait ends.
    """
    log.info(
        "waiting up to %g s for %s",
        settle_wait,
        plural(len(unsettled), "file still being written", "files still being written"),
    )
    settle_ns = int(settings.ingest.settle_seconds * 1e9)
    deadline = time.monotonic() + settle_wait
    pending = unsettled
    while pending and time.monotonic() < deadline and not (should_stop and should_stop()):
        # Sleep until the first of them could have settled, in short steps.
        first_settles_ns = min(c.mtime_ns for c in pending) + settle_ns
        pause = (first_settles_ns - time.time_ns()) / 1e9
        left = deadline - time.monotonic()
        time.sleep(max(0.0, min(max(pause, 0.01), _SETTLE_POLL_SECONDS, left)))
        settled_before_ns = time.time_ns() - settle_ns
        ready: list[Candidate] = []
        still: list[Candidate] = []
        for candidate in pending:
            try:
                info = os.stat(candidate.path)
            except OSError as error:
                report.errors.append((display_path(candidate.path), read_error_reason(error)))
                continue
            current = Candidate(candidate.path, info.st_size, info.st_mtime_ns)
            (ready if current.mtime_ns <= settled_before_ns else still).append(current)
        if ready:
            still += _hash_and_register(
                engine,
                settings,
                _admissible(ready, settings, report),
                album,
                event_id,
                report,
                time.time(),
                writing,
                hashed,
                should_stop=should_stop,
            )
        pending = still
    return pending


def _register_batch(
    engine: Engine,
    batch: Sequence[NewFile],
    album: str | None,
    event_id: int,
    report: IngestReport,
    now: float,
) -> None:
    registration, job_ids, queue_size = _register(
        engine, batch, album, None, now, event_id=event_id
    )
    report.new += len(registration.new_photo_ids)
    report.duplicates += len(registration.duplicate_paths)
    report.job_ids.extend(job_ids)
    if job_ids:
        log.info(
            "[PhotoQueue] %s enqueued (queue size: %d)", plural(len(job_ids), "job"), queue_size
        )


def _register(
    engine: Engine,
    files: Sequence[NewFile],
    album: str | None,
    uploaded_by: int | None,
    now: float,
    max_waiting: int | None = None,
    *,
    event_id: int = DEFAULT_EVENT_ID,
) -> tuple[catalog.Registration, list[str], int]:
    """The one way into the queue, for folders and uploads alike.

    With ``max_waiting``, new jobs are refused (QueueFull, nothing registered) when that many
    already wait; the count and the insert are one transaction, serialized, so the cap holds
    exactly under concurrent uploads.
    """
    with db.write(engine) as conn:
        if max_waiting is not None:
            queue.lock_capped_enqueue(conn)
        registration = catalog.register_files(
            conn, files, album, now, uploaded_by=uploaded_by, event_id=event_id
        )
        new = len(registration.new_photo_ids)
        waiting = queue.waiting_count(conn) if max_waiting is not None else None
        if waiting is not None and max_waiting is not None and new and waiting + new > max_waiting:
            verb = "is" if max_waiting == 1 else "are"
            raise queue.QueueFull(f"{plural(max_waiting, 'job')} {verb} waiting already")
        job_ids = queue.enqueue_jobs(conn, JobKind.PROCESS_PHOTO, registration.new_photo_ids, now)
        # For the log line: the count read under the cap's lock plus what was added (a claim
        # since may have lowered it on PostgreSQL; a log line can live with that).
        queue_size = waiting + len(job_ids) if waiting is not None else queue.waiting_count(conn)
    for job_id in job_ids:
        log.debug("[PhotoQueue] Job %s enqueued (queue size: %d)", job_id, queue_size)
    return registration, job_ids, queue_size


@dataclass(frozen=True)
class UploadResult:
    photo_id: int
    job_id: str | None  # None when the content was already there
    duplicate: bool


def ingest_upload(
    engine: Engine,
    settings: Settings,
    location: bytes,
    content_hash: str,
    *,
    size_bytes: int,
    mtime_ns: int,
    album: str | None = None,
    uploaded_by: int | None = None,
    filename: str | None = None,
    max_waiting: int | None = None,
) -> UploadResult:
    """Register one stored upload (already hashed while it streamed) and enqueue it.

    ``location`` is the stored file's path or ``s3://`` URL, with its size and mtime as the
    store reports them (what the worker compares before it trusts the hash). ``filename`` is the
    name the uploader gave, shown instead of the stored name; with ``max_waiting`` a new job is
    refused with QueueFull once that many jobs wait.
    """
    album = check_album(album)
    file = NewFile(location, size_bytes, mtime_ns, content_hash, filename)
    registration, job_ids, queue_size = _register(
        engine, [file], album, uploaded_by, time.time(), max_waiting
    )
    job_id: str | None
    if job_ids:  # a new photo: its ids are known without asking again
        photo_id, job_id = registration.new_photo_ids[0], job_ids[0]
    else:
        with db.read(engine) as conn:
            photo_id = catalog.photo_id_by_hash(conn, content_hash)
            job_id = queue.latest_job_for_photo(conn, photo_id)
    if job_ids:
        log.info("[PhotoQueue] Job %s enqueued (queue size: %d)", job_ids[0], queue_size)
    return UploadResult(photo_id=photo_id, job_id=job_id, duplicate=not job_ids)


def _count_without_writing(
    engine: Engine | None, hashed: Sequence[NewFile], report: IngestReport
) -> None:
    existing: set[str] = set()
    if engine is not None:
        with db.read(engine) as conn:
            existing = catalog.existing_hashes(conn, sorted({f.content_hash for f in hashed}))
    seen: set[str] = set()
    for file in hashed:
        if file.content_hash in existing or file.content_hash in seen:
            report.duplicates += 1
        else:
            report.new += 1
        seen.add(file.content_hash)
