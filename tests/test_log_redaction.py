"""Gallery tokens never appear in a log line (issue 20, item 3).

A real `photoctl -v serve` (the access log on) with a shared log file, in text and JSON, on
SQLite and PostgreSQL: a participant opens every kind of gallery route, one of which fails with
an unexpected error (a photo row whose path holds a NUL: the 500 handler's line and uvicorn's
traceback both name the path). Neither the terminal output nor the file may hold the token;
both must still say which route was asked for, with the token replaced by ``***``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from photoctl import db
from photoctl.api.log_redaction import redact_paths
from photoctl.models import Photo
from tests.support.cli import photoctl_env, start_photoctl
from tests.support.galleries import SeededGallery, seed_gallery
from tests.support.serve import Server, free_port, stop_server

NAMES = ["IMG_0001.jpg", "IMG_0002.jpg"]


@pytest.fixture
def seeded(tmp_path: Path, settings, engine) -> SeededGallery:
    return seed_gallery(settings, engine, tmp_path / "event", NAMES)


def start_verbose_server(env: dict[str, str], output: Path) -> Server:
    port = free_port()
    process = start_photoctl(["-v", "serve", "--port", str(port)], env, output)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Server(url, process, env)
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, output.read_text()
        time.sleep(0.1)


@pytest.fixture(params=["text", "json"])
def logged(
    request, tmp_path: Path, db_url: str, seeded: SeededGallery
) -> Iterator[tuple[Server, Path, Path]]:
    log_file = tmp_path / "logs" / "photoctl.log"
    env = photoctl_env(
        tmp_path, db_url, PHOTOCTL_LOG_FILE=str(log_file), PHOTOCTL_LOG_FORMAT=request.param
    )
    output = tmp_path / "serve-output.log"  # stdout (the access log) and stderr together
    server = start_verbose_server(env, output)
    yield server, output, log_file
    stop_server(server)


def test_gallery_tokens_appear_in_no_log_line(
    logged: tuple[Server, Path, Path], seeded: SeededGallery, engine
) -> None:
    server, output, log_file = logged
    token = seeded.token
    first, second = (seeded.photo_ids[name] for name in NAMES)
    with server.client() as client:
        for path in (
            f"/g/{token}",
            f"/api/g/{token}?limit=1",
            f"/g/{token}/photos/{first}",
            f"/g/{token}/photos/{first}/thumb",
            f"/api/g/{token}/photos/{first}/preview",
            f"/g/{token}/photos/{first}/original",
            f"/g/{token}/zip",
            f"/g/{token}/delete",
        ):
            assert client.get(path).status_code == 200, path
    with db.write(engine) as conn:
        conn.execute(update(Photo).where(Photo.id == second).values(source_path=b"/tmp/a\x00b"))
    with server.client() as client:
        assert client.get(f"/g/{token}/photos/{second}/original").status_code == 500
    with server.client() as client:
        assert client.get(f"/api/g/{token}/photos/{second}/original").status_code == 500
    stop_server(server)

    printed, filed = output.read_text(), log_file.read_text()
    for where, text in (("terminal", printed), ("log file", filed)):
        assert token not in text, f"the gallery token is in the {where}"
        assert token[:12] not in text, f"part of the gallery token is in the {where}"
        assert f"unhandled error on GET /api/g/***/photos/{second}/original" in text, where
    # The access log still says what was asked for, and how it went.
    assert f'"GET /g/***/photos/{first}/thumb HTTP/1.1" 200' in printed
    assert f'"GET /g/***/photos/{second}/original HTTP/1.1" 500' in printed
    assert "embedded null" in printed, "the traceback is still logged, only redacted"


def test_redaction_keeps_everything_but_the_token() -> None:
    assert redact_paths('1.2.3.4 - "GET /g/abc-_D9/zip HTTP/1.1" 200') == (
        '1.2.3.4 - "GET /g/***/zip HTTP/1.1" 200'
    )
    assert redact_paths("on GET /api/g/tok?limit=1") == "on GET /api/g/***?limit=1"
    assert redact_paths("see https://photos.example/g/tok/photos/3") == (
        "see https://photos.example/g/***/photos/3"
    )
    assert redact_paths("/g/tok") == "/g/***"
    # Paths that are not a gallery's stay as they are.
    assert redact_paths("GET /e/gala/g/x and /img/g/x.jpg") == "GET /e/gala/g/x and /img/g/x.jpg"
