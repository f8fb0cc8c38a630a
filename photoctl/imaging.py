"""Decoding photos and writing their thumbnails and previews.

A photo is read once, checked (size, pixel count, decodability) and decoded at reduced size
where the format allows it: JPEG's DCT scaling (``Image.draft``) makes a 24 MP photo cost a
fraction of a full decode, and the preview is all later steps (faces) need. Every Pillow error
becomes a PermanentError naming the file; a missing file is permanent too.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import ExifTags, Image, UnidentifiedImageError

from photoctl.atomic import atomic_write
from photoctl.decode_memory import BYTES_PER_DECODED_PIXEL
from photoctl.decode_memory import (  # app.py's name for it
    return_large_buffers_to_the_system as return_large_buffers_to_the_system,
)
from photoctl.errors import PermanentError, StorageFull

try:  # HEIC support is optional: without pillow-heif those files fail with a clear reason.
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a declared dependency
    pass

# Pillow's own bomb guard is one process-wide number (Image.MAX_IMAGE_PIXELS: 89.5 MP, a warning
# above it, an error above twice it), which refused a 101.8 MP camera's JPEG whatever
# ingest.max_pixels said. Setting it per decode would race between serve's request threads and
# a worker's job threads, as would the warnings filter that made its warning an error
# (warnings.catch_warnings is not thread-safe). So it is switched off here, once, and every
# image is checked against the limit its caller passes (ingest.max_pixels, serve's
# max_decode_pixels) from its header, before a pixel is decoded: _refuse_bomb in _opened.
Image.MAX_IMAGE_PIXELS = None

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
    data = read_source(path, max_bytes=max_bytes, display_name=display_name).data
    return decode_bytes(
        data,
        preview_px=preview_px,
        max_pixels=max_pixels,
        display_name=display_name,
        detail_px=detail_px,
    )


@dataclass(frozen=True)
class SourceFile:
    """A photo file's bytes, with the size and mtime of the very file they were read from."""

    data: bytes
    size_bytes: int
    mtime_ns: int


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symbolic link"),
)


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words, for error reasons ("a FIFO (named pipe)")."""
    for test, name in _FILE_KINDS:
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: Path | str | bytes, *, follow_symlinks: bool = True) -> int:
    """Open a file for reading without ever blocking on it; refuse anything but a regular file.

    A plain ``open`` of a FIFO waits for a writer forever (and a worker's heartbeat would keep
    its lease alive meanwhile); O_NONBLOCK makes that open return at once, and the fstat of
    what was really opened (not a stat of the path, which may be replaced in between) decides.
    Without ``follow_symlinks`` a symbolic link as the last component is refused (ELOOP), so a
    photo replaced by a link to another file is not read through it. Raises OSError; a
    non-regular file raises OSError(EINVAL) whose strerror names its kind.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP and not follow_symlinks and os.path.islink(path):
            raise OSError(errno.ELOOP, "a symbolic link, not a regular file") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{file_kind(info.st_mode)}, not a regular file")
    # Reads of a regular file never block anyway; clear the flag for whoever reads it next.
    os.set_blocking(fd, True)
    return fd


def read_source(
    path: Path | str | bytes,
    *,
    max_bytes: int,
    display_name: str,
    follow_symlinks: bool = True,
) -> SourceFile:
    """Read a whole photo file, refusing what is not a regular file. Raises PermanentError."""
    try:
        fd = open_regular(path, follow_symlinks=follow_symlinks)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if info.st_size > max_bytes:
                raise PermanentError(
                    f"{display_name}: file too large ({info.st_size:,} bytes, limit {max_bytes:,})"
                )
            data = handle.read(max_bytes + 1)
            after = os.fstat(handle.fileno())
    except FileNotFoundError:
        raise PermanentError(f"{display_name}: file is gone") from None
    except IsADirectoryError:
        raise PermanentError(f"{display_name}: is a directory, not an image") from None
    except PermissionError:
        raise PermanentError(f"{display_name}: permission denied") from None
    except OSError as error:
        if error.errno in (errno.EINVAL, errno.ELOOP) and error.strerror:
            raise PermanentError(f"{display_name}: is {error.strerror}") from None
        raise PermanentError(f"{display_name}: cannot read: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise PermanentError(f"{display_name}: file too large (grew past {max_bytes:,} bytes)")
    return SourceFile(data=data, size_bytes=after.st_size, mtime_ns=after.st_mtime_ns)


@contextlib.contextmanager
def _decoding(display_name: str) -> Iterator[None]:
    """Pillow's many ways of saying "bad input" as one PermanentError that names the file.

    One place for both the header check and the decode, so they cannot disagree on what is
    refused. Pillow's own bomb errors cannot come (its limit is off, see MAX_IMAGE_PIXELS above)
    unless something else in the process turns it back on; they are refused all the same.
    """
    try:
        yield
    except PermanentError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise PermanentError(f"{display_name}: decompression bomb refused ({error})") from None
    except UnidentifiedImageError:
        raise PermanentError(f"{display_name}: not an image Pillow can decode") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise PermanentError(f"{display_name}: corrupt or truncated image ({error})") from None


def _refuse_bomb(width: int, height: int, max_pixels: int, display_name: str) -> None:
    if width * height > max_pixels:
        raise PermanentError(
            f"{display_name}: decompression bomb refused "
            f"({width}x{height} pixels, limit {max_pixels:,})"
        )


def _opened(source: Path | bytes | BinaryIO, max_pixels: int, display_name: str) -> Image.Image:
    """An image opened (its header read, no pixel decoded) and checked against ``max_pixels``.

    Call inside ``_decoding``. The only way photoctl opens an image: Pillow's own limit is off
    (see MAX_IMAGE_PIXELS above), so this check is the guard.
    """
    image = Image.open(source)
    try:
        _refuse_bomb(*image.size, max_pixels, display_name)
    except PermanentError:
        image.close()
        raise
    return image


def check_decode_size(
    path: Path | bytes,
    *,
    preview_px: int,
    max_pixels: int,
    max_decoded_pixels: int,
    display_name: str,
    detail_px: int = 0,
) -> int:
    """Refuse, from the header alone, an image whose decode would take too much memory; return
    the memory its decode will take (estimated bytes, for decode_memory.DecodeBudget).

    ``decode_photo`` guards the original's pixel count (``max_pixels``, as in the workers), but
    a format without reduced decoding (PNG, HEIC, WebP) is decoded at full size: a 10 KB PNG of
    9,400x9,400 is 265 MB of RGB. A process that decodes next to other requests (serve) also
    bounds the size the decode really has, after JPEG's DCT scaling. Raises PermanentError.
    """
    with _decoding(display_name):
        with _opened(path, max_pixels, display_name) as image:
            width, height = image.size
            # JPEG: the scale it will really decode at (the engine may want detail).
            image.draft("RGB", draft_box(image.size, preview_px, detail_px))
            decoded_width, decoded_height = image.size
    if decoded_width * decoded_height > max_decoded_pixels:
        raise PermanentError(
            f"{display_name}: image too large to decode here ({width}x{height} pixels, "
            f"decoded at {decoded_width}x{decoded_height}; limit {max_decoded_pixels:,} pixels)"
        )
    return decoded_width * decoded_height * BYTES_PER_DECODED_PIXEL


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


def _shrunk(image: Image.Image, longest_px: int) -> Image.Image:
    """A new image with its longest side at most ``longest_px``, as ``Image.thumbnail`` sizes it,
    leaving ``image`` as it is.

    HAMMING, not LANCZOS: from a 24 MP JPEG's 3000x2000 draft to 1600 px it costs ~37 ms instead
    of ~85 ms of CPU (LANCZOS was a fifth of a photo's processing with the local engine;
    scripts/bench_faces.py), and differs from LANCZOS by ~0.6/255 on average (PSNR ~46 dB), less
    than re-encoding the preview as JPEG does.
    """
    width, height = image.size
    if width <= longest_px and height <= longest_px:
        return image.copy()
    aspect = width / height
    if aspect >= 1:
        size = (longest_px, max(1, round(longest_px / aspect)))
    else:
        size = (max(1, round(longest_px * aspect)), longest_px)
    return image.resize(size, Image.Resampling.HAMMING, reducing_gap=2.0)


def decode_bytes(
    data: bytes, *, preview_px: int, max_pixels: int, display_name: str, detail_px: int = 0
) -> DecodedPhoto:
    if not data:
        raise PermanentError(f"{display_name}: empty file")
    with _decoding(display_name):
        image = _opened(io.BytesIO(data), max_pixels, display_name)
        width, height = image.size
        exif = image.getexif()
        swaps_axes = _orientation_swaps_axes(exif)
        # Decode at the smallest DCT scale that still covers the preview (JPEG only).
        box = draft_box(image.size, preview_px, detail_px)
        image.draft("RGB", box)
        image.load()
        image = _upright(_rgb_at_size(image, box), exif)
        detail = None
        if detail_px > 0:
            # The preview is resized out of the detail decode, never from a full-size copy of
            # it: a copy doubled a large decode's memory (a 9,400 px selfie took serve to 958 MB).
            detail, image = image, _shrunk(image, preview_px)
        else:
            image = _shrunk(image, preview_px)
    if swaps_axes:
        width, height = height, width
    return DecodedPhoto(
        image=image,
        width=width,
        height=height,
        taken_at=_taken_at(exif),
        camera=_camera(exif),
        detail=detail,
    )


# Rows converted and reduced at a time: full-size work is done on bands of about this size.
_BAND_BYTES = 16 * 1024 * 1024

# Modes Image.reduce averages channel by channel without a full-size copy of its own (RGBA and
# LA go through a premultiplied copy; averaging P's palette indices or 1's bits is wrong).
_AVERAGED_MODES = frozenset({"RGB", "L", "CMYK", "YCbCr", "I", "F"})

# EXIF orientation -> the transposition that makes the image upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _rgb_at_size(image: Image.Image, box: tuple[int, int]) -> Image.Image:
    """The decode as RGB, reduced by the largest whole factor that keeps both sides >= ``box``:
    what JPEG's draft does, for the formats without it (PNG, WebP, TIFF, HEIC).

    Converted and reduced band by band, so the only full-size image is the decode itself: a
    7000x7000 PNG selfie (196 MB decoded) went whole to the face engine, which needs 2400 px,
    and one with transparency took three full-size copies to flatten (9 bytes a pixel).
    """
    factor = min(image.width // box[0], image.height // box[1])
    if factor < 2:
        return image if image.mode == "RGB" else _to_rgb(image)
    if image.mode in _AVERAGED_MODES:
        reduced = image.reduce(factor)
        return reduced if reduced.mode == "RGB" else _to_rgb(reduced)
    width, height = image.size
    reduced = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    rows = factor * max(1, _BAND_BYTES // (4 * width * factor))
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(height, top + rows)))
        band = band if band.mode == "RGB" else _to_rgb(band)
        reduced.paste(band.reduce(factor), (0, top // factor))
    return reduced


def _upright(image: Image.Image, exif: Image.Exif) -> Image.Image:
    transposition = _UPRIGHT.get(exif.get(ExifTags.Base.Orientation, 1))
    return image.transpose(transposition) if transposition is not None else image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # convert() copies even an RGBA image: one full-size copy fewer.
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
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
    store_jpeg(image, atomic_write(destination), str(destination.parent), quality)


def store_jpeg(
    image: Image.Image,
    opened: contextlib.AbstractContextManager[BinaryIO],
    where: str,
    quality: int,
) -> None:
    """Encode into a stream a store opened (``Store.writer``): whole at its key, or not at all."""
    try:
        with opened as stream:
            image.save(stream, "JPEG", quality=quality, optimize=False)
    except OSError as error:
        _raise_if_full(error, where)
        raise


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def _raise_if_full(error: OSError, where: str) -> None:
    """A full disk or quota is the storage's state, not the photo's: say so with its own kind."""
    if error.errno in _FULL_ERRNOS:
        raise StorageFull(f"storage full: cannot write {where}: {error.strerror}") from error
