"""Bad input never stops a batch: each bad file ends with a reason naming it, the rest is done."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from testkit.photos import jpeg_bytes, settle, write_photo
from tests.support.cli import photoctl_env, run_photoctl


def png_bomb(side: int = 20_000) -> bytes:
    """A small, valid PNG of side x side black pixels (400 megapixels by default)."""
    row = b"\x00" + bytes((side + 7) // 8)  # filter byte + one bit per pixel
    compressor = zlib.compressobj(9)
    block = row * 1000
    data = b"".join(compressor.compress(block) for _ in range(side // 1000))
    data += compressor.compress(row * (side % 1000)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def make_bad_tree(root: Path) -> dict[str, bytes]:
    """Good photos beside every kind of bad file; returns the good files' names and contents."""
    root.mkdir(parents=True)
    good = {}
    for index, name in enumerate(
        ["good-1.jpg", "good-2.jpg", "x.jpg/inside.jpg", "line\nbreak.jpg"]
    ):
        good[name] = jpeg_bytes((400, 300), seed=100 + index)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(good[name])
    invalid_utf8 = os.fsencode(root) + b"/latin1-\xe9t\xe9.jpg"
    with open(invalid_utf8, "wb") as handle:
        handle.write(jpeg_bytes((400, 300), seed=200))
    good["latin1-\\xe9t\\xe9.jpg"] = b""
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("this is not a photo\n")
    (root / "truncated.jpg").write_bytes(jpeg_bytes((800, 600), seed=300)[:3000])
    (root / "bomb.png").write_bytes(png_bomb())
    os.symlink("loop.jpg", root / "loop.jpg")
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if not os.path.islink(os.path.join(dirpath, name)):
                settle(Path(dirpath) / name)
    return good


def test_each_bad_file_fails_with_a_reason_naming_it_and_good_files_are_done(tmp_path) -> None:
    tree = tmp_path / "photos"
    good = make_bad_tree(tree)
    env = photoctl_env(tmp_path)
    ingest = run_photoctl(["ingest", str(tree), "--json"], env)
    assert ingest.returncode == 1, ingest.stderr
    summary = json.loads(ingest.stdout)
    reasons = {
        entry["file"].rsplit("/", 1)[-1]: entry["reason"] for entry in summary["error_files"]
    }
    assert reasons == {
        "empty.jpg": "empty file",
        "text.jpg": "not an image (content is not JPEG, PNG, WebP, TIFF, HEIC or GIF)",
        "loop.jpg": "symlink loop",
    }
    for name in reasons:
        assert f"{tree}/{name}:" in ingest.stderr, "each error line names the file"
    assert summary["new"] == len(good) + 2  # plus the truncated JPEG and the PNG bomb

    work = run_photoctl(["work", "-n", "2", "--until-empty", "--engine", "none"], env)
    assert work.returncode == 1, "some jobs failed: exit 1 for cron"
    failed = run_photoctl(["jobs", "list", "--state", "failed", "--json"], env)
    errors = {
        json.loads(line)["filename"]: json.loads(line)["last_error"]
        for line in failed.stdout.splitlines()
    }
    assert set(errors) == {"truncated.jpg", "bomb.png"}
    assert errors["truncated.jpg"].startswith(f"{tree}/truncated.jpg: corrupt or truncated")
    assert errors["bomb.png"].startswith(f"{tree}/bomb.png: decompression bomb refused")
    done = run_photoctl(["jobs", "list", "--state", "done", "--json"], env)
    done_names = {json.loads(line)["filename"] for line in done.stdout.splitlines()}
    assert done_names == {
        "good-1.jpg",
        "good-2.jpg",
        "inside.jpg",
        "line\\nbreak.jpg",
        "latin1-\\xe9t\\xe9.jpg",
    }
    stats = json.loads(run_photoctl(["stats", "--json"], env).stdout)
    assert stats["photos"] == {"total": 7, "done": 5, "failed": 2, "pending": 0}


def test_a_photo_deleted_after_ingest_fails_as_gone(tmp_path) -> None:
    photo = write_photo(tmp_path / "photos" / "gone.jpg", seed=1)
    env = photoctl_env(tmp_path)
    assert run_photoctl(["ingest", str(photo.parent)], env).returncode == 0
    photo.unlink()
    assert (
        run_photoctl(["work", "--until-empty", "-n", "1", "--engine", "none"], env).returncode == 1
    )
    failed = run_photoctl(["jobs", "list", "--state", "failed"], env).stdout
    assert f"{photo}: file is gone" in failed


def test_an_unreadable_file_is_reported_and_the_rest_ingested(tmp_path) -> None:
    write_photo(tmp_path / "photos" / "ok.jpg", seed=1)
    secret = write_photo(tmp_path / "photos" / "secret.jpg", seed=2)
    secret.chmod(0)
    command = [sys.executable, "-m", "photoctl", "ingest", str(tmp_path / "photos"), "--json"]
    if os.geteuid() == 0:
        # Root reads any file; without the DAC-override capabilities it obeys file modes.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv (util-linux) is not installed")
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--", *command]
    result = subprocess.run(
        command, env=photoctl_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["new"] == 1
    assert summary["error_files"] == [{"file": str(secret), "reason": "permission denied"}]
