"""The `rekognition` engine: AWS Rekognition through boto3, every call under the shared limiter.

One collection holds every face: photo faces with ExternalImageId = photo id, selfies with
``user-<id>``. A new photo is indexed once (IndexFaces) and each of its faces searched
(SearchFaces) for enrolled selfies; an enrollment indexes the selfie and searches it against
the collection. botocore's own retries are off (total_max_attempts=1): they resent throttled
calls outside the shared limiter, which never heard of them. Every retry is made here instead,
through the limiter, which spaces and counts it: throttling answers slow every process down and
are retried until the limiter's max wait, never failing a job; server errors and connections
that never reached the service are retried a few times with backoff; other AWS errors become
Transient or Permanent errors carrying the AWS error code. An IndexFaces whose answer was lost
(read timeout, connection closed) is not resent here: it may have indexed, and the job's retry
discards what it did (face_step.py's pending checkpoint).
"""

from __future__ import annotations

import io
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from PIL import Image

from photoctl.bibs.rules import OcrRead
from photoctl.config import Settings
from photoctl.errors import ConfigError, FacesRefused, SeveralFaces, TransientError
from photoctl.faces.base import (
    EnrolledFace,
    FaceEngine,
    FaceLookup,
    FaceMatch,
    FaceRecord,
    StoredFace,
    box_area,
    clearly_largest,
)
from photoctl.faces.limiter import CallLimiter, CallOutcome, LimiterSettings
from photoctl.faces.rekognition_matching import match_photo_faces, match_photo_faces_to
from photoctl.faces.vector_cache import Vectors
from photoctl.models import DEFAULT_EVENT_SLUG
from photoctl.wording import plural

log = logging.getLogger(__name__)

THROTTLING_CODES = frozenset(
    {"ThrottlingException", "ProvisionedThroughputExceededException", "LimitExceededException"}
)
PERMANENT_CODES = frozenset(
    {"InvalidImageFormatException", "ImageTooLargeException", "InvalidParameterException"}
)
# Server-side faults: the request did no harm, sending it again may work.
SERVER_ERROR_CODES = frozenset({"InternalServerError", "ServiceUnavailableException"})
# Attempts for a call that meets server errors or cannot connect (throttles do not count).
ERROR_ATTEMPTS = 3
_ERROR_BACKOFF_SECONDS = 0.5
MAX_IMAGE_BYTES = 5 * 1024 * 1024
# Rekognition refuses images under 80 px on either side (InvalidParameterException).
MIN_IMAGE_PX = 80
# IndexFaces indexes at most this many faces of one photo (the largest ones).
MAX_FACES_PER_PHOTO = 100
# Rekognition documents faces down to 40x40 px in a 1920x1080 image, about 2 % of the width.
# The 1600 px preview shows a 2 % face at 32 px, so photos are sent at this longest side
# instead (a 2 % face is 41 px), cut from the photo's larger decode; a 24 MP photo's JPEG at
# 2048 px is about 1 MB, well under the 5 MB limit.
SEND_PX = 2048
SELFIE_PREFIX = "user-"
_SEARCH_MAX_FACES = 4096


def image_to_send(image: Image.Image) -> bytes:
    """The JPEG sent to IndexFaces: at most SEND_PX on its longest side (unless that would take
    the shorter side under MIN_IMAGE_PX), under 5 MB; FacesRefused if it cannot be sent."""
    _check_size(image.size)
    longest = max(SEND_PX, -(-MIN_IMAGE_PX * max(image.size) // min(image.size)))
    if max(image.size) > longest:
        image = image.copy()
        image.thumbnail((longest, longest), Image.Resampling.HAMMING)
    return encode_under_limit(image)


def _check_size(size: tuple[int, int]) -> None:
    if min(size) < MIN_IMAGE_PX:
        raise FacesRefused(
            f"image is {size[0]}x{size[1]} px; Rekognition needs at least {MIN_IMAGE_PX} px on "
            "each side, so it was not sent"
        )


def encode_under_limit(image: Image.Image, limit_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """JPEG bytes of the image under Rekognition's 5 MB limit, lowering quality, then size.

    FacesRefused if the image would have to shrink under MIN_IMAGE_PX to fit: never sent.
    """
    # Saving never changes the image: convert (a copy) only what is not RGB already.
    candidate = image if image.mode == "RGB" else image.convert("RGB")
    for quality in (90, 80, 70, 60):
        buffer = io.BytesIO()
        candidate.save(buffer, "JPEG", quality=quality)
        if buffer.tell() <= limit_bytes:
            return buffer.getvalue()
    smaller = (candidate.width // 2, candidate.height // 2)
    if min(smaller) < MIN_IMAGE_PX:
        raise FacesRefused(
            f"image does not fit Rekognition's {limit_bytes // 1024} KB limit above "
            f"{MIN_IMAGE_PX} px, so it was not sent"
        )
    candidate = candidate.copy()
    candidate.thumbnail(smaller)
    return encode_under_limit(candidate, limit_bytes)


def _error_code(error: Any) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


def _left_out(answer: dict) -> str | None:
    """Which faces IndexFaces dropped for its limit of 100 per photo (the smallest), or None."""
    dropped = [
        face.get("FaceDetail", {}).get("BoundingBox", {})
        for face in answer.get("UnindexedFaces", [])
        if "EXCEEDS_MAX_FACES" in face.get("Reasons", [])
    ]
    if not dropped:
        return None
    boxes = ", ".join(
        f"({box.get('Left', 0):.3f},{box.get('Top', 0):.3f} "
        f"{box.get('Width', 0):.3f}x{box.get('Height', 0):.3f})"
        for box in dropped[:20]
    )
    more = f" and {len(dropped) - 20} more" if len(dropped) > 20 else ""
    return (
        f"{plural(len(dropped), 'face')} not indexed: Rekognition indexes at most "
        f"{MAX_FACES_PER_PHOTO} "
        f"per photo, the largest; left out (left,top widthxheight of the photo): {boxes}{more}"
    )


class RekognitionEngine(FaceEngine):
    name = "rekognition"
    keeps_index = True
    detail_px = SEND_PX

    def __init__(
        self, client: Any, limiter: CallLimiter, collection_id: str, match_threshold: float
    ) -> None:
        # The configured collection id, which names the other events' collections (for_event).
        self.base_collection_id = collection_id
        self._event_engines: dict[str, RekognitionEngine] = {}
        self.client = client
        self.limiter = limiter
        self.collection_id = collection_id
        self.event_slug = DEFAULT_EVENT_SLUG  # whose calls these are (service_calls.event)
        self.match_threshold = match_threshold
        self._collection_ready = False
        self._collection_lock = threading.RLock()  # RLock: _call may come back here
        # A worker's job threads: as many as the limiter has call slots, so one process alone
        # can fill them; with several processes the slots, not the threads, bound the calls.
        self.jobs_in_flight = limiter.limits.max_concurrency

    @classmethod
    def from_settings(
        cls, settings: Settings, database: Any = None, holder: str | None = None
    ) -> RekognitionEngine:
        if database is None:
            raise ConfigError("the rekognition engine needs the database (for its limiter)")
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ConfigError("the rekognition engine needs boto3: pip install boto3") from None
        options = settings.rekognition
        region = (
            options.region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or boto3.session.Session().region_name
        )
        if not region:
            raise ConfigError(
                "no AWS region: set rekognition.region (PHOTOCTL_REKOGNITION_REGION) or AWS_REGION"
            )
        log.info("[FaceRecognition][AWS] Using region: %s", region)
        client = boto3.client(
            "rekognition",
            region_name=region,
            endpoint_url=options.endpoint_url or None,
            config=Config(
                # One attempt: every retry goes through the shared limiter (see _call).
                retries={"mode": "standard", "total_max_attempts": 1},
                max_pool_connections=options.max_concurrency + 2,
                connect_timeout=10,
                read_timeout=60,
            ),
        )
        limits = LimiterSettings(
            name="rekognition",
            max_concurrency=options.max_concurrency,
            max_tps=options.max_tps,
            cooldown_seconds=options.throttle_cooldown_seconds,
        )
        holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        return cls(
            client,
            CallLimiter(database, limits, holder),
            options.collection_id,
            options.match_threshold,
        )

    # -- calls ------------------------------------------------------------------------------

    def _call(
        self, operation: str, *, tolerate: frozenset[str] = frozenset(), **parameters: Any
    ) -> dict:
        """One API call under the limiter, retried through it (see the module docstring);
        ``tolerate``d codes return an empty answer, other errors become Transient or Permanent
        errors."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
        )

        api_name = "".join(part.title() for part in operation.split("_"))
        started = time.monotonic()
        errors = 0
        while True:
            try:
                with self.limiter.call(api_name, self.event_slug) as ticket:
                    try:
                        answer = getattr(self.client, operation)(**parameters)
                    except ClientError as error:
                        if _error_code(error) in THROTTLING_CODES:
                            ticket.outcome = CallOutcome.THROTTLED
                        raise
                    ticket.outcome = CallOutcome.ACCEPTED
                    return answer
            except ClientError as error:
                code = _error_code(error)
                message = error.response.get("Error", {}).get("Message", "")
                if code in tolerate:
                    return {}
                if code in THROTTLING_CODES:
                    if time.monotonic() - started > self.limiter.limits.max_wait_seconds:
                        raise TransientError(
                            f"Rekognition {operation}: {code} for too long"
                        ) from None
                    continue
                if code == "ResourceNotFoundException" and operation != "create_collection":
                    self._collection_ready = False
                    if operation != "index_faces":
                        # No collection holds no face to find, list or delete. Only indexing
                        # creates one again: a search racing its event's purge must not.
                        return {}
                    self._ensure_collection()
                    continue
                if code in SERVER_ERROR_CODES and errors + 1 < ERROR_ATTEMPTS:
                    errors = self._back_off(operation, errors, code)
                    continue
                kind = FacesRefused if code in PERMANENT_CODES else TransientError
                raise kind(f"Rekognition {operation}: {code}: {message}") from None
            except (EndpointConnectionError, ConnectTimeoutError) as error:
                # The request never reached the service: safe to send again.
                if errors + 1 < ERROR_ATTEMPTS:
                    errors = self._back_off(operation, errors, type(error).__name__)
                    continue
                raise TransientError(f"Rekognition {operation}: {error}") from None
            except BotoCoreError as error:
                raise TransientError(f"Rekognition {operation}: {error}") from None

    @staticmethod
    def _back_off(operation: str, errors: int, what: str) -> int:
        delay = _ERROR_BACKOFF_SECONDS * 2**errors * random.uniform(0.5, 1.0)
        log.warning(
            "[FaceRecognition][AWS] %s: %s; sending it again in %.1f s", operation, what, delay
        )
        time.sleep(delay)
        return errors + 1

    def _ensure_collection(self) -> None:
        if self._collection_ready:
            return
        # A worker's job threads start together: one of them asks, the others wait for it.
        with self._collection_lock:
            if self._collection_ready:
                return
            created = self._call(
                "create_collection",
                CollectionId=self.collection_id,
                tolerate=frozenset({"ResourceAlreadyExistsException"}),
            )
            if created:
                log.info("[FaceRecognition][AWS] Created collection %s", self.collection_id)
            self._collection_ready = True

    # -- the engine interface ---------------------------------------------------------------

    def _index_answer(self, image: Image.Image, external_id: str, max_faces: int) -> dict:
        self._ensure_collection()
        return self._call(
            "index_faces",
            CollectionId=self.collection_id,
            Image={"Bytes": image_to_send(image)},
            ExternalImageId=external_id,
            MaxFaces=max_faces,
            QualityFilter="AUTO",
            DetectionAttributes=[],
        )

    @staticmethod
    def _records(answer: dict) -> list[FaceRecord]:
        records = []
        for face_record in answer.get("FaceRecords", []):
            face = face_record["Face"]
            box = face.get("BoundingBox", {})
            records.append(
                FaceRecord(
                    box=(
                        box.get("Left", 0.0),
                        box.get("Top", 0.0),
                        box.get("Width", 0.0),
                        box.get("Height", 0.0),
                    ),
                    score=float(face.get("Confidence", 0.0)),
                    external_id=face["FaceId"],
                )
            )
        return records

    def read_text(self, image: Image.Image, size: tuple[int, int]) -> list[OcrRead]:
        """The text lines DetectText finds in the photo (the bib step's reads), boxes in pixels
        of ``size`` (the original's width and height), confidence 0-1. One billed call, through
        the limiter like every other; FacesRefused for an image it cannot be sent."""
        answer = self._call("detect_text", Image={"Bytes": image_to_send(image)})
        width, height = size
        reads = []
        for detection in answer.get("TextDetections", []):
            if detection.get("Type") != "LINE":
                continue  # its words are in the line
            box = detection.get("Geometry", {}).get("BoundingBox", {})
            left, top = box.get("Left", 0.0) * width, box.get("Top", 0.0) * height
            right = left + box.get("Width", 0.0) * width
            bottom = top + box.get("Height", 0.0) * height
            reads.append(
                OcrRead(
                    text=str(detection.get("DetectedText", "")),
                    box=(left, top, right, bottom),
                    confidence=float(detection.get("Confidence", 0.0)) / 100,
                )
            )
        return reads

    def index_photo(self, photo_id: int, image: Image.Image) -> list[FaceRecord]:
        return self.index_photo_reporting(photo_id, image)[0]

    def index_photo_reporting(
        self, photo_id: int, image: Image.Image
    ) -> tuple[list[FaceRecord], str | None]:
        answer = self._index_answer(image, str(photo_id), MAX_FACES_PER_PHOTO)
        return self._records(answer), _left_out(answer)

    def index_selfie(
        self, user_id: int, image: Image.Image, *, allow_several: bool = True
    ) -> FaceRecord | None:
        # MaxFaces=1 keeps the largest face, which is what a selfie means; the others come back
        # as UnindexedFaces with the reason EXCEEDS_MAX_FACES.
        answer = self._index_answer(image, f"{SELFIE_PREFIX}{user_id}", 1)
        records = self._records(answer)
        others = [
            face.get("FaceDetail", {}).get("BoundingBox", {})
            for face in answer.get("UnindexedFaces", [])
            if "EXCEEDS_MAX_FACES" in face.get("Reasons", [])
        ]
        areas = [box_area(record) for record in records]
        areas += [box.get("Width", 0.0) * box.get("Height", 0.0) for box in others]
        if records and not allow_several and not clearly_largest(areas):
            self.forget([record.external_id for record in records if record.external_id])
            raise SeveralFaces(len(areas))
        return records[0] if records else None

    def match_faces(
        self, faces: Sequence[StoredFace], enrolled: Sequence[EnrolledFace]
    ) -> list[FaceMatch]:
        # One SearchFaces per new face, or per enrolled selfie: whichever is fewer calls
        # (rekognition_matching.py); nobody enrolled costs no call.
        return match_photo_faces(
            self._call, self.collection_id, self.match_threshold, faces, enrolled
        )

    def match_enrolled(self, faces: Sequence[StoredFace], enrolled: Vectors) -> list[FaceMatch]:
        # The event's selfies by FaceId, as this worker holds them: no read of every
        # participant for every photo.
        return match_photo_faces_to(
            self._call, self.collection_id, self.match_threshold, faces, enrolled.external
        )

    def match_selfie(self, selfie: EnrolledFace, lookup: FaceLookup) -> list[FaceMatch]:
        if not selfie.external_id:
            return []
        answer = self._call(
            "search_faces",
            CollectionId=self.collection_id,
            FaceId=selfie.external_id,
            FaceMatchThreshold=self.match_threshold,
            MaxFaces=_SEARCH_MAX_FACES,
        )
        similarity = {
            found["Face"]["FaceId"]: float(found["Similarity"])
            for found in answer.get("FaceMatches", [])
            if not found["Face"].get("ExternalImageId", "").startswith(SELFIE_PREFIX)
        }
        stored = lookup.faces_by_external_id(sorted(similarity))
        return [
            FaceMatch(face.id, selfie.user_id, round(similarity[face.external_id], 2))
            for face in stored
        ]

    def forget(self, external_ids: Sequence[str]) -> None:
        for start in range(0, len(external_ids), 4096):
            self._call(
                "delete_faces",
                CollectionId=self.collection_id,
                FaceIds=list(external_ids[start : start + 4096]),
            )

    def discard_photo_faces(self, photo_id: int) -> None:
        """After a crash between IndexFaces and storing its answer: delete what it indexed."""
        wanted = str(photo_id)
        orphans: list[str] = []
        token = None
        while True:
            page = self._call(
                "list_faces",
                CollectionId=self.collection_id,
                MaxResults=4096,
                **({"NextToken": token} if token else {}),
            )
            orphans.extend(
                face["FaceId"]
                for face in page.get("Faces", [])
                if face.get("ExternalImageId") == wanted
            )
            token = page.get("NextToken")
            if not token:
                break
        if orphans:
            log.warning(
                "[FaceRecognition][AWS] photo %s: deleting %s indexed by an interrupted attempt",
                photo_id,
                plural(len(orphans), "face"),
            )
            self.forget(orphans)

    # -- one collection per event ---------------------------------------------------------
    # "Every face" of the module docstring is every face of one event: the default event keeps
    # the configured collection id, any other uses ``<collection id>-<event slug>``. Each is
    # created on first use (_ensure_collection) and deleted with its event's purge (drop_event).

    def collection_for(self, slug: str) -> str:
        base = self.base_collection_id
        return base if slug == DEFAULT_EVENT_SLUG else f"{base}-{slug}"

    def for_event(self, slug: str) -> RekognitionEngine:
        collection_id = self.collection_for(slug)
        if collection_id == self.collection_id:
            return self
        engine = self._event_engines.get(collection_id)
        if engine is None:
            # Same client and limiter: every collection counts against the one account quota.
            engine = RekognitionEngine(
                self.client, self.limiter, collection_id, self.match_threshold
            )
            engine.base_collection_id = self.base_collection_id
            engine.event_slug = slug
            self._event_engines[collection_id] = engine
        return engine

    def drop_event(self, slug: str) -> None:
        collection_id = self.collection_for(slug)
        self._call(
            "delete_collection",
            CollectionId=collection_id,
            tolerate=frozenset({"ResourceNotFoundException"}),
        )
        for engine in (self, self._event_engines.get(collection_id)):
            if engine is not None and engine.collection_id == collection_id:
                engine._collection_ready = False
        log.info("[FaceRecognition][AWS] Deleted collection %s", collection_id)

    def indexed_events(self, slugs: Sequence[str]) -> set[str]:
        existing: set[str] = set()
        page: dict[str, Any] = {}
        while True:
            answer = self._call("list_collections", MaxResults=1000, **page)
            existing.update(answer.get("CollectionIds", []))
            if not answer.get("NextToken"):
                return {slug for slug in slugs if self.collection_for(slug) in existing}
            page = {"NextToken": answer["NextToken"]}

    def check(self) -> str:
        import boto3

        if boto3.session.Session().get_credentials() is None:
            raise ConfigError(
                "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "a profile (AWS_PROFILE) or an instance role"
            )
        self._ensure_collection()
        described = self._call("describe_collection", CollectionId=self.collection_id)
        return (
            f"collection {self.collection_id} reachable ({described.get('FaceCount', 0)} "
            f"faces) at {self.client.meta.endpoint_url}"
        )
