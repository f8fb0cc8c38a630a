"""The `local` engine: faces found and embedded on this machine, matched by euclidean distance.

With the default detector (libfacedetection) the photo is decoded large enough that its smallest
wanted face (``faces.min_face_percent`` of the longest side) is EMBED_FACE_PX wide, faces are
searched on a copy scaled so that face is DETECT_FACE_PX wide, and each face found is embedded
by dlib from a crop of the large decode. The `hog` detector is the engine as it was before: dlib's
HOG on the preview scaled to ``faces.detect_px``, which misses faces under ~8 % of the width.
Sizes were chosen with scripts/bench_recall.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from photoctl.config import Settings
from photoctl.errors import SeveralFaces
from photoctl.faces.base import (
    EnrolledFace,
    FaceEngine,
    FaceLookup,
    FaceMatch,
    FaceRecord,
    StoredFace,
    box_area,
    clearly_largest,
    largest,
)
from photoctl.faces.local_model import (
    LIBFACE_CANDIDATE_SCORE,
    LIBFACE_MIN_SCORE,
    Box,
    FoundFace,
    LocalFaceModel,
    embedding_from_bytes,
    embedding_to_bytes,
    find_model_dir,
    libface_detect,
)
from photoctl.faces.vector_cache import Vectors

# libfacedetection finds faces from ~10 px and surely from ~18. On the 960 px copy this gives
# for 2 %, bench_recall found every 2 % face (19 px); 1.5 % faces (14 px) often scored 20-40
# and are recovered by the re-detection below. The copy's cost grows with its pixels: 1280 px found
# every 1.5 % face directly but cost twice as much.
DETECT_FACE_PX = 19.2
# dlib's chip is 150 px; from a 45-60 px face it still lands within ~0.2 of the same person's
# large face (bench_recall). 2 % -> a decode of >= 2400 px, i.e. 3000 px for a 24 MP JPEG, the
# same DCT scale the 1600 px preview already needed: no extra decode cost.
EMBED_FACE_PX = 48.0
MIN_DETECT_PX = 320
# An unsure candidate is detected again on a crop of the large decode where it is this wide.
VERIFY_FACE_PX = 48


def detect_px_for(min_face_percent: float) -> int:
    """Longest side of the copy libfacedetection searches, for the smallest wanted face."""
    return max(MIN_DETECT_PX, round(DETECT_FACE_PX * 100 / min_face_percent))


def detail_px_for(min_face_percent: float) -> int:
    """Longest side the photo must be decoded at for its smallest wanted face to be embedded."""
    return round(EMBED_FACE_PX * 100 / min_face_percent)


def explain_sizes(detector: str, min_face_percent: float, detect_px: int) -> str:
    """One line for `photoctl config show`: what faces.min_face_percent does with these values."""
    if detector == "hog":
        return (
            f"detector hog ignores it: HOG searches a {detect_px} px copy and misses faces under "
            f"~80 px there, i.e. under {80 * 100 / detect_px:.1f} % of the longest side"
        )
    detail = detail_px_for(min_face_percent)
    # JPEG's DCT scaling divides by 1, 2, 4 or 8: the largest that keeps >= detail px.
    reduction = max((r for r in (1, 2, 4, 8) if 6000 // r >= detail), default=1)
    return (
        f"faces from {min_face_percent:g} % of the longest side: libfacedetection searches a "
        f"{detect_px_for(min_face_percent)} px copy (that face is {DETECT_FACE_PX:g} px there) "
        f"and dlib embeds each face from the photo decoded at >= {detail} px (that face is "
        f">= {EMBED_FACE_PX:g} px; a 6000 px wide JPEG is decoded at {6000 // reduction} px)"
    )


class LocalEngine(FaceEngine):
    name = "local"

    def __init__(
        self,
        match_threshold: float = 0.6,
        detect_px: int = 1024,
        upsample: int = 0,
        *,
        detector: str = "libfacedetection",
        min_face_percent: float = 2.0,
    ) -> None:
        self.match_threshold = match_threshold
        self.detect_px = detect_px
        self.upsample = upsample
        self.detector = detector
        self.min_face_percent = min_face_percent
        if detector == "libfacedetection":
            self.libface_px = detect_px_for(min_face_percent)
            self.detail_px = detail_px_for(min_face_percent)
        else:
            self.libface_px = 0
            self.detail_px = 0  # HOG searches the preview: a larger decode would be wasted

    @classmethod
    def from_settings(
        cls, settings: Settings, database: object = None, holder: str | None = None
    ) -> LocalEngine:
        return cls(
            match_threshold=settings.faces.match_threshold,
            detect_px=settings.faces.detect_px,
            upsample=settings.faces.upsample,
            detector=settings.faces.detector,
            min_face_percent=settings.faces.min_face_percent,
        )

    @property
    def model(self) -> LocalFaceModel:
        return LocalFaceModel.shared()

    def find(self, image: Image.Image) -> tuple[tuple[int, int], list[FoundFace]]:
        """The faces of an image: (size of the image their boxes refer to, faces)."""
        if image.mode != "RGB":  # convert() would copy a 3000x2000 decode even when RGB
            image = image.convert("RGB")
        if self.detector == "hog":
            if max(image.size) > self.detect_px:
                image = image.copy()
                image.thumbnail((self.detect_px, self.detect_px), Image.Resampling.BILINEAR)
            return image.size, self.model.find_faces(np.asarray(image), upsample=self.upsample)
        boxes, scores = self.detect(image)
        return image.size, self.model.embed_boxes(image, boxes, scores)

    def detect(self, image: Image.Image) -> tuple[list[Box], list[float]]:
        """libfacedetection's faces in an RGB image: dlib-style boxes in its pixels, scores."""
        width, height = image.size
        scale = min(1.0, self.libface_px / max(width, height))
        small = image
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            # reducing_gap 1: box-reduce by the integer part of the factor first, then a cheap
            # bilinear pass: 18 ms from 3000x2000 to 960 px instead of 33 (2.0) or 44 (none).
            small = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0)
        sx, sy = width / small.width, height / small.height
        boxes: list[Box] = []
        scores: list[float] = []
        unsure = []
        for (left, top, right, bottom), score in libface_detect(
            np.asarray(small), min_score=LIBFACE_CANDIDATE_SCORE
        ):
            box = (round(left * sx), round(top * sy), round(right * sx), round(bottom * sy))
            if score >= LIBFACE_MIN_SCORE:
                boxes.append(box)
                scores.append(score)
            else:
                unsure.append(box)
        for box in unsure:
            if any(_centre_inside(box, kept) for kept in boxes):
                continue  # a second, weaker box on a face already found
            confirmed = _verify(image, box)
            if confirmed is not None and not any(
                _centre_inside(confirmed[0], kept) for kept in boxes
            ):
                boxes.append(confirmed[0])
                scores.append(confirmed[1])
        return boxes, scores

    def _find(self, image: Image.Image) -> list[FaceRecord]:
        (width, height), found = self.find(image)
        return [
            FaceRecord(
                box=(left / width, top / height, (right - left) / width, (bottom - top) / height),
                score=face.score,
                embedding=embedding_to_bytes(face.embedding),
            )
            for face in found
            for left, top, right, bottom in [face.box]
        ]

    def warm_up(self) -> None:
        LocalFaceModel.shared()
        if self.detector == "libfacedetection":
            # Loads the extension (and OpenMP) before the first job: one tiny detection.
            libface_detect(np.zeros((32, 32, 3), dtype=np.uint8))

    def index_photo(self, photo_id: int, image: Image.Image) -> list[FaceRecord]:
        return self._find(image)

    def index_selfie(
        self, user_id: int, image: Image.Image, *, allow_several: bool = True
    ) -> FaceRecord | None:
        found = self._find(image)
        if not allow_several and not clearly_largest([box_area(face) for face in found]):
            raise SeveralFaces(len(found))
        return largest(found)

    def match_faces(
        self, faces: Sequence[StoredFace], enrolled: Sequence[EnrolledFace]
    ) -> list[FaceMatch]:
        usable = [e for e in enrolled if e.embedding]
        if not usable or not faces:
            return []
        known = np.stack([embedding_from_bytes(e.embedding) for e in usable if e.embedding])
        matches = []
        for face in faces:
            if not face.embedding:
                continue
            distances = np.linalg.norm(known - embedding_from_bytes(face.embedding), axis=1)
            best = int(np.argmin(distances))
            if distances[best] <= self.match_threshold:
                matches.append(
                    FaceMatch(face.id, usable[best].user_id, _similarity(float(distances[best])))
                )
        return matches

    def match_enrolled(self, faces: Sequence[StoredFace], enrolled: Vectors) -> list[FaceMatch]:
        # The same answer as match_faces (tests/test_vector_cache.py compares them), from the
        # selfie matrix this worker holds instead of every selfie read for every photo.
        usable = [face for face in faces if face.embedding]
        if not usable or not len(enrolled):
            return []
        queries = np.stack([embedding_from_bytes(f.embedding) for f in usable if f.embedding])
        return [
            FaceMatch(face.id, hit[0], _similarity(hit[1]))
            for face, hit in zip(
                usable, enrolled.nearest(queries, self.match_threshold), strict=True
            )
            if hit is not None
        ]

    def match_selfie(self, selfie: EnrolledFace, lookup: FaceLookup) -> list[FaceMatch]:
        if not selfie.embedding:
            return []
        # The event's faces as this process holds them (faces/vector_cache.py): a matrix product
        # over a million faces takes tens of milliseconds; reading them took seconds.
        vectors = lookup.face_vectors(self.name)
        query = embedding_from_bytes(selfie.embedding)
        return [
            FaceMatch(face_id, selfie.user_id, _similarity(distance))
            for face_id, _, distance in vectors.within(query, self.match_threshold)
        ]

    def check(self) -> str:
        model_dir = find_model_dir()
        LocalFaceModel.shared()
        if self.detector == "hog":
            return f"dlib models loaded from {model_dir}; detector hog at {self.detect_px} px"
        libface_detect(np.zeros((32, 32, 3), dtype=np.uint8))
        return (
            f"dlib models loaded from {model_dir}; detector libfacedetection, faces from "
            f"{self.min_face_percent:g} % of the longest side"
        )


def _centre_inside(box: Box, other: Box) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return other[0] <= cx <= other[2] and other[1] <= cy <= other[3]


def _verify(image: Image.Image, box: Box) -> tuple[Box, float] | None:
    """Detect again around an unsure candidate, on the large decode scaled so the face is
    VERIFY_FACE_PX wide; the confirmed box (in `image` pixels) and score, or None."""
    left, top, right, bottom = box
    side = max(1, right - left)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    half = 1.5 * side
    crop = image.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
    scale = VERIFY_FACE_PX / side
    size = max(8, round(crop.width * scale))
    crop = crop.resize((size, size), Image.Resampling.BILINEAR)
    origin_x, origin_y = round(cx - half), round(cy - half)
    best = None
    for (l2, t2, r2, b2), score in libface_detect(np.asarray(crop)):
        # The same face: its centre within half a face of the candidate's, about its size.
        dx = (l2 + r2) / 2 / scale - half
        dy = (t2 + b2) / 2 / scale - half
        if abs(dx) > side / 2 or abs(dy) > side / 2 or not 0.5 <= (r2 - l2) / scale / side <= 2:
            continue
        if best is None or score > best[1]:
            found = (
                origin_x + round(l2 / scale),
                origin_y + round(t2 / scale),
                origin_x + round(r2 / scale),
                origin_y + round(b2 / scale),
            )
            best = (found, score)
    return best


def _similarity(distance: float) -> float:
    """Distance 0 is 100 %; the match threshold 0.6 is 40 %."""
    return round(max(0.0, 1.0 - distance) * 100, 2)
