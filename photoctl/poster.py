"""The event's QR poster: an A4 page to print and put up where participants pass.

What a person reading it needs, top to bottom: the event's title (and date), one line on what
to do, the QR code of the event page, that address in text (for a phone that does not scan),
where the access code is when the event asks for one, and when face data is deleted.

PNG and PDF are drawn with Pillow at 300 dpi (A4: 2480 x 3508 pixels; the PDF page is A4 as
well, its image stored bilevel and losslessly); SVG is written as text, with the code as one
path. The font is DejaVu Sans, shipped in the package (fonts/, a subset: Latin with every
accent, Greek, Cyrillic); Pillow's own default font has ASCII only, so "Łódź" or "Café" would
print as boxes. Nothing is read from the system or the network: a poster looks the same on
every machine. Other scripts (CJK, Arabic...) still print as boxes; the SVG leaves the font to
its viewer.
"""

from __future__ import annotations

import functools
import io
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import segno
from PIL import Image, ImageDraw, ImageFont

from photoctl.atomic import atomic_write
from photoctl.errors import ConfigError

__all__ = [
    "CODE_FORMATS",
    "FORMATS",
    "Poster",
    "UnsupportedPosterFormat",
    "poster_format",
    "write_code",
    "write_poster",
]

FORMATS = (".png", ".pdf", ".svg")
CODE_FORMATS = (".png", ".svg", ".pdf", ".eps")  # the bare code's (segno's)
DPI = 300
PAGE = (2480, 3508)  # A4 at 300 dpi
MARGIN = 200
QUIET_ZONE = 4  # modules of white around the code, as the QR standard asks
DEFAULT_CODE_LINE = "Your access code is printed on your bib or badge."
WHAT_TO_DO = (
    "Scan the code with your phone's camera and take a selfie: you get the photos of this "
    "event you appear in, on a page of your own."
)


class UnsupportedPosterFormat(ConfigError):
    """--out names a format the poster is not made in (a usage error: exit 2)."""

    def __init__(self, out: Path) -> None:
        super().__init__(
            f"cannot make a poster as {out.name!r}: name the file .png, .pdf or .svg "
            "(PNG and PDF print at A4, 300 dpi)"
        )


@dataclass(frozen=True)
class Poster:
    title: str
    date: str | None
    url: str
    code_line: str | None  # None: the event asks for no access code
    retention: str  # when face data is deleted (event_store.retention_words)

    def lines(self) -> list[tuple[str, str]]:
        """(role, text) top to bottom: what every format prints, in this order."""
        lines = [("title", _printable(self.title))]
        if self.date:
            lines.append(("date", self.date))
        lines += [("lead", "Find your photos"), ("body", WHAT_TO_DO), ("qr", self.url)]
        lines.append(("url", self.url))
        if self.code_line:
            lines.append(("code", self.code_line))
        lines.append(
            (
                "small",
                f"Your face data is deleted {self.retention}, or at once when you ask from "
                "your page. The photos themselves stay.",
            )
        )
        return lines


def _printable(text: str) -> str:
    """The text without control and format characters: a bidi override (U+202E) would print
    the title's letters in another order than typed, a zero-width one as a box."""
    return "".join(char for char in text if unicodedata.category(char) not in ("Cc", "Cf"))


def poster_format(out: Path) -> str:
    """The format ``out`` asks for by its suffix: png, pdf or svg (else UnsupportedPosterFormat)."""
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise UnsupportedPosterFormat(out)
    return suffix[1:]


def write_code(url: str, out: Path, scale: int) -> None:
    """Only the QR code (no poster), in any format segno writes, chosen by the suffix."""
    if out.suffix.lower() not in CODE_FORMATS:
        raise ConfigError(
            f"cannot write a QR code as {out.name!r}: name the file " + ", ".join(CODE_FORMATS)
        )
    segno.make(url, error="m", micro=False).save(str(out), scale=scale, border=QUIET_ZONE)


def write_poster(poster: Poster, out: Path) -> None:
    """Write the poster to ``out`` in the format its suffix names; whole or not at all."""
    kind = poster_format(out)
    if kind == "svg":
        data = _svg(poster).encode()
    else:
        image = _raster(poster)
        buffer = io.BytesIO()
        if kind == "png":
            image.save(buffer, "PNG", dpi=(DPI, DPI), optimize=True)
        else:
            # Bilevel: Pillow stores it losslessly (CCITT G4) where a grey image would be JPEG,
            # which blurs the code's edges.
            image.point(lambda value: 255 if value >= 128 else 0).convert("1").save(
                buffer, "PDF", resolution=DPI, title=_printable(poster.title)
            )
        data = buffer.getvalue()
    with atomic_write(out) as stream:
        stream.write(data)
    # A file to print and share, not a secret: the umask's mode, not mkstemp's 0600 (set once
    # it is in place: atomic_write's stream has no file descriptor to give).
    umask = os.umask(0)
    os.umask(umask)
    out.chmod(0o666 & ~umask)


_SIZES = {"title": 150, "date": 80, "lead": 96, "body": 62, "url": 64, "code": 72, "small": 46}
_GAPS = {"title": 40, "date": 70, "lead": 30, "body": 60, "qr": 30, "url": 70, "code": 70}
_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
_MAX_TITLE_LINES = 6


@dataclass(frozen=True)
class _Text:
    top: int
    size: int
    text: str  # one line, centred on the page


@dataclass(frozen=True)
class _Code:
    left: int  # of the first module, inside the quiet zone
    top: int
    module: int  # pixels a side
    matrix: list[list[bool]]


_FONT_FILE = Path(__file__).with_name("fonts") / "DejaVuSans.ttf"


@functools.cache
def _font(size: int) -> _Font:
    return ImageFont.truetype(str(_FONT_FILE), size)


def _layout(poster: Poster) -> list[_Text | _Code]:
    """Where everything goes on the page, in pixels at 300 dpi: the text wrapped to the page
    by the font's own widths, and the code as large as the space the text leaves."""
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    width = PAGE[0] - 2 * MARGIN
    blocks: list[tuple[str, int, list[str]]] = []
    for role, text in poster.lines():
        if role == "qr":
            blocks.append((role, 0, []))
            continue
        size = _SIZES[role]
        wrapped = _wrap(measure, text, _font(size), width)
        # A long title gets smaller rather than taller than three lines.
        while role == "title" and len(wrapped) > 3 and size > 80:
            size -= 10
            wrapped = _wrap(measure, text, _font(size), width)
        if role == "title" and len(wrapped) > _MAX_TITLE_LINES:
            # Past that the code would have no room left: the title is cut, visibly.
            wrapped = wrapped[:_MAX_TITLE_LINES]
            wrapped[-1] = wrapped[-1][:-2].rstrip() + " …"
        blocks.append((role, size, wrapped))
    text_height = sum(
        _line_height(size) * len(lines) + _GAPS.get(role, 0)
        for role, size, lines in blocks
        if role != "qr"
    )
    matrix = _qr_matrix(poster.url)
    modules = len(matrix) + 2 * QUIET_ZONE
    room = min(width, PAGE[1] - 2 * MARGIN - text_height - _GAPS["qr"])
    module = max(room // modules, 8)
    placed: list[_Text | _Code] = []
    y = MARGIN
    for role, size, lines in blocks:
        if role == "qr":
            side = module * modules
            left = (PAGE[0] - side) // 2 + QUIET_ZONE * module
            placed.append(_Code(left, y + QUIET_ZONE * module, module, matrix))
            y += side + _GAPS["qr"]
            continue
        for line in lines:
            placed.append(_Text(y, size, line))
            y += _line_height(size)
        y += _GAPS.get(role, 0)
    return placed


def _line_height(size: int) -> int:
    return int(size * 1.25)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: _Font, width: int) -> list[str]:
    """Words to lines no wider than ``width``; a word wider than that (a URL) is cut where
    it must, after a '/' where it can."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if draw.textlength(candidate, font=font) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while draw.textlength(current, font=font) > width:
            cut = len(current)
            while cut > 1 and draw.textlength(current[:cut], font=font) > width:
                cut -= 1
            slash = current.rfind("/", 0, cut)
            cut = slash + 1 if slash > 0 else cut
            lines.append(current[:cut])
            current = current[cut:]
    if current:
        lines.append(current)
    return lines


def _qr_matrix(url: str) -> list[list[bool]]:
    code = segno.make(url, error="m", micro=False)
    return [[bool(module) for module in row] for row in code.matrix]


def _raster(poster: Poster) -> Image.Image:
    image = Image.new("L", PAGE, 255)
    draw = ImageDraw.Draw(image)
    for item in _layout(poster):
        if isinstance(item, _Code):
            for row, modules in enumerate(item.matrix):
                for column, dark in enumerate(modules):
                    if dark:
                        x = item.left + column * item.module
                        y = item.top + row * item.module
                        draw.rectangle((x, y, x + item.module - 1, y + item.module - 1), fill=0)
            continue
        font = _font(item.size)
        left = (PAGE[0] - draw.textlength(item.text, font=font)) / 2
        draw.text((left, item.top), item.text, fill=0, font=font)
    return image


def _svg(poster: Poster) -> str:
    """The same page in SVG: A4 in millimetres, drawn in the raster's pixel units."""
    parts: list[str] = []
    for item in _layout(poster):
        if isinstance(item, _Code):
            size = item.module
            path = "".join(
                f"M{item.left + column * size},{item.top + row * size}h{size}v{size}h-{size}z"
                for row, modules in enumerate(item.matrix)
                for column, dark in enumerate(modules)
                if dark
            )
            parts.append(f'<path d="{path}" fill="#000"/>')
            continue
        # SVG places text by its baseline: about 0.8 of the size below the line's top.
        baseline = item.top + int(item.size * 0.8)
        parts.append(
            f'<text x="{PAGE[0] // 2}" y="{baseline}" font-size="{item.size}" '
            f'text-anchor="middle">{escape(item.text)}</text>'
        )
    body = "\n".join(parts)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" width="210mm" height="297mm" '
        f'viewBox="0 0 {PAGE[0]} {PAGE[1]}" '
        'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">\n'
        f"<title>{escape(_printable(poster.title))}</title>\n"
        '<rect width="100%" height="100%" fill="#fff"/>\n'
        f"{body}\n</svg>\n"
    )
