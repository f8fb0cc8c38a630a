"""Rebuild tests/data/ from the photos shipped in the face-recognition 1.3.0 sdist.

The face tests need a few real photos: several of one person and one of another. Rather than
commit unexplained binaries, this script documents (and repeats) exactly how they were made:
download and extract the sdist, then point this script at the extracted directory.

    cd /tmp
    pip download --no-deps --no-binary :all: face-recognition==1.3.0
    tar xzf face_recognition-1.3.0.tar.gz
    python scripts/make_test_data.py /tmp/face_recognition-1.3.0

Each photo gets its EXIF orientation applied, is downscaled so its longest side is at most
MAX_SIDE_PX, and is saved as a baseline JPEG without metadata. See tests/data/ORIGIN.md.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from PIL import Image, ImageOps

MAX_SIDE_PX = 800
JPEG_QUALITY = 90

# Source name in <sdist>/tests/test_images/ -> name in tests/data/. The sdist also holds
# 32bit.png and two obama_partial_face*.jpg crops; the face tests do not need them.
SOURCES = {
    "obama.jpg": "obama_1.jpg",
    "obama2.jpg": "obama_2.jpg",
    "obama3.jpg": "obama_3.jpg",
    "biden.jpg": "biden.jpg",
}

DEFAULT_OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "data"


def downscale(src: Path, dst: Path) -> tuple[int, int]:
    """Write an upright, downscaled, metadata-free JPEG copy of src to dst; return its size."""
    with Image.open(src) as img:
        # Orientation must be baked into the pixels: the copy carries no EXIF, so a viewer (or
        # our own decoder) could not rotate it later.
        upright = ImageOps.exif_transpose(img).convert("RGB")
    upright.thumbnail((MAX_SIDE_PX, MAX_SIDE_PX), Image.Resampling.LANCZOS)
    # No exif/icc arguments: the originals carry long caption and usage-notice blocks that would
    # double the file size; the credit lives in ORIGIN.md instead.
    upright.save(dst, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return upright.size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sdist_dir", type=Path, help="extracted face_recognition-1.3.0 directory")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR, help="output directory")
    args = parser.parse_args(argv)

    images_dir = args.sdist_dir / "tests" / "test_images"
    missing = [name for name in SOURCES if not (images_dir / name).is_file()]
    if missing:
        print(f"not found in {images_dir}: {', '.join(missing)}", file=sys.stderr)
        return 1

    args.out.mkdir(parents=True, exist_ok=True)
    for src_name, dst_name in SOURCES.items():
        src = images_dir / src_name
        dst = args.out / dst_name
        width, height = downscale(src, dst)
        digest = hashlib.sha256(dst.read_bytes()).hexdigest()[:16]
        print(
            f"{src_name:>12} -> {dst_name:<12} {width}x{height} {dst.stat().st_size:>7} B {digest}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
