"""The grid's thumbnails show people: a square cut around the faces found (issue 20, item 22).

The gallery shows each thumbnail as a square (``object-fit: cover``), which cut the middle out
of a full-body portrait: the body, not the head. Now the thumbnail is itself that square, cut
from the preview after the face step, centred on the faces; without faces, the middle of a
landscape photo and a third of the way down a portrait one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from photoctl.faces.local import LocalEngine
from photoctl.thumbnails import thumbnail_square
from testkit.photos import settle
from tests.support.cli import photoctl_env, run_photoctl

DATA = Path(__file__).resolve().parent / "data"
# Read at import, before the autouse fixture clears PHOTOCTL_* (as the browser tests do).
ARTIFACTS = os.environ.get("PHOTOCTL_TEST_ARTIFACTS")


def full_body_portrait(path: Path) -> None:
    """A 1000x3000 portrait: a real face (tests/data/obama_1.jpg) at the top, a body below."""
    canvas = Image.new("RGB", (1000, 3000), (205, 200, 190))
    with Image.open(DATA / "obama_1.jpg") as face:
        canvas.paste(face.convert("RGB").resize((1000, 1250)), (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((250, 1250, 750, 2300), fill=(40, 50, 90))  # a jacket
    draw.rectangle((300, 2300, 700, 2950), fill=(60, 60, 60))  # trousers
    canvas.save(path, "JPEG", quality=90)
    settle(path)


def only_thumbnail(data_dir: Path) -> Path:
    thumbs = list((data_dir / "storage" / "thumbs").rglob("*.jpg"))
    assert len(thumbs) == 1, thumbs
    return thumbs[0]


def test_the_thumbnail_of_a_full_body_portrait_shows_the_face(tmp_path: Path, db_url: str) -> None:
    photo = tmp_path / "finish" / "portrait.jpg"
    photo.parent.mkdir()
    full_body_portrait(photo)
    env = photoctl_env(tmp_path, db_url)
    assert run_photoctl(["ingest", str(photo.parent)], env).returncode == 0
    work = run_photoctl(["work", "-n", "1", "--until-empty", "--engine", "local"], env)
    assert work.returncode == 0, work.stderr
    shown = run_photoctl(["jobs", "list", "--json"], env).stdout.splitlines()
    assert [json.loads(line)["state"] for line in shown] == ["done"]

    thumb_path = only_thumbnail(tmp_path / "data")
    if ARTIFACTS:
        Path(ARTIFACTS, "thumbnail-full-body-portrait.jpg").write_bytes(thumb_path.read_bytes())
    with Image.open(thumb_path) as opened:
        thumb = opened.convert("RGB")
    assert thumb.size == (320, 320), "the square the grid shows"
    faces = LocalEngine().index_photo(0, thumb)
    assert len(faces) == 1, "the face is in the thumbnail"
    left, top, width, height = faces[0].box
    assert 0 <= left and left + width <= 1 and 0 <= top and top + height <= 1


@pytest.mark.parametrize(
    ("size", "faces", "square"),
    [
        # No faces: the middle of a landscape photo, a third of the way down a portrait one.
        ((1600, 1000), (), (300, 0, 1300, 1000)),
        ((1000, 3000), (), (0, 667, 1000, 1667)),
        # Centred on the face, kept inside the photo.
        ((1000, 3000), ((0.4, 0.5, 0.2, 0.05),), (0, 1075, 1000, 2075)),
        ((1000, 3000), ((0.3, 0.02, 0.4, 0.1),), (0, 0, 1000, 1000)),
        ((1600, 1000), ((0.85, 0.2, 0.1, 0.15),), (600, 0, 1600, 1000)),
        # Two faces that fit one square together: centred on both.
        ((3000, 1000), ((0.1, 0.3, 0.05, 0.1), (0.3, 0.3, 0.05, 0.1)), (175, 0, 1175, 1000)),
        # Two that do not: the larger one.
        ((3000, 1000), ((0.05, 0.3, 0.02, 0.05), (0.8, 0.3, 0.1, 0.3)), (2000, 0, 3000, 1000)),
    ],
)
def test_the_thumbnail_square_follows_the_faces_or_the_rule_without_them(
    size: tuple[int, int],
    faces: tuple[tuple[float, float, float, float], ...],
    square: tuple[int, int, int, int],
) -> None:
    assert thumbnail_square(size, faces) == square


def test_a_photo_without_faces_gets_a_square_thumbnail_from_its_upper_part(
    tmp_path: Path,
) -> None:
    """With the `none` engine: a portrait's square starts a third of the way down."""
    photo = tmp_path / "card" / "tall.jpg"
    photo.parent.mkdir()
    canvas = Image.new("RGB", (600, 1800), (255, 255, 255))
    ImageDraw.Draw(canvas).rectangle((0, 0, 600, 349), fill=(255, 0, 0))  # above the square
    ImageDraw.Draw(canvas).rectangle((0, 350, 600, 1000), fill=(0, 0, 255))  # its top part
    canvas.save(photo, "JPEG", quality=95)
    settle(photo)
    env = photoctl_env(tmp_path)
    assert run_photoctl(["ingest", str(photo.parent)], env).returncode == 0
    assert run_photoctl(["work", "--until-empty", "--engine", "none"], env).returncode == 0
    with Image.open(only_thumbnail(tmp_path / "data")) as opened:
        thumb = opened.convert("RGB")
    assert thumb.size == (320, 320)
    red, green, blue = thumb.getpixel((160, 10))
    assert blue > 200 and red < 60, "the top of the square is below the red band"
