"""Serve under abuse and failure: bodies, bombs, links, album names, the queue cap, a full
disk and a database outage (issue 7, items 2, 3, 4, 7, 13, 14, 16 and part of 22).

Everything runs against a real `photoctl serve` subprocess over real HTTP (raw sockets where
the point is what the server does before it reads a body), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from photoctl import db, queue, users
from photoctl.ingest import ingest_paths
from photoctl.models import Photo
from photoctl.worker import drain_in_process
from testkit.photos import jpeg_bytes, write_photo
from tests.support.cli import run_photoctl
from tests.support.serve import Server, start_server, stop_server

MiB = 1024 * 1024


@pytest.fixture
def tokens(engine) -> dict[str, str]:
    """Two accounts: ann (a user) and root (an admin)."""
    _, ann = users.add_user(engine, "ann")
    _, root = users.add_user(engine, "root", admin=True)
    return {"ann": ann, "root": root}


@pytest.fixture
def running(tmp_path: Path, db_url: str, tokens) -> Iterator[Server]:
    server = start_server(tmp_path, db_url)
    yield server
    stop_server(server)


def stored_files(settings) -> list[Path]:
    uploads = settings.storage_root / "uploads"
    return [path for path in uploads.rglob("*") if path.is_file()] if uploads.exists() else []


def photo_rows(engine) -> list[tuple[str, str | None]]:
    with db.read(engine) as conn:
        return [tuple(row) for row in conn.execute(select(Photo.filename, Photo.album)).all()]


def raw_request(
    server: Server,
    head: str,
    body: bytes = b"",
    *,
    chunks: Sequence[bytes] = (),
    timeout: float = 10.0,
) -> tuple[int, float]:
    """Send a request head and part of a body, never the rest; (status, seconds to answer).

    The client stops sending before the server answers, so nothing it sent is still unread
    when the server closes (which would reset the connection and lose the answer).
    """
    address = urlparse(server.url)
    started = time.monotonic()
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        for chunk in chunks:
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        answer = b""
        while b"\r\n" not in answer:
            try:
                data = sock.recv(4096)
            except TimeoutError:
                raise AssertionError(f"no answer within {timeout} s") from None
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1]), time.monotonic() - started


def multipart_head(path: str, token: str | None, length: int | None) -> str:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: multipart/form-data; boundary=xyz",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines.append(
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    )
    return "\n".join(lines) + "\n"


FILE_PART = (
    b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
    b"Content-Type: image/jpeg\r\n\r\n"
)


def test_bodies_are_refused_before_they_are_read_without_a_token_or_over_the_limit(
    tmp_path: Path,
    db_url: str,
    settings,
    tokens,
) -> None:
    spool = tmp_path / "serve-tmp"
    spool.mkdir()
    limit = 300_000
    server = start_server(tmp_path, db_url, TMPDIR=str(spool), PHOTOCTL_INGEST_MAX_BYTES=str(limit))
    try:
        start = FILE_PART + b"\xff\xd8\xff" + b"x" * (64 * 1024)
        # 400 MB declared, no token: 401 at once, the body never read.
        for path in ("/api/photos", "/api/me/selfie"):
            status, seconds = raw_request(server, multipart_head(path, None, 400_000_000), start)
            assert status == 401 and seconds < 5
        status, _ = raw_request(server, multipart_head("/api/photos", "wrong", 400_000_000), start)
        assert status == 401
        # A user's declared length over ingest.max_bytes: 413 without reading.
        status, seconds = raw_request(
            server, multipart_head("/api/photos", tokens["ann"], 400_000_000), start
        )
        assert status == 413 and seconds < 5
        # Streamed without a length: cut off with 413 once past the limit.
        chunks = [FILE_PART + b"\xff\xd8\xff"] + [b"x" * 65536] * (limit // 65536 + 4)
        status, _ = raw_request(
            server, multipart_head("/api/photos", tokens["ann"], None), chunks=chunks
        )
        assert status == 413
        # Without a token a streamed body is refused before it is read too.
        status, _ = raw_request(server, multipart_head("/api/photos", None, None), chunks=chunks)
        assert status == 401
        # "Content-Length: 0" beside "Transfer-Encoding: chunked" is still a body (h11 frames
        # it by the chunks): refused before it is read, on every route, login included.
        for path, token in (("/api/photos", None), ("/api/me/selfie", None), ("/api/login", None)):
            smuggled = multipart_head(path, token, None) + "Content-Length: 0\n"
            status, seconds = raw_request(server, smuggled, chunks=chunks)
            assert status in (401, 413) and seconds < 5, (path, status)
        # Nothing was kept: no temporary file, nothing in storage, no photo.
        assert list(spool.iterdir()) == []
        assert stored_files(settings) == []
        # The server is fine and a normal upload still works.
        with server.client(tokens["ann"]) as client:
            answer = client.post("/api/photos", files={"file": ("ok.jpg", jpeg_bytes(seed=3))})
            assert answer.status_code == 202
            login = client.post("/api/login", json={"name": "ann", "password": "x" * 100_000})
            assert login.status_code == 413
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def png_bomb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A ~11 KB PNG of 9,400x9,400 pixels (one bit each): 265 MB once decoded to RGB."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("1", (9400, 9400)).save(path, optimize=True)
    data = path.read_bytes()
    assert len(data) < 20_000
    return data


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_parallel_selfie_bombs_keep_serve_small_and_get_clean_refusals(
    tmp_path: Path,
    db_url: str,
    tokens,
    png_bomb: bytes,
) -> None:
    server = start_server(tmp_path, db_url, PHOTOCTL_SERVE_SELFIE_RATE="5/minute")
    try:
        before = peak_rss_mb(server.process.pid)

        def post(_: int) -> httpx.Response:
            with server.client(tokens["ann"]) as client:
                return client.post("/api/me/selfie", files={"file": ("me.png", png_bomb)})

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, range(8)))
        peak = peak_rss_mb(server.process.pid)
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [422] * 5 + [429] * 3, [a.text for a in answers]
        refused = next(a for a in answers if a.status_code == 422).json()["detail"]
        assert "too large to decode" in refused
        assert int(next(a for a in answers if a.status_code == 429).headers["Retry-After"]) >= 1
        assert peak < 300, f"serve peaked at {peak:.0f} MB (was {before:.0f} MB at start)"
    finally:
        stop_server(server)


@pytest.fixture
def processed_photo(tmp_path: Path, settings, engine) -> Path:
    folder = tmp_path / "event"
    photo = write_photo(folder / "IMG_1.jpg", seed=11)
    ingest_paths(engine, settings, [str(folder)])
    assert drain_in_process(settings, "none").failed == 0
    return photo


def sqlite_file(db_url: str) -> str | None:
    return db_url.removeprefix("sqlite:///") if db_url.startswith("sqlite:") else None


def original(server: Server, token: str) -> httpx.Response:
    with server.client(token) as client:
        return client.get("/api/photos/1/original")


def test_originals_are_regular_files_inside_the_ingest_roots_never_links(
    tmp_path: Path, db_url: str, settings, engine, tokens, processed_photo: Path
) -> None:
    server = start_server(tmp_path, db_url)
    try:
        token = tokens["root"]
        kept = processed_photo.read_bytes()
        answer = original(server, token)
        assert answer.status_code == 200 and answer.content == kept
        assert answer.headers["content-type"] == "image/jpeg"
        aside = processed_photo.with_name("aside.jpg")
        processed_photo.rename(aside)
        database_file = sqlite_file(db_url) or str(settings.cache_dir / "cache.db")
        for target in ("/etc/passwd", database_file, str(aside)):
            processed_photo.symlink_to(target)
            assert original(server, token).status_code == 404, target
            processed_photo.unlink()
        # A folder swapped for a link to another folder: the file resolves outside the roots.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        shutil.copy(aside, elsewhere / "IMG_1.jpg")
        folder = processed_photo.parent
        folder.rename(tmp_path / "event-moved")
        folder.symlink_to(elsewhere)
        assert original(server, token).status_code == 404
        folder.unlink()
        (tmp_path / "event-moved").rename(folder)
        # Not a regular file, or not an image: refused as well.
        os.mkfifo(processed_photo)
        assert original(server, token).status_code == 404
        processed_photo.unlink()
        processed_photo.write_text("root:x:0:0:root:/root:/bin/bash\n")
        assert original(server, token).status_code == 404
        aside.rename(processed_photo)
        assert original(server, token).content == kept
    finally:
        stop_server(server)


def test_an_upload_after_asking_for_a_linked_database_reaches_the_database(
    tmp_path: Path, db_url: str, settings, engine, tokens, processed_photo: Path
) -> None:
    """serve once opened and closed photoctl.db through such a link: SQLite's POSIX locks were
    gone, another process deleted the WAL, and the next upload, answered 202, was lost."""
    # Serve and the CLI are then the only processes with the database open, as in production.
    engine.dispose()
    server = start_server(tmp_path, db_url)
    try:
        processed_photo.unlink()
        processed_photo.symlink_to(sqlite_file(db_url) or "/etc/passwd")
        assert original(server, tokens["root"]).status_code == 404
        # Another process opens and closes the database (as cron's `photoctl stats` would).
        assert run_photoctl(["stats"], server.env).returncode == 0
        with server.client(tokens["ann"]) as client:
            answer = client.post("/api/photos", files={"file": ("after.jpg", jpeg_bytes(seed=5))})
        assert answer.status_code == 202
        assert run_photoctl(["stats"], server.env).returncode == 0
        job = run_photoctl(["jobs", "show", answer.json()["job_id"]], server.env)
        assert job.returncode == 0 and "queued" in job.stdout
        fresh = db.make_engine(settings)
        try:
            assert ("after.jpg", None) in photo_rows(fresh)
        finally:
            fresh.dispose()
    finally:
        stop_server(server)


def test_album_names_are_checked_before_anything_is_stored(
    running: Server, settings, engine, tokens
) -> None:
    photo = jpeg_bytes(seed=21)
    with running.client(tokens["ann"]) as client:
        for album in ("a\x00b", "tab\there", "esc\x1b[31m", "x" * 201):
            for where in ("params", "data"):
                answer = client.post(
                    "/api/photos", files={"file": ("p.jpg", photo)}, **{where: {"album": album}}
                )
                assert answer.status_code == 422, (album, where, answer.text)
                assert "album" in answer.json()["detail"]
        assert client.get("/api/all-photos", params={"album": "a\x00b"}).status_code == 422
        assert client.get("/api/all-photos", params={"album": "x" * 201}).status_code == 422
        assert stored_files(settings) == [] and photo_rows(engine) == []
        differing = client.post(
            "/api/photos",
            files={"file": ("p.jpg", photo)},
            data={"album": "one"},
            params={"album": "two"},
        )
        assert differing.status_code == 422 and stored_files(settings) == []
        longest = "é" * 200
        assert (
            client.post(
                "/api/photos", files={"file": ("p.jpg", photo)}, params={"album": longest}
            ).status_code
            == 202
        )
    assert photo_rows(engine) == [("p.jpg", longest)]


def test_uploads_keep_their_file_name_and_take_the_album_as_a_form_field(
    running: Server, engine, tokens
) -> None:
    with running.client(tokens["ann"]) as client:
        first = client.post(
            "/api/photos",
            files={"file": ("IMG_0042.JPG", jpeg_bytes(seed=31))},
            data={"album": "Marathon 2026"},
        )
        assert first.status_code == 202
        second = client.post(
            "/api/photos",
            files={"file": ("C:\\Users\\ann\\beach.jpg", jpeg_bytes(seed=32))},
            params={"album": "Beach"},
        )
        assert second.status_code == 202
    assert sorted(photo_rows(engine)) == [("IMG_0042.JPG", "Marathon 2026"), ("beach.jpg", "Beach")]


def test_the_queue_cap_holds_exactly_under_concurrent_uploads(
    tmp_path: Path, db_url: str, settings, engine, tokens
) -> None:
    cap = 5
    server = start_server(tmp_path, db_url, PHOTO_QUEUE_MAX_SIZE=str(cap))
    try:
        photos = [jpeg_bytes((1600, 1200), seed=200 + n, quality=95) for n in range(24)]
        gate = threading.Barrier(len(photos))

        def post(data: bytes) -> int:
            with server.client(tokens["ann"]) as client:
                gate.wait()
                return client.post("/api/photos", files={"file": ("x.jpg", data)}).status_code

        with ThreadPoolExecutor(len(photos)) as pool:
            statuses = list(pool.map(post, photos))
        with db.read(engine) as conn:
            waiting = queue.waiting_count(conn)
        assert waiting == cap and statuses.count(202) == cap
        assert statuses.count(503) == len(photos) - cap
        # Refused uploads leave nothing behind.
        assert len(stored_files(settings)) == cap and len(photo_rows(engine)) == cap
    finally:
        stop_server(server)


def noise_jpeg(size: tuple[int, int]) -> bytes:
    """A JPEG that does not compress: random pixels."""
    import io

    buffer = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture
def tiny_storage(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB filesystem (tmpfs) to be the storage root; needs root to mount."""
    root = tmp_path / "tiny-storage"
    root.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def test_an_upload_into_full_storage_answers_507_with_retry_after(
    tmp_path: Path, settings, engine, tokens, tiny_storage: Path
) -> None:
    server = start_server(tmp_path, settings.database_url, PHOTOCTL_STORAGE_ROOT=str(tiny_storage))
    try:
        with server.client(tokens["ann"]) as client:
            small = client.post("/api/photos", files={"file": ("s.jpg", jpeg_bytes(seed=41))})
            assert small.status_code == 202
            big = noise_jpeg((1000, 1000))
            assert len(big) > 1 * MiB
            full = client.post("/api/photos", files={"file": ("big.jpg", big)})
            assert full.status_code == 507, full.text
            assert full.json() == {"detail": "Storage is full, try again later"}
            assert int(full.headers["Retry-After"]) > 0
        # The partial file was removed: the space is free again for a photo that fits.
        leftovers = [p.name for p in tiny_storage.rglob("*") if p.is_file()]
        assert not [name for name in leftovers if name.endswith(".part")]
        with server.client(tokens["ann"]) as client:
            again = client.post("/api/photos", files={"file": ("t.jpg", jpeg_bytes(seed=43))})
            assert again.status_code == 202
    finally:
        stop_server(server)


@pytest.mark.postgres
def test_a_database_outage_answers_503_with_retry_after_then_recovers(
    tmp_path: Path, postgres_url: str, postgres_admin_url: str
) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    from photoctl import config

    settings = config.load(
        data_dir=str(tmp_path / "data"), environ={}, overrides={"database.url": postgres_url}
    )
    engine = db.make_engine(settings)
    db.ensure_schema(engine)
    _, token = users.add_user(engine, "ann")
    engine.dispose()
    name = make_url(postgres_url).database
    server = start_server(tmp_path, postgres_url)

    def admin(statement: str) -> None:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(statement)

    try:
        with server.client(token) as client:
            assert client.get("/api/my-photos").status_code == 200
            admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
            for _ in range(3):
                down = client.get("/api/my-photos")
                assert down.status_code == 503, down.text
                assert int(down.headers["Retry-After"]) > 0
            upload = client.post("/api/photos", files={"file": ("a.jpg", jpeg_bytes(seed=51))})
            assert upload.status_code == 503 and int(upload.headers["Retry-After"]) > 0
            admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            deadline = time.monotonic() + 30
            while client.get("/api/my-photos").status_code != 200:
                assert time.monotonic() < deadline, "serve did not recover"
                time.sleep(0.2)
            upload = client.post("/api/photos", files={"file": ("a.jpg", jpeg_bytes(seed=51))})
            assert upload.status_code == 202
        log = next(tmp_path.glob("serve-*.log")).read_text()
        assert "Traceback" not in log
    finally:
        stop_server(server)
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_selfie_decodes_wait_their_turn_so_memory_stays_bounded(
    tmp_path: Path, png_bomb: bytes
) -> None:
    """With the decoded-size guard raised so the bombs are decoded (~350 MB each), one decode
    at a time (serve.max_concurrent_decodes = 1) keeps three parallel posts at one's peak."""
    url = f"sqlite:///{tmp_path / 'data' / 'photoctl.db'}"
    from photoctl import config

    settings = config.load(
        data_dir=str(tmp_path / "data"), environ={}, overrides={"database.url": url}
    )
    engine = db.make_engine(settings)
    db.ensure_schema(engine)
    tokens = [users.add_user(engine, f"user{n}")[1] for n in range(3)]
    engine.dispose()
    server = start_server(
        tmp_path,
        url,
        PHOTOCTL_SERVE_MAX_DECODE_PIXELS="100000000",
        PHOTOCTL_SERVE_MAX_CONCURRENT_DECODES="1",
        # Three ~350 MB decodes in turn: on a loaded machine the last waits well past 20 s.
        PHOTOCTL_SERVE_DECODE_WAIT_SECONDS="300",
    )
    try:

        def post(token: str) -> int:
            with server.client(token) as client:
                return client.post(
                    "/api/me/selfie", files={"file": ("me.png", png_bomb)}
                ).status_code

        with ThreadPoolExecutor(3) as pool:
            statuses = list(pool.map(post, tokens))
        peak = peak_rss_mb(server.process.pid)
        assert statuses == [422] * 3  # decoded, no face in a white square
        assert peak < 700, f"serve peaked at {peak:.0f} MB: decodes ran side by side"
    finally:
        stop_server(server)
