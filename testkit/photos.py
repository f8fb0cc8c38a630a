"""Generated test photos: JPEGs of any size, with EXIF, and trees of many of them."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

from PIL import Image, ImageDraw

SETTLED_AGE_SECONDS = 60


def jpeg_bytes(
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    *,
    quality: int = 80,
    exif: Image.Exif | None = None,
) -> bytes:
    """A JPEG whose pixels depend on the seed, so different seeds give different content."""
    image = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    draw = ImageDraw.Draw(image)
    step = max(8, size[0] // 16)
    for index in range(0, size[0], step):
        draw.rectangle(
            [index, 0, index + step // 2, size[1]],
            fill=((seed + index) % 256, (seed * 7 + index) % 256, 128),
        )
    draw.text((10, 10), f"photo {seed}", fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, exif=exif or Image.Exif())
    return buffer.getvalue()


def settle(path: Path, age_seconds: float = SETTLED_AGE_SECONDS) -> None:
    """Backdate a file so ingest does not take it for one still being written."""
    past = time.time() - age_seconds
    os.utime(path, (past, past))


def write_photo(
    path: Path, seed: int = 0, size: tuple[int, int] = (640, 480), *, settled: bool = True, **kwargs
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(size, seed, **kwargs))
    if settled:
        settle(path)
    return path


def write_tree(
    root: Path, count: int, *, size: tuple[int, int] = (320, 240), per_folder: int = 25
) -> list[Path]:
    """``count`` distinct settled JPEGs spread over sub-folders of ``root``."""
    return [
        write_photo(
            root / f"set{index // per_folder:03d}" / f"IMG_{index:05d}.jpg", seed=index, size=size
        )
        for index in range(count)
    ]
