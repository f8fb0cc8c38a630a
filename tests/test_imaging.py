"""Decoding: reduced-size JPEG decode, orientation, metadata, guards."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from photoctl.errors import PermanentError
from photoctl.imaging import decode_bytes, looks_like_image
from testkit.photos import jpeg_bytes


def decode(data: bytes, preview_px: int = 1600, max_pixels: int = 200_000_000):
    return decode_bytes(data, preview_px=preview_px, max_pixels=max_pixels, display_name="x.jpg")


def test_large_jpeg_is_decoded_at_reduced_size(monkeypatch: pytest.MonkeyPatch) -> None:
    data = jpeg_bytes((6000, 4000), seed=1)
    loaded_sizes = []
    real_load = Image.Image.load

    def spying_load(self):
        loaded_sizes.append(self.size)
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", spying_load)
    decoded = decode(data)
    assert (decoded.width, decoded.height) == (6000, 4000)
    assert max(decoded.image.size) == 1600
    # DCT scaling: 24 MP decoded at 1/2 (3000x2000), never at full size.
    assert max(size[0] for size in loaded_sizes) <= 3000


def test_exif_orientation_is_applied_and_reported_dimensions_follow_it() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS R6"
    exif.get_ifd(0x8769)[0x9003] = "2026:05:01 10:20:30"
    decoded = decode(jpeg_bytes((800, 600), seed=2, exif=exif))
    assert (decoded.width, decoded.height) == (600, 800)
    assert decoded.image.size == (600, 800)
    assert decoded.camera == "Canon EOS R6"
    assert decoded.taken_at == "2026-05-01T10:20:30"


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF", "GIF"])
def test_other_formats_decode_to_rgb(fmt: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGBA" if fmt == "PNG" else "RGB", (300, 200), (10, 20, 30)).save(buffer, fmt)
    assert looks_like_image(buffer.getvalue()[:16])
    decoded = decode(buffer.getvalue())
    assert decoded.image.mode == "RGB" and decoded.image.size == (300, 200)


def test_too_many_pixels_is_refused_as_a_bomb() -> None:
    with pytest.raises(PermanentError, match="x.jpg: decompression bomb refused"):
        decode(jpeg_bytes((1000, 1000)), max_pixels=999_999)


def test_truncated_jpeg_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError, match="x.jpg: corrupt or truncated image"):
        decode(jpeg_bytes((800, 600), seed=3)[:2000])
