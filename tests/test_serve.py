"""The HTTP API over real HTTP to a real `photoctl serve`, on SQLite and on PostgreSQL.

Only what needs separate processes or a real socket is tested here: serve started by the CLI,
enrollment through a real selfie (dlib in the serve process), a worker process dropping the list
a serve process cached, the CLI clearing it, `--workers 2` sharing the cache and the rate limits,
and schemathesis over the network. What a route answers is tested in-process, without dlib, in
tests/test_api.py. Other test files import ``start_server`` and ``Server`` from here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from photoctl import config, db, faces, users
from photoctl.ingest import ingest_paths
from photoctl.worker import drain_in_process
from testkit.photos import settle, write_photo
from tests.support.cli import run_photoctl
from tests.support.serve import Server, start_server, stop_server
from tests.test_api import Seeded, seed_event

DATA = Path(__file__).parent / "data"


@dataclass
class Event:
    settings: config.Settings
    database: object
    tokens: dict[str, str]
    photo_ids: dict[str, int]


@pytest.fixture
def event(tmp_path: Path, settings, engine) -> Event:
    """Obama twice, Biden once, five photos without faces; users obama, biden, boss (admin)."""
    folder = tmp_path / "event"
    folder.mkdir()
    for name in ("obama_2.jpg", "obama_3.jpg", "biden.jpg"):
        shutil.copy(DATA / name, folder / name)
        settle(folder / name)
    for index in range(5):
        write_photo(folder / f"scenery_{index}.jpg", seed=index)
    local = faces.make_engine("local", settings, engine)
    tokens = {}
    for name, selfie in (("obama", "obama_1.jpg"), ("biden", "biden.jpg")):
        _, tokens[name] = users.add_user(engine, name)
        users.enroll(engine, local, settings, name, DATA / selfie)
    _, tokens["boss"] = users.add_user(engine, "boss", admin=True, password="s3cret")
    _, tokens["nobody"] = users.add_user(engine, "nobody")
    ingest_paths(engine, settings, [str(folder)], album="Gala")
    assert drain_in_process(settings, "local").failed == 0
    from sqlalchemy import select

    from photoctl.models import Photo

    with db.read(engine) as conn:
        photo_ids = dict(conn.execute(select(Photo.filename, Photo.id)).all())
    return Event(settings, engine, tokens, photo_ids)


@pytest.fixture
def server(tmp_path: Path, db_url: str, event: Event) -> Iterator[Server]:
    running = start_server(tmp_path, db_url, PHOTOCTL_SERVE_LOGIN_RATE="10/minute")
    yield running
    stop_server(running)


@pytest.fixture
def seeded(tmp_path: Path, settings, engine) -> Seeded:
    """The same event with its matches written directly (no dlib), for tests that need
    processes but not a face engine."""
    return seed_event(tmp_path, settings, engine)


@pytest.fixture
def seeded_server(tmp_path: Path, db_url: str, seeded: Seeded) -> Iterator[Server]:
    running = start_server(tmp_path, db_url, PHOTOCTL_SERVE_LOGIN_RATE="10/minute")
    yield running
    stop_server(running)


def test_enrolling_through_the_api_finds_existing_photos(server, event) -> None:
    with server.client(event.tokens["nobody"]) as client:
        answer = client.post(
            "/api/me/selfie", files={"file": ("me.jpg", (DATA / "biden.jpg").read_bytes())}
        )
        assert answer.status_code == 200 and answer.json() == {"matched_photos": 1}
        assert [p["filename"] for p in client.get("/api/my-photos").json()["photos"]] == [
            "biden.jpg"
        ]
        no_face = client.post(
            "/api/me/selfie",
            files={"file": ("wall.jpg", write_photo(Path("wall.jpg"), seed=5).read_bytes())},
        )
        assert no_face.status_code == 422 and "no face" in no_face.json()["detail"]


def counted_cache_figures(env: dict[str, str], requests: int) -> dict:
    """`photoctl cache stats --json` once serve has counted ``requests`` cached reads: serve
    adds its hits and misses to the shared counters at most every 0.25 s (cache.py)."""
    deadline = time.monotonic() + 10
    while True:
        figures = json.loads(run_photoctl(["cache", "stats", "--json"], env).stdout)
        if figures["hits"] + figures["misses"] >= requests or time.monotonic() > deadline:
            return figures
        time.sleep(0.1)


def test_cache_hits_drops_on_a_new_match_and_clears_from_the_cli(server, event, tmp_path) -> None:
    def cache_figures(requests: int = 0) -> dict:
        return counted_cache_figures(server.env, requests)

    run_photoctl(["cache", "clear"], server.env)
    with server.client(event.tokens["obama"]) as client:
        assert len(client.get("/api/my-photos").json()["photos"]) == 2
        assert len(client.get("/api/my-photos").json()["photos"]) == 2
        figures = cache_figures(requests=2)
        assert figures["hits"] == 1 and figures["misses"] == 1
        # A new photo of Obama is processed: his cached list is dropped, not kept for 30 s.
        folder = tmp_path / "late"
        folder.mkdir()
        shutil.copy(DATA / "obama_1.jpg", folder / "late-obama.jpg")
        settle(folder / "late-obama.jpg")
        ingest_paths(event.database, event.settings, [str(folder)])
        drain_in_process(event.settings, "local")
        names = [p["filename"] for p in client.get("/api/my-photos").json()["photos"]]
        assert names[0] == "late-obama.jpg" and len(names) == 3
        # Every read counted before the clear, so none is added after it.
        assert cache_figures(requests=3)["size"] >= 1
        cleared = run_photoctl(["cache", "clear"], server.env)
        assert cleared.returncode == 0
        assert cache_figures() == {"size": 0, "hits": 0, "misses": 0, "hit_rate": 0.0}
        client.get("/api/my-photos")
        assert cache_figures(requests=1)["misses"] == 1


@pytest.mark.slow
def test_two_workers_share_the_cache_and_the_rate_limits(tmp_path, db_url, seeded) -> None:
    pair = start_server(tmp_path, db_url, "--workers", "2", PHOTOCTL_SERVE_UPLOAD_RATE="6/minute")
    try:
        run_photoctl(["cache", "clear"], pair.env)
        seen: set[str] = set()
        requests = 0
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:
            with pair.client(seeded.tokens["obama"]) as client:  # new connection each time
                answer = client.get("/api/my-photos")
                requests += 1
                assert answer.status_code == 200
                seen.add(answer.headers["X-Photoctl-Worker"])
        assert len(seen) == 2, "both workers answered"
        figures = counted_cache_figures(pair.env, requests)
        assert figures["hits"] + figures["misses"] == requests, figures
        assert figures["misses"] == 1, "one miss in all: the other worker hit the shared entry"

        answered_by: dict[str, list[int]] = {}
        for seed in range(10):
            with pair.client(seeded.tokens["biden"]) as client:
                data = write_photo(tmp_path / f"up{seed}.jpg", seed=100 + seed).read_bytes()
                answer = client.post("/api/photos", files={"file": ("x.jpg", data)})
                answered_by.setdefault(answer.headers["X-Photoctl-Worker"], []).append(
                    answer.status_code
                )
        statuses = [status for codes in answered_by.values() for status in codes]
        assert statuses.count(202) == 6 and statuses.count(429) == 4
    finally:
        stop_server(pair)


@pytest.mark.slow
def test_generated_requests_never_get_a_server_error(seeded_server, seeded) -> None:
    """schemathesis explores the OpenAPI document of the running server."""
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{seeded_server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--phases",
            "examples,coverage,fuzzing",
            "--header",
            f"Authorization: Bearer {seeded.tokens['boss']}",
            "--workers",
            "1",
            "--suppress-health-check",
            "all",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=seeded_server.env["PHOTOCTL_DATA_DIR"],
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_serve_processes_freeze_the_heap_they_start_with(tmp_path, monkeypatch) -> None:
    """uvicorn's factory leaves the start-up heap out of garbage collections (full ones paused
    serve for tens of ms); the app itself still works."""
    import gc

    from fastapi.testclient import TestClient

    from photoctl.api import app as app_module

    monkeypatch.setenv("PHOTOCTL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PHOTOCTL_DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'p.db'}")
    monkeypatch.setattr(app_module, "setup_logging", lambda settings: None)
    frozen_before = gc.get_freeze_count()
    try:
        app = app_module.app_from_env()
        assert gc.get_freeze_count() > frozen_before + 10_000
        with TestClient(app) as client:
            assert client.get("/healthz").status_code == 200
    finally:
        gc.unfreeze()
