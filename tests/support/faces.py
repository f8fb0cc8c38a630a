"""Group photos built from the real faces of tests/data, for the small-face tests.

Each face is cut around the box dlib finds in its source photo, optionally mirrored, rotated and
darkened, scaled so the face is a given percentage of the photo's width, and pasted on a busy
background. The photos are made at test time and never committed (tests/data/ORIGIN.md).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

DATA = Path(__file__).resolve().parent.parent / "data"
PERSON = {
    "obama_1.jpg": "obama",
    "obama_2.jpg": "obama",
    "obama_3.jpg": "obama",
    "biden.jpg": "biden",
}


@dataclass(frozen=True)
class Face:
    source: str  # a file of tests/data
    percent: float  # face width, % of the photo's width
    mirror: bool = False
    angle: float = 0.0
    brightness: float = 1.0

    @property
    def person(self) -> str:
        return PERSON[self.source]


@functools.cache
def source_box(name: str) -> tuple[int, int, int, int]:
    from photoctl.faces.local_model import LocalFaceModel

    with Image.open(DATA / name) as opened:
        found = LocalFaceModel.shared().find_faces(np.asarray(opened.convert("RGB")))
    assert len(found) == 1, f"{name}: dlib should find exactly one face"
    return found[0].box


def face_patch(face: Face, face_px: int) -> Image.Image:
    """A square patch 2.4 face widths wide, centred on the altered face."""
    with Image.open(DATA / face.source) as opened:
        source = opened.convert("RGB")
    left, top, right, bottom = source_box(face.source)
    side = right - left
    half = round(side * 1.7)
    mean = tuple(int(v) for v in np.asarray(source).reshape(-1, 3).mean(axis=0))
    canvas = Image.new("RGB", (2 * half, 2 * half), mean)
    canvas.paste(source, (round(half - (left + right) / 2), round(half - (top + bottom) / 2)))
    if face.mirror:
        canvas = ImageOps.mirror(canvas)
    if face.angle:
        canvas = canvas.rotate(face.angle, Image.Resampling.BICUBIC, fillcolor=mean)
    if face.brightness != 1.0:
        canvas = ImageEnhance.Brightness(canvas).enhance(face.brightness)
    keep = round(side * 1.2)
    patch = canvas.crop((half - keep, half - keep, half + keep, half + keep))
    size = round(patch.width * face_px / side)
    return patch.resize((size, size), Image.Resampling.LANCZOS)


def group_photo(
    path: Path, faces: list[Face], size: tuple[int, int] = (6000, 4000), seed: int = 0
) -> list[tuple[float, float, str]]:
    """Write the photo; returns each face's centre (fractions of width, height) and person."""
    rng = random.Random(seed)
    width, height = size
    image = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    draw = ImageDraw.Draw(image)
    for _ in range(30):
        x, y = rng.randrange(width), rng.randrange(height)
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.rectangle([x, y, x + rng.randint(50, 900), y + rng.randint(50, 900)], fill=colour)
    columns = -(-len(faces) // 2)
    cell_w, cell_h = width // columns, height // 2
    centres = []
    for index, face in enumerate(faces):
        patch = face_patch(face, round(face.percent / 100 * width))
        column, row = index % columns, index // columns
        x = column * cell_w + (cell_w - patch.width) // 2
        y = row * cell_h + (cell_h - patch.height) // 2
        image.paste(patch, (x, y))
        centres.append(
            ((x + patch.width / 2) / width, (y + patch.height / 2) / height, face.person)
        )
    image.save(path, "JPEG", quality=90)
    return centres


def selfie_of(path: Path, sources: list[str], face_px: list[int]) -> Path:
    """A selfie-like JPEG: the faces of these tests/data files side by side, each face_px wide
    (by dlib's box in its source), the first at the bottom left, the others further up."""
    patches = [
        face_patch(Face(source, 0.0), px) for source, px in zip(sources, face_px, strict=True)
    ]
    width = sum(patch.width for patch in patches) + 20 * (len(patches) + 1)
    height = max(patch.height for patch in patches) + 200
    image = Image.new("RGB", (width, height), (120, 130, 140))
    x = 20
    for index, patch in enumerate(patches):
        image.paste(patch, (x, height - patch.height - 20 if index == 0 else 20))
        x += patch.width + 20
    image.save(path, "JPEG", quality=90)
    return path
