"""The `local` engine: dlib on this machine, matching by euclidean distance of embeddings.

Detection runs on the preview scaled to ``faces.detect_px`` (about 1024 px): HOG cost grows with
the pixel count, and faces small enough to be lost at that size are too small to recognise.
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
    largest,
)
from photoctl.faces.local import (
    LocalFaceModel,
    embedding_from_bytes,
    embedding_to_bytes,
    find_model_dir,
)


class LocalEngine(FaceEngine):
    name = "local"

    def __init__(
        self, match_threshold: float = 0.6, detect_px: int = 1024, upsample: int = 0
    ) -> None:
        self.match_threshold = match_threshold
        self.detect_px = detect_px
        self.upsample = upsample

    @classmethod
    def from_settings(
        cls, settings: Settings, database: object = None, holder: str | None = None
    ) -> LocalEngine:
        return cls(
            match_threshold=settings.faces.match_threshold,
            detect_px=settings.faces.detect_px,
            upsample=settings.faces.upsample,
        )

    @property
    def model(self) -> LocalFaceModel:
        return LocalFaceModel.shared()

    def _find(self, image: Image.Image) -> list[FaceRecord]:
        scaled = image.convert("RGB")
        if max(scaled.size) > self.detect_px:
            scaled = scaled.copy()
            scaled.thumbnail((self.detect_px, self.detect_px), Image.Resampling.BILINEAR)
        width, height = scaled.size
        found = self.model.find_faces(np.asarray(scaled), upsample=self.upsample)
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

    def index_photo(self, photo_id: int, image: Image.Image) -> list[FaceRecord]:
        return self._find(image)

    def index_selfie(
        self, user_id: int, image: Image.Image, *, allow_several: bool = True
    ) -> FaceRecord | None:
        found = self._find(image)
        if len(found) > 1 and not allow_several:
            raise SeveralFaces(len(found))
        return largest(found)

    def match_faces(
        self, faces: Sequence[StoredFace], enrolled: Sequence[EnrolledFace]
    ) -> list[FaceMatch]:
        usable = [e for e in enrolled if e.embedding]
        if not usable or not faces:
            return []
        known = np.stack([embedding_from_bytes(e.embedding) for e in usable])
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

    def match_selfie(self, selfie: EnrolledFace, lookup: FaceLookup) -> list[FaceMatch]:
        if not selfie.embedding:
            return []
        faces = [f for f in lookup.all_faces(self.name) if f.embedding]
        if not faces:
            return []
        # One matrix operation over every stored face: ~100k faces is 50 MB and milliseconds.
        matrix = np.frombuffer(b"".join(f.embedding for f in faces), dtype="<f4").reshape(-1, 128)
        distances = np.linalg.norm(matrix - embedding_from_bytes(selfie.embedding), axis=1)
        return [
            FaceMatch(faces[i].id, selfie.user_id, _similarity(float(distances[i])))
            for i in np.flatnonzero(distances <= self.match_threshold)
        ]

    def check(self) -> str:
        model_dir = find_model_dir()
        LocalFaceModel.shared()
        return f"dlib models loaded from {model_dir}"


def _similarity(distance: float) -> float:
    """Distance 0 is 100 %; the match threshold 0.6 is 40 %."""
    return round(max(0.0, 1.0 - distance) * 100, 2)
