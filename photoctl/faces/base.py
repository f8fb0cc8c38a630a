"""The face engine interface: what the pipeline, enrollment and deletion ask of any engine.

An engine finds faces and decides which stored faces belong to which enrolled user. The local
engine compares embeddings itself; Rekognition keeps its own index and answers searches. Both
are driven through this one interface by face_step.py (photos) and users.py (enrollment,
deletion), which own the database side (face_store.py); engines never touch the database, except
Rekognition's call limiter, which shares its state across processes there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Self

from PIL import Image

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from photoctl.config import Settings
    from photoctl.faces.vector_cache import Vectors


@dataclass(frozen=True)
class FaceRecord:
    """A face an engine found. Box: (left, top, width, height) as fractions of the image."""

    box: tuple[float, float, float, float]
    score: float
    embedding: bytes | None = None  # local engine
    external_id: str | None = None  # the engine's own face id (Rekognition FaceId)


@dataclass(frozen=True)
class StoredFace:
    id: int
    photo_id: int
    embedding: bytes | None
    external_id: str | None
    # (left, top, width, height) as fractions of the photo, upright; the thumbnail is cropped
    # around it. None where a caller did not read it.
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class EnrolledFace:
    user_id: int
    embedding: bytes | None
    external_id: str | None


@dataclass(frozen=True)
class FaceMatch:
    face_id: int
    user_id: int
    similarity: float  # percent


class FaceLookup(Protocol):
    """Read access to stored faces, which enrollment gives engines (face_step.StoredFaces)."""

    def all_faces(self, engine: str) -> Sequence[StoredFace]: ...

    def faces_by_external_id(self, external_ids: Sequence[str]) -> Sequence[StoredFace]: ...

    def face_vectors(self, engine: str) -> Vectors:
        """The event's stored embeddings as held in memory (faces.vector_cache)."""
        ...


class FaceEngine(ABC):
    """One face service. Instances live in one process (load models lazily, per process)."""

    name: str
    keeps_index: bool = False  # True when the service stores faces itself (Rekognition)
    # Longest side the photo should be decoded at for this engine (0: the preview is enough).
    # The engine then gets that larger decode (DecodedPhoto.detail), not the preview.
    detail_px: int = 0
    # Jobs a worker process runs at once: 1 for a CPU-bound engine (one job per process), more
    # for one that mostly waits on a service; the limiter still bounds the calls in flight.
    jobs_in_flight: int = 1

    @classmethod
    @abstractmethod
    def from_settings(
        cls, settings: Settings, database: Engine | None = None, holder: str | None = None
    ) -> Self:
        """The engine as configured; what faces.make_engine calls.

        ``database`` is for state an engine shares across processes (Rekognition's call
        limiter); ``holder`` names this process there (see faces.make_engine).
        """

    @abstractmethod
    def index_photo(self, photo_id: int, image: Image.Image) -> list[FaceRecord]:
        """Find (and for indexed services, store) the faces of a photo.

        `image` is the photo decoded at `detail_px` or more when the engine sets it, else the
        preview.
        """

    def index_photo_reporting(
        self, photo_id: int, image: Image.Image
    ) -> tuple[list[FaceRecord], str | None]:
        """index_photo, and a note naming the faces found but left out (None: none were).

        An engine with a limit on faces per photo (Rekognition: 100) says here which it
        dropped; the face step puts the note in the log and in the job's reason.
        """
        return self.index_photo(photo_id, image), None

    @abstractmethod
    def index_selfie(
        self, user_id: int, image: Image.Image, *, allow_several: bool = True
    ) -> FaceRecord | None:
        """The largest face of a selfie, indexed for the user; None if there is no face.

        With ``allow_several=False`` a selfie whose largest face is not clearly the largest
        (``clearly_largest``) raises SeveralFaces and leaves nothing indexed: which face is the
        user's is then the person's or the operator's call.
        """

    @abstractmethod
    def match_faces(
        self, faces: Sequence[StoredFace], enrolled: Sequence[EnrolledFace]
    ) -> list[FaceMatch]:
        """For new faces of a photo: the enrolled users they belong to."""

    def match_enrolled(self, faces: Sequence[StoredFace], enrolled: Vectors) -> list[FaceMatch]:
        """match_faces against the event's selfies as this process holds them in memory
        (faces.vector_cache.selfie_vectors): what the face step calls for each photo. This
        default hands match_faces every selfie; the engines here search the held matrix."""
        every = [
            EnrolledFace(int(user), row.astype("<f4").tobytes(), None)
            for _, users, rows, _ in enrolled.parts
            for user, row in zip(users, rows, strict=True)
        ]
        every += [EnrolledFace(user, None, face) for face, user in enrolled.external.items()]
        return self.match_faces(faces, every)

    @abstractmethod
    def match_selfie(self, selfie: EnrolledFace, lookup: FaceLookup) -> list[FaceMatch]:
        """For a new enrollment: every stored face that belongs to this user."""

    def warm_up(self) -> None:  # noqa: B027
        """Load what the first job would otherwise load (models), before any job is leased."""

    def forget(self, external_ids: Sequence[str]) -> None:  # noqa: B027
        """Delete these faces from the engine's own index (if it keeps one)."""

    def discard_photo_faces(self, photo_id: int) -> None:  # noqa: B027
        """Remove what an interrupted index_photo may have stored for this photo."""

    def for_event(self, slug: str) -> FaceEngine:
        """This engine working on one event's faces: an engine that keeps an index keeps one
        per event (so a search never finds another event's faces); others return themselves."""
        return self

    def drop_event(self, slug: str) -> None:  # noqa: B027
        """Delete the index of one event's faces (if the engine keeps one), all at once."""

    def indexed_events(self, slugs: Sequence[str]) -> set[str]:
        """Those of these events whose index the engine holds (one that keeps none: none)."""
        return set()

    @abstractmethod
    def check(self) -> str:
        """Raise ConfigError saying what is missing; return a one-line description if ready."""


def largest(faces: Sequence[FaceRecord]) -> FaceRecord | None:
    return max(faces, key=box_area, default=None)


def box_area(face: FaceRecord) -> float:
    return face.box[2] * face.box[3]


# A selfie's face is its largest one when that face's box has at least this many times the
# area of the next: a bystander behind the person taking it is further from the camera, so
# smaller. Measured with the local detector on the faces of tests/data composed side by side at
# known scales (14 pairs per scale, tests/test_selfie_faces.py keeps the extremes): two faces
# pasted at the same size came out 1.05x to 1.57x apart in area, a face at half the width of
# the other (a bystander about twice as far away) 2.3x to 6.4x; in between (1.2x to 1.6x the
# width) it varies from pair to pair. Below 2x the two are about as far from the camera (two
# friends in one selfie), and guessing would enroll the wrong one.
CLEARLY_LARGEST_AREA_RATIO = 2.0


def clearly_largest(areas: Sequence[float]) -> bool:
    """Whether the largest of these face areas is clearly the largest (one face: it is)."""
    ordered = sorted(areas, reverse=True)
    return len(ordered) < 2 or ordered[0] >= CLEARLY_LARGEST_AREA_RATIO * ordered[1]
