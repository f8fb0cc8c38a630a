"""What one job does to one photo: decode once, write the preview, run the face step and the bib
step (bib_step.py, for events that read bibs), write the thumbnail (a square around the faces
found).

``process_photo`` does the slow part; the worker then records its result and completes the job
in one short transaction, the job's final one. ``process_photo`` does write to the database,
but only through the face step (face_step.py): the photo's faces, its face checkpoint and its
matches, each committed in a short transaction of the step's own. That is safe because those
writes can be repeated and are shown to no user before the final transaction, which records the
photo as processed (the gallery lists only processed photos) and publishes its matches
(``face_store.mark_findable``) together with the job's completion. face_step.py says why each
write can be repeated; a step that writes must keep both properties.

Outputs are named by content hash and written atomically: running a job twice rewrites the same
files and stores nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from photoctl import storage
from photoctl.catalog import PhotoRecord, ProcessedPhoto, display_path
from photoctl.config import Settings
from photoctl.imaging import DecodedPhoto, decode_bytes, store_jpeg
from photoctl.thumbnails import make_thumbnail


class FaceStep(Protocol):
    """The seam for face detection and matching: NoFaces, or face_step.EngineFaceStep.

    ``run`` may commit what it finds, in its own transactions, as long as each write can be
    repeated and stays hidden until the job's final transaction (see this module's docstring).
    """

    # Longest side the face step wants the photo decoded at (0: the preview is enough).
    detail_px: int
    # Jobs a worker process runs at once with this step: 1 for CPU-bound engines, more for an
    # engine that mostly waits on a service (worker.py, job_threads.py).
    jobs_in_flight: int

    def warm_up(self) -> None:
        """Load what the first job would otherwise load (models), before any job is leased."""

    def run(self, photo: PhotoRecord, decoded: DecodedPhoto) -> FaceSummary: ...


@dataclass(frozen=True)
class FaceSummary:
    faces: int = 0
    matches: int = 0
    user_ids: tuple[int, ...] = ()  # users found in the photo (their cached lists go stale)
    # Why the face service refused the photo (faces_error) or which faces it left out (note):
    # the job still completes, with the reason in its record (see face_step.py).
    faces_error: str | None = None
    note: str | None = None
    # Where the faces are: (left, top, width, height) as fractions of the photo, upright. The
    # thumbnail's square is centred on them.
    boxes: tuple[tuple[float, float, float, float], ...] = ()

    @property
    def reason(self) -> str | None:
        """What the job's record should say about its face step, if anything."""
        if self.faces_error:
            return f"faces failed: {self.faces_error}"
        return self.note


class BibStep(Protocol):
    """The seam for reading bib numbers: NoBibs, or bib_step.BibStep (which commits the
    photo's bibs and its checkpoint in one transaction of its own: see bib_step.py)."""

    def warm_up(self) -> None: ...

    def detail_px(self, photo: PhotoRecord) -> int:
        """Longest side this photo must be decoded at for its bibs (0: it reads none)."""
        ...

    def run(self, photo: PhotoRecord, decoded: DecodedPhoto) -> Any: ...


class NoBibs:
    def warm_up(self) -> None:
        pass

    def detail_px(self, photo: PhotoRecord) -> int:
        return 0

    def run(self, photo: PhotoRecord, decoded: DecodedPhoto) -> Any:
        return None


class NoFaces:
    """The `none` engine: thumbnails and metadata only."""

    detail_px = 0
    jobs_in_flight = 1

    def warm_up(self) -> None:
        pass

    def run(self, photo: PhotoRecord, decoded: DecodedPhoto) -> FaceSummary:
        return FaceSummary()


@dataclass(frozen=True)
class PhotoOutcome:
    processed: ProcessedPhoto
    faces: FaceSummary
    bibs: Any = None  # bib_step.BibSummary, or None without a bib step


def storage_paths(settings: Settings, content_hash: str) -> tuple[Path, Path]:
    """Where a photo's thumbnail and preview live on a local storage root (fanned out)."""
    root = settings.storage_root
    return (
        storage.path(root, storage.key(storage.THUMBS, content_hash)),
        storage.path(root, storage.key(storage.PREVIEWS, content_hash)),
    )


def _decode(
    settings: Settings, photo: PhotoRecord, data: bytes | None, detail_px: int
) -> DecodedPhoto:
    name = display_path(photo.source_path)
    if data is None:
        data = storage.read_original(
            settings, photo.source_path, max_bytes=settings.ingest.max_bytes, display_name=name
        ).data
    return decode_bytes(
        data,
        preview_px=settings.storage.preview_px,
        max_pixels=settings.ingest.max_pixels,
        display_name=name,
        detail_px=detail_px,
    )


def read_bibs(
    settings: Settings, photo: PhotoRecord, bibs: BibStep, data: bytes | None = None
) -> Any:
    """The bib step alone, for a photo processed before its event read bibs (`bibs scan`):
    one decode at the size bibs are read at; no thumbnail or face is made again."""
    wanted = bibs.detail_px(photo)
    if not wanted:
        return None  # read already (a rerun), or its event stopped reading bibs
    return bibs.run(photo, _decode(settings, photo, data, wanted))


def process_photo(
    settings: Settings,
    photo: PhotoRecord,
    faces: FaceStep,
    data: bytes | None = None,
    bibs: BibStep | None = None,
) -> PhotoOutcome:
    """Decode, write thumbnail and preview, run the face step. PermanentError for bad input.

    Commits only what the face step commits (see the module docstring); the caller records the
    outcome and publishes the photo's matches in the job's final transaction.

    ``data`` is the photo file's content when the caller already read it (the worker does, to
    check it against what ingest saw); otherwise the file is read here. StorageFull when the
    thumbnail or preview cannot be written for lack of space.
    """
    bibs = bibs or NoBibs()
    # One decode for every step: at the larger size the face step or the bib step needs.
    decoded = _decode(settings, photo, data, max(faces.detail_px, bibs.detail_px(photo)))
    store = storage.open_store(settings)
    thumb_key = storage.key(storage.THUMBS, photo.content_hash)
    preview_key = storage.key(storage.PREVIEWS, photo.content_hash)
    quality = settings.storage.jpeg_quality
    store_jpeg(decoded.image, store.writer(preview_key), store.describe(preview_key), quality)
    summary = faces.run(photo, decoded)
    bib_summary = bibs.run(photo, decoded)
    # After the face step: the grid's square thumbnail is cropped around the faces it found,
    # not around the middle of a full-body portrait (which cut heads off).
    thumb = make_thumbnail(decoded.image, settings.storage.thumb_px, summary.boxes)
    store_jpeg(thumb, store.writer(thumb_key), store.describe(thumb_key), quality)
    processed = ProcessedPhoto(
        photo_id=photo.id,
        width=decoded.width,
        height=decoded.height,
        taken_at=decoded.taken_at,
        camera=decoded.camera,
        # Keys, relative to the storage root (a folder or a bucket), not to this worker's
        # working directory: serve finds them through its store wherever it runs.
        thumb_path=thumb_key,
        preview_path=preview_key,
        faces_error=summary.faces_error,
    )
    return PhotoOutcome(processed=processed, faces=summary, bibs=bib_summary)
