"""`photoctl events qr SLUG --out FILE`: a printable A4 poster, by the real CLI, on both databases.

The QR code is read back from the PNG (and from the PDF, rasterised by poppler's pdftoppm where
it is installed) by a real decoder (zxing-cpp, from the test extras) and compared module by
module with segno's matrix; the texts are read from the SVG, which is laid out as the PNG is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import segno
from PIL import Image

from photoctl.poster import DEFAULT_CODE_LINE, WHAT_TO_DO
from tests.support.cli import photoctl_env, run_photoctl

PUBLIC_URL = "https://photos.example.org"
A4_POINTS = (595.2, 841.92)  # what Pillow writes for 2480 x 3508 pixels at 300 dpi


def decoded(image: Image.Image) -> list[str]:
    zxingcpp = pytest.importorskip("zxingcpp")
    return [found.text for found in zxingcpp.read_barcodes(image)]


def code_modules(image: Image.Image, url: str) -> list[list[bool]]:
    """The code's modules as printed, sampled at the centre of each module. Its top edge is the
    first row with a long dark run (the finder patterns' tops: no letter is that wide)."""
    grey = image.convert("L")
    width, height = grey.size
    pixels = grey.load()
    assert pixels is not None
    expected = segno.make(url, error="m", micro=False).symbol_size(scale=1, border=0)[0]
    for top in range(height):
        row = bytes(0 if pixels[x, top] < 128 else 1 for x in range(width))
        start = row.find(bytes(200))
        if start >= 0:
            break
    else:
        raise AssertionError("no QR code on the page")
    left, right = start, row.rfind(b"\x00")
    module = (right - left + 1) / expected
    return [
        [
            pixels[int(left + (column + 0.5) * module), int(top + (row + 0.5) * module)] < 128
            for column in range(expected)
        ]
        for row in range(expected)
    ]


def svg_lines(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    return [element.text or "" for element in root.iter("{http://www.w3.org/2000/svg}text")]


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> dict[str, str]:
    environment = photoctl_env(tmp_path, db_url, PHOTOCTL_SERVE_PUBLIC_URL=PUBLIC_URL)
    created = run_photoctl(
        ["events", "create", "marathon-2026", "--title", "Nocny Maraton Łódź 2026",
         "--date", "2026-05-03", "--retention-days", "60", "--access-code"],
        environment,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    plain = run_photoctl(["events", "create", "gala", "--title", "Charity Gala"], environment)
    assert plain.returncode == 0, plain.stderr
    return environment


def test_the_png_poster_has_the_title_the_code_the_url_and_the_access_code_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    url = f"{PUBLIC_URL}/e/marathon-2026"
    made = run_photoctl(["events", "qr", "marathon-2026", "--out", "poster.png"], env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == url
    assert f"poster of {url} written to poster.png" in made.stderr
    poster = tmp_path / "poster.png"
    assert poster.stat().st_mode & 0o044, "a poster is for sharing: not private to its owner"
    with Image.open(poster) as image:
        assert image.format == "PNG" and image.size == (2480, 3508), "A4 at 300 dpi"
        assert round(image.info["dpi"][0]) == 300
        expected = segno.make(url, error="m", micro=False).matrix
        assert code_modules(image, url) == [[bool(m) for m in row] for row in expected]
        assert decoded(image) == [url]
        # Ink above the code (title, what to do) and below it (address, code line, retention).
        grey = image.convert("L")
        assert grey.crop((0, 0, 2480, 600)).getextrema()[0] == 0
        assert grey.crop((0, 2900, 2480, 3508)).getextrema()[0] == 0

    # The same page as SVG: its texts, in their order.
    svg = run_photoctl(["events", "qr", "marathon-2026", "--out", "poster.svg"], env, cwd=tmp_path)
    assert svg.returncode == 0, svg.stderr
    lines = svg_lines(tmp_path / "poster.svg")
    text = " ".join(lines)
    assert lines[0] == "Nocny Maraton Łódź 2026" and lines[1] == "2026-05-03"
    assert "Find your photos" in lines and " ".join(WHAT_TO_DO.split()) in text
    assert lines.index(url) > lines.index("Find your photos"), "the address under the code"
    assert DEFAULT_CODE_LINE in lines
    assert "deleted on 2026-07-02, 60 days after the event" in text


def test_the_pdf_poster_is_one_a4_page_whose_code_scans(
    env: dict[str, str], tmp_path: Path
) -> None:
    made = run_photoctl(
        ["events", "qr", "gala", "--out", str(tmp_path / "gala.PDF"),
         "--code-line", "The code is on your wristband."],
        env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    data = (tmp_path / "gala.PDF").read_bytes()
    assert data.startswith(b"%PDF-")
    boxes = re.findall(rb"/MediaBox \[ ?0 0 ([\d.]+) ([\d.]+) ?\]", data)
    assert [(float(w), float(h)) for w, h in boxes] == [A4_POINTS]
    assert b"/CCITTFaxDecode" in data, "stored losslessly, not as a JPEG that blurs the code"
    # Gala asks for no access code: no line about one, whatever --code-line says; and it has
    # no date, so its face data goes some days after it closes.
    svg = run_photoctl(["events", "qr", "gala", "--out", "gala.svg"], env, cwd=tmp_path)
    assert svg.returncode == 0, svg.stderr
    lines = svg_lines(tmp_path / "gala.svg")
    text = " ".join(lines)
    assert "wristband" not in text and DEFAULT_CODE_LINE not in text
    assert "365 days after the event closes to new participants" in text

    if shutil.which("pdftoppm") is None:
        message = "poppler-utils' pdftoppm is not installed (scripts/test.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI looks at the PDF's page: {message}")
        pytest.skip(message)
    subprocess.run(
        ["pdftoppm", "-r", "150", "-png", str(tmp_path / "gala.PDF"), str(tmp_path / "page")],
        check=True,
    )
    with Image.open(tmp_path / "page-1.png") as page:
        assert decoded(page) == [f"{PUBLIC_URL}/e/gala"]


def test_a_format_the_poster_is_not_made_in_is_refused_with_the_formats(
    env: dict[str, str], tmp_path: Path
) -> None:
    for name in ("poster.jpg", "poster", "poster.eps"):
        refused = run_photoctl(["events", "qr", "gala", "--out", name], env, cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr
        assert ".png, .pdf or .svg" in refused.stderr, refused.stderr
        assert not (tmp_path / name).exists()
    assert list(tmp_path.glob("*.tmp")) == []

    # Only the code, for a design of one's own: as before, in segno's formats.
    bare = run_photoctl(
        ["events", "qr", "gala", "--out", "code.png", "--code-only", "--scale", "4"],
        env,
        cwd=tmp_path,
    )
    assert bare.returncode == 0, bare.stderr
    side = segno.make(f"{PUBLIC_URL}/e/gala", error="m").symbol_size(scale=4, border=4)[0]
    with Image.open(tmp_path / "code.png") as image:
        assert image.width == image.height == side
        assert decoded(image.convert("L")) == [f"{PUBLIC_URL}/e/gala"]
    jpg = run_photoctl(["events", "qr", "gala", "--out", "c.jpg", "--code-only"], env, cwd=tmp_path)
    assert jpg.returncode == 2 and ".png, .svg, .pdf, .eps" in jpg.stderr


def test_a_title_prints_as_typed_without_bidi_or_invisible_characters(
    env: dict[str, str], tmp_path: Path
) -> None:
    title = "Caf\u00e9 Run \u202eevil\u200b"
    assert run_photoctl(["events", "create", "rlo", "--title", title], env).returncode == 0
    made = run_photoctl(["events", "qr", "rlo", "--out", "rlo.svg"], env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert svg_lines(tmp_path / "rlo.svg")[0] == "Caf\u00e9 Run evil"


def test_a_title_too_long_for_the_page_is_cut_visibly_and_the_code_keeps_its_room(
    env: dict[str, str], tmp_path: Path
) -> None:
    title = "Marathon " * 150
    assert run_photoctl(["events", "create", "long", "--title", title], env).returncode == 0
    for name in ("long.png", "long.svg"):
        made = run_photoctl(["events", "qr", "long", "--out", name], env, cwd=tmp_path)
        assert made.returncode == 0, made.stderr
    lines = svg_lines(tmp_path / "long.svg")
    title_lines = lines[: lines.index("Find your photos")]
    assert len(title_lines) == 6 and title_lines[-1].endswith(" …"), title_lines
    with Image.open(tmp_path / "long.png") as image:
        assert decoded(image) == [f"{PUBLIC_URL}/e/long"]
