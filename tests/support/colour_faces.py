"""Photos of colour-square "faces" that the fake Rekognition endpoint finds (testkit)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from testkit.fake_rekognition import make_face_image
from testkit.photos import settle


def face_photo(
    path: Path, colours: Sequence[tuple[int, int, int]], size: tuple[int, int] = (800, 600)
) -> Path:
    """A settled JPEG at ``path`` with one face per colour (ingest takes it at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(make_face_image(list(colours), size))
    settle(path)
    return path
