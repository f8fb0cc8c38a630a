"""The pixel limits are photoctl's settings, not Pillow's: a 100 MP camera's JPEG is a photo.

Pillow refuses anything above 2 x 89.5 MP (and warns above 89.5 MP) on its own;
`ingest.max_pixels` (200 M by default) and `serve.max_decode_pixels` decide instead, through the
real CLI (ingest + work) and a real `photoctl serve`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from photoctl import users
from testkit.photos import settle
from tests.support.cli import photoctl_env, run_photoctl
from tests.support.serve import start_server, stop_server

# 102 MP, above Pillow's 89.5 MP default, below ingest.max_pixels' 200 M.
SIDES = (12000, 8500)


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    """A solid grey 12000x8500 JPEG: ~1.2 MB, made in a fraction of a second."""
    out = io.BytesIO()
    Image.new("L", SIDES, 140).save(out, "JPEG", quality=50)
    return out.getvalue()


def test_a_102_megapixel_jpeg_is_processed_below_ingest_max_pixels(
    tmp_path: Path, db_url: str, big_jpeg: bytes
) -> None:
    folder = tmp_path / "card"
    folder.mkdir()
    (folder / "IMG_100MP.jpg").write_bytes(big_jpeg)
    settle(folder / "IMG_100MP.jpg")
    env = photoctl_env(tmp_path, db_url)
    ingest = run_photoctl(["ingest", str(folder), "--json"], env)
    assert ingest.returncode == 0, ingest.stderr
    work = run_photoctl(["work", "-n", "1", "--until-empty", "--engine", "none"], env)
    assert work.returncode == 0, work.stderr
    assert "decompression bomb" not in work.stderr
    listed = run_photoctl(["jobs", "list", "--json"], env).stdout.splitlines()
    assert [json.loads(line)["state"] for line in listed] == ["done"], listed
    thumbs = list((tmp_path / "data" / "storage" / "thumbs").rglob("*.jpg"))
    assert len(thumbs) == 1
    with Image.open(thumbs[0]) as thumb:
        assert max(thumb.size) > 0


def test_a_photo_above_ingest_max_pixels_is_still_refused_as_a_bomb(
    tmp_path: Path, big_jpeg: bytes
) -> None:
    folder = tmp_path / "card"
    folder.mkdir()
    (folder / "IMG_100MP.jpg").write_bytes(big_jpeg)
    settle(folder / "IMG_100MP.jpg")
    env = photoctl_env(tmp_path, PHOTOCTL_INGEST_MAX_PIXELS="100000000")
    assert run_photoctl(["ingest", str(folder)], env).returncode == 0
    work = run_photoctl(["work", "-n", "1", "--until-empty", "--engine", "none"], env)
    assert work.returncode == 1
    failed = run_photoctl(["jobs", "list", "--state", "failed", "--json"], env).stdout
    reason = json.loads(failed.splitlines()[0])["last_error"]
    assert "IMG_100MP.jpg: decompression bomb refused (12000x8500 pixels, limit 100,000,000)" in (
        reason
    )


def test_a_102_megapixel_jpeg_selfie_counts_at_its_draft_size(
    tmp_path: Path, settings, engine, big_jpeg: bytes
) -> None:
    """Decoded at 1/4 (3000x2125, 6.4 MP) it fits serve.max_decode_pixels = 10 M, so the engine
    sees it (no face in grey: 422 "no face"); a PNG of as many pixels is refused from its header."""
    _, token = users.add_user(engine, "ann")
    engine.dispose()
    server = start_server(
        tmp_path, settings.database_url, PHOTOCTL_SERVE_MAX_DECODE_PIXELS="10000000"
    )
    png = io.BytesIO()
    Image.new("1", SIDES).save(png, "PNG", optimize=True)
    try:
        with server.client(token) as client:
            jpeg = client.post("/api/me/selfie", files={"file": ("me.jpg", big_jpeg)})
            assert jpeg.status_code == 422, jpeg.text
            assert "no face" in jpeg.json()["detail"]
            refused = client.post("/api/me/selfie", files={"file": ("me.png", png.getvalue())})
            assert refused.status_code == 422, refused.text
            assert "too large to decode" in refused.json()["detail"]
            assert "decoded at 12000x8500" in refused.json()["detail"]
    finally:
        stop_server(server)


def test_users_add_takes_a_102_megapixel_jpeg_selfie(tmp_path: Path, big_jpeg: bytes) -> None:
    """The CLI decodes selfies under ingest.max_pixels too: grey has no face, and says so."""
    selfie = tmp_path / "me.jpg"
    selfie.write_bytes(big_jpeg)
    added = run_photoctl(["users", "add", "ann", "--selfie", str(selfie)], photoctl_env(tmp_path))
    assert added.returncode != 0
    assert "no face" in added.stderr, added.stderr
    assert "decompression bomb" not in added.stderr
