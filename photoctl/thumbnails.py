"""The grid's thumbnail: a square cut from a photo's preview around the faces found in it.

The gallery shows thumbnails as squares (CSS ``object-fit: cover``); a thumbnail that is that
square already, placed by the faces, shows people where the browser's centre crop showed the
middle of a full-body portrait.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

Box = tuple[float, float, float, float]


def make_thumbnail(preview: Image.Image, longest_px: int, faces: Sequence[Box] = ()) -> Image.Image:
    """The grid's square thumbnail, ``longest_px`` a side (less for a smaller photo), cut from
    the preview around ``thumbnail_square``.

    LANCZOS after a box reduction by the whole factor (``reducing_gap=1.0``): ~3 ms instead of
    ~7 ms of CPU from an 800 px preview, ~10 ms from a 1600 px one (a tenth of a photo's CPU with
    the Rekognition engine; scripts/bench_faces.py), at ~43-47 dB PSNR against plain LANCZOS,
    less than the thumbnail's own JPEG encoding changes it."""
    square = thumbnail_square(preview.size, faces)
    side = min(longest_px, square[2] - square[0])
    return preview.resize((side, side), Image.Resampling.LANCZOS, box=square, reducing_gap=1.0)


def thumbnail_square(size: tuple[int, int], faces: Sequence[Box] = ()) -> tuple[int, int, int, int]:
    """The square (left, top, right, bottom) of a photo its thumbnail shows: as large as the
    photo's short side, centred on the faces (the box around all of them, or the largest face
    alone when they do not fit in one square together). Without faces: the middle of a
    landscape photo; for a portrait one, a third of the way down (heads are near the top).
    ``faces`` are (left, top, width, height) fractions of the photo."""
    width, height = size
    side = min(width, height)
    if faces:
        boxes = [
            (x0 * width, y0 * height, (x0 + w) * width, (y0 + h) * height) for x0, y0, w, h in faces
        ]
        left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
        right, bottom = max(b[2] for b in boxes), max(b[3] for b in boxes)
        if right - left > side or bottom - top > side:
            left, top, right, bottom = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
        x, y = centre_x - side / 2, centre_y - side / 2
    else:
        x, y = (width - side) / 2, (height - side) / 3
    x = min(max(0, round(x)), width - side)
    y = min(max(0, round(y)), height - side)
    return x, y, x + side, y + side
