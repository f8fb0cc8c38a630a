"""Ingest: walk folders, hash new files, register photos and enqueue one job per new photo.

Paths are handled as bytes end to end, so names that are not valid UTF-8 are ingested like any
other. A re-run skips files whose path, size and mtime are unchanged without reading them;
files modified within ``ingest.settle_seconds`` are left for the next run (still being
written). Hashing runs in a few threads: hashlib releases the GIL on large buffers, so reading
and hashing overlap on both cores. Progress goes through a callback; the CLI draws it.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Engine

from photoctl import catalog, db, queue
from photoctl.catalog import NewFile, display_path
from photoctl.config import Settings
from photoctl.errors import ConfigError
from photoctl.imaging import IMAGE_EXTENSIONS, file_kind, looks_like_image, open_regular
from photoctl.models import JobKind

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]  # (files examined, files to examine)

_EXTENSIONS = frozenset(ext.encode() for ext in IMAGE_EXTENSIONS)
_REGISTER_BATCH = 1000
_HASH_THREADS = 4
# Files go to the hashing threads in groups of about this many bytes (at most _HASH_TASK_FILES
# files): one task per small file cost more in thread hand-offs than hashing it (5,000 files of
# 25 KiB: 0.26 s in single-file tasks, 0.19 s in groups), while a large file is still a task alone.
_HASH_TASK_BYTES = 1 << 20
_HASH_TASK_FILES = 64


@dataclass
class IngestReport:
    new: int = 0
    duplicates: int = 0
    skipped: int = 0  # unchanged since the last run, or still being written
    unsettled: int = 0  # the part of skipped that is still being written
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    seconds: float = 0.0
    job_ids: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "new": self.new,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "errors": len(self.errors),
            "seconds": round(self.seconds, 3),
            "error_files": [{"file": name, "reason": reason} for name, reason in self.errors],
        }

    def summary(self) -> str:
        return (
            f"{self.new} new, {self.duplicates} duplicates, {self.skipped} skipped, "
            f"{len(self.errors)} errors in {self.seconds:.2f} s"
        )


@dataclass(frozen=True)
class _Candidate:
    path: bytes
    size_bytes: int
    mtime_ns: int


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


def ingest_roots(roots: Sequence[str | bytes]) -> list[bytes]:
    """The resolved folders of the roots that exist (a file's own folder for a file)."""
    resolved = []
    for root in roots:
        path = os.fsencode(root)
        if os.path.isdir(path):
            resolved.append(os.path.realpath(path))
        elif os.path.isfile(path):
            resolved.append(os.path.dirname(os.path.realpath(path)))
    return resolved


def _has_image_extension(name: bytes) -> bool:
    dot = name.rfind(b".")
    return dot > 0 and name[dot:].lower() in _EXTENSIONS


def walk_images(roots: Sequence[str | bytes], report: IngestReport) -> Iterator[_Candidate]:
    """Every image file below the roots (following directory symlinks, never in a loop)."""
    visited: set[tuple[int, int]] = set()
    for root in roots:
        root_bytes = os.fsencode(root)
        try:
            info = os.stat(root_bytes)
        except OSError as error:
            report.errors.append((display_path(root_bytes), _reason(error)))
            continue
        if stat.S_ISDIR(info.st_mode):
            yield from _walk_directory(root_bytes, info, visited, report)
        elif stat.S_ISREG(info.st_mode):
            # Workers open photos without following a final symlink: register the file itself.
            path = os.path.realpath(root_bytes) if os.path.islink(root_bytes) else root_bytes
            yield _Candidate(path, info.st_size, info.st_mtime_ns)
        else:
            report.errors.append((display_path(root_bytes), _not_regular(info.st_mode)))


def _walk_directory(
    directory: bytes, info: os.stat_result, visited: set[tuple[int, int]], report: IngestReport
) -> Iterator[_Candidate]:
    stack = [(directory, info)]
    while stack:
        current, current_info = stack.pop()
        identity = (current_info.st_dev, current_info.st_ino)
        if identity in visited:
            log.debug("skipping %s: already visited (symlink loop or alias)", display_path(current))
            continue
        visited.add(identity)
        try:
            entries = sorted(os.scandir(current), key=lambda entry: entry.name)
        except OSError as error:
            report.errors.append((display_path(current), _reason(error)))
            continue
        subdirectories = []
        for entry in entries:
            if entry.name.startswith(b"."):
                continue  # hidden files, including macOS "._IMG_0001.jpg" resource forks
            try:
                entry_info = entry.stat()  # follows symlinks
            except OSError as error:
                if _has_image_extension(entry.name) or error.errno == errno.ELOOP:
                    report.errors.append((display_path(entry.path), _reason(error)))
                continue
            if stat.S_ISDIR(entry_info.st_mode):
                subdirectories.append((entry.path, entry_info))
            elif _has_image_extension(entry.name):
                if not stat.S_ISREG(entry_info.st_mode):
                    # A FIFO would block whoever opens it; a device is not a photo.
                    report.errors.append(
                        (display_path(entry.path), _not_regular(entry_info.st_mode))
                    )
                elif entry.is_symlink():
                    # Workers and serve read photos without following a final symlink (a photo
                    # replaced by a link to another file must not be read through it).
                    report.errors.append(
                        (display_path(entry.path), "a symbolic link to a file (not followed)")
                    )
                else:
                    yield _Candidate(entry.path, entry_info.st_size, entry_info.st_mtime_ns)
        stack.extend(reversed(subdirectories))


def _not_regular(mode: int) -> str:
    return f"{file_kind(mode)}, not a regular file"


def _reason(error: OSError) -> str:
    if "not a regular file" in (error.strerror or ""):
        return error.strerror  # open_regular: "a FIFO (named pipe), not a regular file"
    if error.errno == errno.ELOOP:
        return "symlink loop"
    if error.errno == errno.ENOENT:
        return "file is gone (dangling symlink or deleted)"
    if error.errno == errno.EACCES:
        return "permission denied"
    return f"cannot read: {error.strerror or error}"


def _hash_file(candidate: _Candidate) -> tuple[_Candidate, str | None, str | None]:
    """(candidate as read, sha256 hex or None, error or None); None, None = changed meanwhile."""
    try:
        # Not a plain open: the file may have been replaced by a FIFO since the walk.
        with os.fdopen(open_regular(candidate.path, follow_symlinks=False), "rb") as handle:
            head = handle.read(16)
            if not looks_like_image(head):
                return (
                    candidate,
                    None,
                    ("not an image (content is not JPEG, PNG, WebP, TIFF, HEIC or GIF)"),
                )
            handle.seek(0)
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            after = os.fstat(handle.fileno())
    except OSError as error:
        return candidate, None, _reason(error)
    if after.st_size != candidate.size_bytes or after.st_mtime_ns != candidate.mtime_ns:
        return candidate, None, None
    return candidate, digest, None


def _hash_tasks(candidates: Sequence[_Candidate]) -> list[list[_Candidate]]:
    tasks: list[list[_Candidate]] = []
    task: list[_Candidate] = []
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


def _hash_files(task: Sequence[_Candidate]) -> list[tuple[_Candidate, str | None, str | None]]:
    return [_hash_file(candidate) for candidate in task]


def ingest_paths(
    engine: Engine | None,
    settings: Settings,
    roots: Sequence[str | bytes],
    *,
    album: str | None = None,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
    now: float | None = None,
) -> IngestReport:
    """Register every image below ``roots``; enqueue a job for each new photo."""
    started = time.perf_counter()
    now = time.time() if now is None else now
    album = check_album(album)
    report = IngestReport()
    if engine is not None and not dry_run:
        with db.write(engine) as conn:
            catalog.register_roots(conn, engine, ingest_roots(roots), now)
    candidates = list(walk_images(roots, report))
    if engine is not None:
        with db.read(engine) as conn:
            known = catalog.known_files(conn, [c.path for c in candidates])
    else:
        known = {}
    settle_before_ns = int((now - settings.ingest.settle_seconds) * 1e9)
    to_hash: list[_Candidate] = []
    for candidate in candidates:
        if known.get(candidate.path) == (candidate.size_bytes, candidate.mtime_ns):
            report.skipped += 1
        elif candidate.mtime_ns > settle_before_ns:
            report.skipped += 1
            report.unsettled += 1
        elif candidate.size_bytes == 0:
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
            to_hash.append(candidate)
    if progress:
        progress(0, len(to_hash))
    writing = engine is not None and not dry_run
    hashed: list[NewFile] = []
    done = 0
    with ThreadPoolExecutor(max_workers=_HASH_THREADS) as pool:
        for results in pool.map(_hash_files, _hash_tasks(to_hash)):
            for candidate, digest, error in results:
                if error:
                    report.errors.append((display_path(candidate.path), error))
                elif digest is None:
                    report.skipped += 1
                    report.unsettled += 1
                else:
                    hashed.append(
                        NewFile(candidate.path, candidate.size_bytes, candidate.mtime_ns, digest)
                    )
            done += len(results)
            if progress:
                progress(done, len(to_hash))
            if writing and len(hashed) >= _REGISTER_BATCH:
                # Registered while the threads hash the rest.
                _register_batch(engine, hashed, album, report, now)
                hashed = []
    if not writing:
        _count_without_writing(engine, hashed, report)
    elif hashed:
        _register_batch(engine, hashed, album, report, now)
    if report.unsettled:
        log.info("left %d files still being written for the next run", report.unsettled)
    report.seconds = time.perf_counter() - started
    return report


def _register_batch(
    engine: Engine, batch: Sequence[NewFile], album: str | None, report: IngestReport, now: float
) -> None:
    registration, job_ids, queue_size = _register(engine, batch, album, None, now)
    report.new += len(registration.new_photo_ids)
    report.duplicates += len(registration.duplicate_paths)
    report.job_ids.extend(job_ids)
    if job_ids:
        log.info("[PhotoQueue] %d jobs enqueued (queue size: %d)", len(job_ids), queue_size)


def _register(
    engine: Engine,
    files: Sequence[NewFile],
    album: str | None,
    uploaded_by: int | None,
    now: float,
    max_waiting: int | None = None,
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
            conn, engine, files, album, now, uploaded_by=uploaded_by
        )
        if (
            max_waiting is not None
            and registration.new_photo_ids
            and queue.waiting_count(conn) + len(registration.new_photo_ids) > max_waiting
        ):
            raise queue.QueueFull(f"{max_waiting} jobs are waiting already")
        job_ids = queue.enqueue_jobs(conn, JobKind.PROCESS_PHOTO, registration.new_photo_ids, now)
        queue_size = queue.waiting_count(conn)
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
    path: str | bytes,
    content_hash: str,
    *,
    album: str | None = None,
    uploaded_by: int | None = None,
    filename: str | None = None,
    max_waiting: int | None = None,
) -> UploadResult:
    """Register one stored upload (already hashed while it streamed) and enqueue it.

    ``filename`` is the name the uploader gave, shown instead of the stored name; with
    ``max_waiting`` a new job is refused with QueueFull once that many jobs wait.
    """
    album = check_album(album)
    path_bytes = os.fsencode(path)
    info = os.stat(path_bytes)
    file = NewFile(path_bytes, info.st_size, info.st_mtime_ns, content_hash, filename)
    registration, job_ids, queue_size = _register(
        engine, [file], album, uploaded_by, time.time(), max_waiting
    )
    with db.read(engine) as conn:
        photo_id = catalog.photo_id_by_hash(conn, content_hash)
        job_id = job_ids[0] if job_ids else queue.latest_job_for_photo(conn, photo_id)
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
