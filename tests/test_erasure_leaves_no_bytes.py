"""After an erasure, a user's deletion or an event's purge, nothing of the face data or of the
cached gallery is left in any file under the data dir and the cache dir: not in the SQLite
database's WAL, not in the response cache's own SQLite file or its WAL.

Why a byte scan: SQLite's ``secure_delete`` zeroes deleted rows in the database file, but the
frames that wrote them stay in ``photoctl.db-wal`` until a checkpoint overwrites or truncates it;
the cache's SQLite (diskcache) had neither. So the test enrolls a real selfie (local engine) over
HTTP on a real `photoctl serve`, lets it cache the gallery's grid, deletes through the real
route or CLI while serve still holds its connections (a WAL outlives a deletion only while some
connection is open), and then looks for the exact bytes: the 512-byte embeddings as face_store
keeps them, and the cached grid's key and HTML. On PostgreSQL the rows must be gone and the
cache dir clean; what stays in pg_wal is said in the README.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import diskcache
import pytest
from sqlalchemy import Engine, select

from photoctl import db
from photoctl.api.gallery_grid import Grid
from photoctl.config import Settings
from photoctl.models import Face, SelfieFace, User
from testkit.photos import settle
from tests.support.cli import photoctl_env, run_photoctl
from tests.support.serve import Server, start_server, stop_server

DATA = Path(__file__).parent / "data"


@dataclass
class Enrolled:
    server: Server
    token: str
    user_id: int
    name: str
    env: dict[str, str]


@pytest.fixture
def enrolled(tmp_path: Path, db_url: str, engine: Engine) -> Iterator[Enrolled]:
    """Event gala with two processed photos (one of Obama), a participant enrolled with another
    photo of Obama through serve, and their gallery viewed (so its grid is cached)."""
    env = photoctl_env(tmp_path, db_url)
    created = run_photoctl(["events", "create", "gala", "--title", "Gala"], env)
    assert created.returncode == 0, created.stderr
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("obama_2.jpg", "biden.jpg"):
        shutil.copy(DATA / name, folder / name)
        settle(folder / name)
    for args in (["ingest", str(folder), "--event", "gala"], ["work", "-n", "1", "--until-empty"]):
        done = run_photoctl(args, env, timeout=240)
        assert done.returncode == 0, done.stderr
    server = start_server(tmp_path, db_url)
    try:
        with server.client() as client, (DATA / "obama_1.jpg").open("rb") as selfie:
            answer = client.post("/api/e/gala", files={"selfie": selfie}, data={"consent": "true"})
            assert answer.status_code == 201, answer.text
            token = answer.json()["gallery_token"]
            assert answer.json()["matched_photos"] == 1
            for path in (f"/api/g/{token}", f"/g/{token}"):
                assert client.get(path).status_code == 200
        with db.read(engine) as conn:
            user_id, name = conn.execute(
                select(User.id, User.name).where(User.gallery_token_hash.is_not(None))
            ).one()
        yield Enrolled(server, token, user_id, name, env)
    finally:
        stop_server(server)


def embeddings(engine: Engine, user_id: int) -> dict[str, bytes]:
    """The participant's selfie embeddings and the event's photo face embeddings, as stored."""
    with db.read(engine) as conn:
        selfies = conn.execute(
            select(SelfieFace.embedding).where(SelfieFace.user_id == user_id)
        ).scalars()
        found = {f"selfie {i}": bytes(e) for i, e in enumerate(selfies)}
        faces = conn.execute(select(Face.embedding).where(Face.embedding.is_not(None))).scalars()
        found.update({f"photo face {i}": bytes(e) for i, e in enumerate(faces)})
    return found


def cached_grids(settings: Settings) -> dict[str, bytes]:
    """The cached grids' keys and HTML, as the bytes that would be found in a file."""
    found: dict[str, bytes] = {}
    with diskcache.Cache(str(settings.cache_dir)) as cache:
        for key in cache.iterkeys():
            value = cache.get(key)
            if isinstance(value, Grid):
                assert isinstance(key, str)
                found[f"grid key {key}"] = key.encode()
                found[f"grid html of {key}"] = value.html.encode()
    return found


def files_holding(folder: Path, needles: dict[str, bytes]) -> list[str]:
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        content = path.read_bytes()
        found += [f"{what} in {path.name}" for what, needle in needles.items() if needle in content]
    return found


def erase(enrolled: Enrolled) -> None:
    with enrolled.server.client() as client:
        answer = client.post(f"/api/g/{enrolled.token}/delete")
    assert answer.status_code == 200, answer.text


def purge(enrolled: Enrolled) -> None:
    done = run_photoctl(["events", "purge", "gala", "--yes"], enrolled.env)
    assert done.returncode == 0, done.stderr


def delete_user(enrolled: Enrolled) -> None:
    done = run_photoctl(["users", "delete", enrolled.name, "--yes"], enrolled.env)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("deletion", "photo_faces_go"),
    [(erase, False), (purge, True), (delete_user, False)],
    ids=["erasure", "event-purge", "user-delete"],
)
def test_deleted_face_data_and_cached_grids_are_in_no_file_of_the_data_or_cache_dir(
    enrolled: Enrolled, settings: Settings, engine: Engine, deletion, photo_faces_go: bool
) -> None:
    face_data = embeddings(engine, enrolled.user_id)
    photo_faces = {what for what in face_data if what.startswith("photo face")}
    assert photo_faces and len(face_data) > len(photo_faces)
    if not photo_faces_go:  # only a purge takes the photos' faces: they are not one person's
        face_data = {what: e for what, e in face_data.items() if what not in photo_faces}
    grids = cached_grids(settings)
    assert grids, "viewing the gallery cached no grid"
    needles = {**face_data, **grids}
    # The bytes are there to be found before the deletion (else the scan proves nothing).
    assert files_holding(settings.data_dir, needles)

    deletion(enrolled)

    # serve still runs and holds its connections: a WAL is not removed on its own meanwhile.
    assert enrolled.server.process.poll() is None
    assert embeddings(engine, enrolled.user_id).keys() == (set() if photo_faces_go else photo_faces)
    assert cached_grids(settings) == {}
    for folder in (settings.data_dir, settings.cache_dir):
        left = files_holding(folder, needles)
        assert left == [], "\n".join(left)


@pytest.mark.slow  # waits out the checkpoint's 10 s of patience
def test_a_reader_holding_the_wal_delays_the_truncation_to_the_next_deletion(
    tmp_path: Path,
) -> None:
    """A reader that never leaves: the deletion stands, one warning, the bytes stay until the
    next deletion after the reader is gone (a SQLite database in the data dir)."""
    env = photoctl_env(tmp_path)
    for args in (["init"], ["users", "add", "first-0f1e2d"], ["users", "add", "second-3c4b5a"]):
        done = run_photoctl(args, env)
        assert done.returncode == 0, done.stderr
    data_dir = tmp_path / "data"
    names = {name: name.encode() for name in ("first-0f1e2d", "second-3c4b5a")}
    writer = sqlite3.connect(data_dir / "photoctl.db", isolation_level=None)
    reader = sqlite3.connect(data_dir / "photoctl.db", isolation_level=None)
    try:
        # A frame in the WAL, then a read transaction whose snapshot needs it.
        writer.execute("UPDATE photoctl_meta SET value = value || '' WHERE key = 'database_id'")
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM users").fetchone()
        started = time.monotonic()
        deleted = run_photoctl(["users", "delete", "first-0f1e2d", "--yes"], env)
        assert deleted.returncode == 0, deleted.stderr
        assert 9 < time.monotonic() - started < 60
        assert "photoctl.db-wal still holds deleted data" in deleted.stderr
        assert files_holding(data_dir, names) != []  # the warning's reason
        reader.execute("COMMIT")
        deleted = run_photoctl(["users", "delete", "second-3c4b5a", "--yes"], env)
        assert deleted.returncode == 0, deleted.stderr
        assert "still holds" not in deleted.stderr
        # The writer's connection is still open: the WAL is there, emptied by the checkpoint.
        assert (data_dir / "photoctl.db-wal").exists()
        assert files_holding(data_dir, names) == []
    finally:
        reader.close()
        writer.close()
