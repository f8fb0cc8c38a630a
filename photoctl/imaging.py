"""Decoding photos and writing their thumbnails and previews.

A photo is read once, checked (size, pixel count, decodability) and decoded at reduced size
where the format allows it: JPEG's DCT scaling (``Image.draft``) makes a 24 MP photo cost a
fraction of a full decode, and the preview is all later steps (faces) need. Every Pillow error
becomes a PermanentError naming the file; a missing file is permanent too.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from photoctl.errors import PermanentError

try:  # HEIC support is optional: without pillow-heif those files fail with a clear reason.
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a declared dependency
    pillow_heif = None

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".heic", ".heif", ".gif"}
)

# Leading bytes of the formats above; lets ingest refuse "text named .jpg" without decoding.
_SIGNATURES = (
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",
    b"MM\x00*",
    b"II+\x00",
    b"MM\x00+",
)


def looks_like_image(head: bytes) -> bool:
    """True if the first bytes of a file are those of a supported image format."""
    if head.startswith(_SIGNATURES):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    # ISO base media (HEIC/HEIF/AVIF): "ftyp" box at offset 4.
    return head[4:8] == b"ftyp"


@dataclass(frozen=True)
class DecodedPhoto:
    """A photo decoded at preview size, upright, with what its EXIF said."""

    image: Image.Image  # RGB, longest side <= preview size
    width: int  # of the original, after orientation
    height: int
    taken_at: str | None
    camera: str | None
    # The photo as decoded (JPEG: at the DCT scale chosen by draft), upright, before the resize
    # to the preview: the local face engine crops small faces from these real pixels instead of
    # the preview's. Longest side >= the `detail_px` asked for (or the original's, if smaller).
    detail: Image.Image | None = None

    @property
    def sharpest(self) -> Image.Image:
        """The most detailed image decoded: `detail` if kept, else the preview."""
        return self.detail if self.detail is not None else self.image


def decode_photo(
    path: Path | bytes,
    *,
    preview_px: int,
    max_bytes: int,
    max_pixels: int,
    display_name: str,
    detail_px: int = 0,
) -> DecodedPhoto:
    """Read, check and decode one photo. Raises PermanentError with the reason.

    With `detail_px`, the photo is decoded with its longest side at least that large (or whole)
    and kept as `DecodedPhoto.detail` beside the preview.
    """
    try:
        size = os.stat(path).st_size
        if size > max_bytes:
            raise PermanentError(
                f"{display_name}: file too large ({size:,} bytes, limit {max_bytes:,})"
            )
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise PermanentError(f"{display_name}: file is gone") from None
    except IsADirectoryError:
        raise PermanentError(f"{display_name}: is a directory, not an image") from None
    except PermissionError:
        raise PermanentError(f"{display_name}: permission denied") from None
    except OSError as error:
        raise PermanentError(f"{display_name}: cannot read: {error.strerror or error}") from None
    return decode_bytes(
        data,
        preview_px=preview_px,
        max_pixels=max_pixels,
        display_name=display_name,
        detail_px=detail_px,
    )


def draft_box(size: tuple[int, int], preview_px: int, detail_px: int = 0) -> tuple[int, int]:
    """The size to ask `Image.draft` for: a preview_px square, and a longest side >= detail_px.

    draft picks the largest DCT reduction that keeps both sides at least the size asked for,
    so the detail request keeps the photo's aspect ratio: asking (2400, 2400) of a 6000x4000
    photo would force a full decode (4000 // 2400 = 1) where 3000x2000 is enough.
    """
    width, height = size
    box_w, box_h = preview_px, preview_px
    if detail_px > 0 and width > 0 and height > 0:
        long_side = max(width, height)
        box_w = max(box_w, -(-detail_px * width // long_side))
        box_h = max(box_h, -(-detail_px * height // long_side))
    return box_w, box_h


def decode_bytes(
    data: bytes, *, preview_px: int, max_pixels: int, display_name: str, detail_px: int = 0
) -> DecodedPhoto:
    if not data:
        raise PermanentError(f"{display_name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise PermanentError(
                    f"{display_name}: decompression bomb refused "
                    f"({width}x{height} pixels, limit {max_pixels:,})"
                )
            exif = image.getexif()
            # Decode at the smallest DCT scale that still covers the preview (JPEG only).
            image.draft("RGB", draft_box(image.size, preview_px, detail_px))
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode != "RGB":
                image = _to_rgb(image)
            detail = None
            if detail_px > 0:
                detail = image
                image = image.copy()
            # HAMMING, not LANCZOS: from a 24 MP JPEG's 3000x2000 draft to 1600 px it costs
            # ~37 ms instead of ~85 ms of CPU (LANCZOS was a fifth of a photo's processing with
            # the local engine; scripts/bench_faces.py), and differs from LANCZOS by ~0.6/255 on
            # average (PSNR ~46 dB), less than re-encoding the preview as JPEG does.
            image.thumbnail((preview_px, preview_px), Image.Resampling.HAMMING)
    except PermanentError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise PermanentError(f"{display_name}: decompression bomb refused ({error})") from None
    except UnidentifiedImageError:
        raise PermanentError(f"{display_name}: not an image Pillow can decode") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise PermanentError(f"{display_name}: corrupt or truncated image ({error})") from None
    if _orientation_swaps_axes(exif):
        width, height = height, width
    return DecodedPhoto(
        image=image,
        width=width,
        height=height,
        taken_at=_taken_at(exif),
        camera=_camera(exif),
        detail=detail,
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda value: value / 256).convert("L")
    return image.convert("RGB")


def _orientation_swaps_axes(exif: Image.Exif) -> bool:
    return exif.get(ExifTags.Base.Orientation) in (5, 6, 7, 8)


def _taken_at(exif: Image.Exif) -> str | None:
    detail = exif.get_ifd(ExifTags.IFD.Exif) if exif else {}
    raw = detail.get(ExifTags.Base.DateTimeOriginal) or exif.get(ExifTags.Base.DateTime)
    if not isinstance(raw, str) or len(raw) < 19:
        return None
    # EXIF writes "2024:06:01 14:03:22"; store ISO 8601 without a zone (EXIF has none).
    text = raw.strip("\x00 ")[:19]
    return f"{text[0:4]}-{text[5:7]}-{text[8:10]}T{text[11:19]}"


def _camera(exif: Image.Exif) -> str | None:
    make = str(exif.get(ExifTags.Base.Make, "")).strip("\x00 ")
    model = str(exif.get(ExifTags.Base.Model, "")).strip("\x00 ")
    if model.lower().startswith(make.lower()):
        make = ""
    return " ".join(part for part in (make, model) if part) or None


def write_jpeg(image: Image.Image, destination: Path, quality: int) -> None:
    """Write atomically, so a crash never leaves a half-written file that looks done."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            image.save(stream, "JPEG", quality=quality, optimize=False)
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def make_thumbnail(preview: Image.Image, longest_px: int) -> Image.Image:
    thumb = preview.copy()
    thumb.thumbnail((longest_px, longest_px), Image.Resampling.LANCZOS)
    return thumb
