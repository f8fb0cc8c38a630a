"""A thumbnail or preview is never published broken on a full disk (issue 20, item 8).

Pillow's JPEG encoder, given a real file, writes to its descriptor itself and ignores a short
write: on a nearly full disk a truncated thumbnail was renamed into place and its job marked
done. Now every byte goes through checked writes, the file's size is compared with what was
written before the rename, and the job is handled as a full disk (paused, attempt kept), not as
a broken photo. One unit test lies at the file-object level; one real run fills a small tmpfs.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from photoctl import atomic, config
from photoctl.errors import StorageFull
from photoctl.imaging import decode_bytes, write_jpeg
from photoctl.thumbnails import make_thumbnail
from testkit.photos import settle
from tests.support.cli import photoctl_env, run_photoctl, start_photoctl

PAGE = 4096


def test_a_write_that_loses_bytes_is_never_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file object that accepts every byte but keeps only half (what a short write does to
    Pillow) makes atomic_write raise ENOSPC, which store_jpeg reports as StorageFull."""
    real_fdopen = os.fdopen

    class HalfKept(io.BufferedWriter):
        def write(self, data) -> int:  # type: ignore[override]
            super().write(bytes(data)[: max(1, len(data) // 2)])
            return len(data)

    def lying_fdopen(fd: int, mode: str = "r", *args, **kwargs):
        if mode == "wb":
            return HalfKept(io.FileIO(fd, "wb"))
        return real_fdopen(fd, mode, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "fdopen", lying_fdopen)
    destination = tmp_path / "thumbs" / "ab" / "ab12.jpg"
    image = Image.effect_noise((320, 240), 60).convert("RGB")
    with pytest.raises(StorageFull, match="storage full: cannot write .*bytes reached the disk"):
        write_jpeg(image, destination, quality=85)
    assert not destination.exists()
    assert list(destination.parent.iterdir()) == [], "the temporary file is removed"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (needs root to mount), unmounted afterwards."""
    root = tmp_path / "small-disk"
    root.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(root)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def encoded_sizes(data: bytes) -> tuple[int, int]:
    """(preview, thumbnail) JPEG sizes of a photo as the pipeline makes them by default."""
    defaults = config.load(data_dir="/nonexistent", environ={}).storage
    decoded = decode_bytes(data, preview_px=defaults.preview_px, max_pixels=10**9, display_name="x")
    sizes = []
    for image in (decoded.image, make_thumbnail(decoded.image, defaults.thumb_px)):
        out = io.BytesIO()
        image.save(out, "JPEG", quality=defaults.jpeg_quality, optimize=False)
        sizes.append(len(out.getvalue()))
    return sizes[0], sizes[1]


def fill_leaving(root: Path, free_bytes: int) -> Path:
    info = os.statvfs(root)
    filler = root / "filler"
    with open(filler, "wb") as out:
        out.write(b"\0" * (info.f_bavail * info.f_frsize - free_bytes))
    return filler


def decodes_whole(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
    except OSError:
        return False
    return True


def test_a_full_disk_during_the_thumbnail_pauses_the_job_and_publishes_nothing_broken(
    tmp_path: Path, small_disk: Path
) -> None:
    """Room for the preview and two pages of the ~27 KB thumbnail: the thumbnail's single
    write comes back short. The job waits for space with its attempt kept; once the filler is
    deleted, it is done with a whole thumbnail."""
    photo = tmp_path / "card" / "IMG_1.jpg"
    photo.parent.mkdir()
    out = io.BytesIO()
    Image.effect_noise((1200, 900), 60).convert("RGB").save(out, "JPEG", quality=90)
    photo.write_bytes(out.getvalue())
    settle(photo)
    preview, thumb = encoded_sizes(photo.read_bytes())
    assert thumb > 3 * PAGE
    filler = fill_leaving(small_disk, -(-preview // PAGE) * PAGE + 2 * PAGE)

    env = photoctl_env(tmp_path, PHOTOCTL_STORAGE_ROOT=str(small_disk))
    assert run_photoctl(["ingest", str(photo.parent)], env).returncode == 0
    log = tmp_path / "work.log"
    work = start_photoctl(["work", "-n", "1", "--until-empty", "--engine", "none"], env, log)
    try:
        deadline = time.monotonic() + 60
        while "workers stop claiming" not in log.read_text() and work.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        published = list(small_disk.glob("thumbs/*/*.jpg")) + list(
            small_disk.glob("previews/*/*.jpg")
        )
        broken = [path.name for path in published if not decodes_whole(path)]
        assert broken == [], f"published broken: {broken}\n{log.read_text()}"
        assert work.poll() is None, f"work ended on a full disk:\n{log.read_text()}"
        assert "storage full" in log.read_text()
        assert not list(small_disk.glob("thumbs/*/*.tmp")), "no temporary file is left"
        filler.unlink()
        assert work.wait(60) == 0, log.read_text()
    finally:
        if work.poll() is None:
            work.kill()
            work.wait()
    listed = run_photoctl(["jobs", "list", "--json"], env).stdout.splitlines()
    jobs = [json.loads(line) for line in listed]
    assert [(job["state"], job["attempts"]) for job in jobs] == [("done", 1)], jobs
    thumbs = list(small_disk.glob("thumbs/*/*.jpg"))
    assert len(thumbs) == 1 and decodes_whole(thumbs[0])
    assert thumbs[0].stat().st_size == thumb
