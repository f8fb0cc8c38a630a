"""Workers read what is on disk now: non-regular files fail at once, changed files are re-hashed.

Real `photoctl ingest` and `photoctl work` subprocesses on both databases. A FIFO used to block a
worker forever (its heartbeat kept the lease alive, so `work --until-empty` never returned); a
file rewritten after ingest used to be processed under its old hash.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from sqlalchemy import select

from photoctl.models import Photo, SourceFile
from testkit.photos import jpeg_bytes, settle, write_photo
from tests.support.cli import photoctl_env
from tests.support.worker import ingest_json, list_jobs, start_photoctl

WORK_TIMEOUT_SECONDS = 90
photos = Photo.__table__
source_files = SourceFile.__table__


def run_work(env: dict[str, str], tmp_path: Path, name: str = "work") -> tuple[int, str]:
    work = start_photoctl(
        ["work", "-n", "2", "--until-empty", "--engine", "none"], env, tmp_path / "out", name
    )
    code = work.wait(WORK_TIMEOUT_SECONDS)
    return code, work.stderr()


def test_fifo_under_an_ingest_root_is_an_ingest_error_naming_it(
    tmp_path: Path, db_url: str
) -> None:
    env = photoctl_env(tmp_path, db_url)
    root = tmp_path / "photos"
    write_photo(root / "good.jpg", seed=1)
    os.mkfifo(root / "pipe.jpg")
    code, report = ingest_json(env, root)
    assert code == 1, report
    assert report["new"] == 1, report
    assert report["error_files"] == [
        {"file": str(root / "pipe.jpg"), "reason": "a FIFO (named pipe), not a regular file"}
    ]
    code, stderr = run_work(env, tmp_path)
    assert code == 0, stderr[-3000:]
    assert [job["state"] for job in list_jobs(env)] == ["done"]


def test_photo_replaced_by_a_fifo_or_a_symlink_after_ingest_fails_at_once_naming_it(
    tmp_path: Path, db_url: str
) -> None:
    env = photoctl_env(tmp_path, db_url)
    root = tmp_path / "photos"
    for seed, name in enumerate(["good.jpg", "piped.jpg", "linked.jpg"]):
        write_photo(root / name, seed=seed)
    code, report = ingest_json(env, root)
    assert (code, report["new"]) == (0, 3), report

    # Replaced after ingest: the worker must not block on the FIFO (nobody ever writes to it)
    # nor read through the link (to a device that never ends).
    (root / "piped.jpg").unlink()
    os.mkfifo(root / "piped.jpg")
    (root / "linked.jpg").unlink()
    os.symlink("/dev/zero", root / "linked.jpg")

    code, stderr = run_work(env, tmp_path)
    assert code == 1, stderr[-3000:]  # two jobs failed
    jobs = {job["filename"]: job for job in list_jobs(env)}
    assert jobs["good.jpg"]["state"] == "done"
    for name, kind in (("piped.jpg", "a FIFO (named pipe)"), ("linked.jpg", "a symbolic link")):
        job = jobs[name]
        assert job["state"] == "failed", job
        assert job["attempts"] == 1, job  # permanent: no retry can help
        assert job["last_error"] == f"{root / name}: is {kind}, not a regular file", job


def _photo_row(engine, name: str):
    with engine.connect() as conn:
        return conn.execute(select(photos).where(photos.c.filename == name)).one()


def test_photo_changed_after_ingest_is_processed_under_its_new_content(
    tmp_path: Path, db_url: str, engine
) -> None:
    env = photoctl_env(tmp_path, db_url)
    root = tmp_path / "photos"
    write_photo(root / "changed.jpg", seed=1, size=(640, 480))
    write_photo(root / "now-a-duplicate.jpg", seed=2)
    write_photo(root / "other.jpg", seed=3)
    # One photo, two files: the photo's file is the first by name ("twin-a.jpg").
    write_photo(root / "twin-a.jpg", seed=4)
    write_photo(root / "twin-b.jpg", seed=4)
    code, report = ingest_json(env, root)
    assert (code, report["new"], report["duplicates"]) == (0, 4, 1), report

    new_content = jpeg_bytes((500, 400), seed=10)
    (root / "changed.jpg").write_bytes(new_content)
    settle(root / "changed.jpg", 30)  # another mtime than ingest saw
    other_content = (root / "other.jpg").read_bytes()
    for name in ("now-a-duplicate.jpg", "twin-a.jpg"):
        (root / name).write_bytes(other_content)
        settle(root / name, 30)

    code, stderr = run_work(env, tmp_path)
    assert code == 1, stderr[-3000:]  # now-a-duplicate.jpg: its photo's content is gone

    changed = _photo_row(engine, "changed.jpg")
    assert changed.content_hash == hashlib.sha256(new_content).hexdigest()
    assert (changed.size_bytes, changed.width, changed.height) == (len(new_content), 500, 400)
    assert changed.thumb_path and changed.content_hash in changed.thumb_path
    assert (tmp_path / "data" / "storage").exists()

    jobs = {job["photo_id"]: job for job in list_jobs(env)}
    assert jobs[changed.id]["state"] == "done"
    gone = jobs[_photo_row(engine, "now-a-duplicate.jpg").id]
    other = _photo_row(engine, "other.jpg")
    assert gone["state"] == "failed", gone
    assert gone["last_error"].startswith(
        f"{root / 'now-a-duplicate.jpg'}: content changed after ingest and is now the same as "
        f"photo {other.id}"
    ), gone
    # The twin photo goes on from its other file, which still holds its content.
    with engine.connect() as conn:
        twin = conn.execute(select(photos).where(photos.c.content_hash == jpeg_hash(4))).one()
    assert bytes(twin.source_path) == os.fsencode(root / "twin-b.jpg")
    assert jobs[twin.id]["state"] == "done"
    with engine.connect() as conn:
        rows = conn.execute(select(source_files.c.path, source_files.c.photo_id))
        owners = {bytes(path): photo_id for path, photo_id in rows}
    assert owners[os.fsencode(root / "now-a-duplicate.jpg")] == other.id
    assert owners[os.fsencode(root / "twin-a.jpg")] == other.id

    # What the worker recorded is what is on disk: a new ingest finds nothing new.
    code, again = ingest_json(env, root)
    assert (code, again["new"], again["skipped"]) == (0, 0, 5), again


def jpeg_hash(seed: int) -> str:
    return hashlib.sha256(jpeg_bytes((640, 480), seed=seed)).hexdigest()
