"""The HTTP API, over real HTTP to a real `photoctl serve`, on SQLite and on PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from photoctl import config, db, faces, users
from photoctl.ingest import ingest_paths
from photoctl.worker import drain_in_process
from testkit.photos import settle, write_photo
from tests.support.cli import run_photoctl
from tests.support.serve import Server, start_server, stop_server

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


def test_users_get_their_own_photos_newest_first_with_pagination(server, event) -> None:
    with server.client(event.tokens["obama"]) as client:
        first = client.get("/api/my-photos", params={"limit": 1})
        assert first.status_code == 200
        page = first.json()
        assert [p["filename"] for p in page["photos"]] == ["obama_3.jpg"]
        item = page["photos"][0]
        assert set(item) == {
            "id",
            "filename",
            "album",
            "taken_at",
            "width",
            "height",
            "similarity",
            "thumb_url",
            "preview_url",
        }
        assert item["album"] == "Gala" and 40 <= item["similarity"] <= 100
        second = client.get(
            "/api/my-photos", params={"limit": 1, "cursor": page["next_cursor"]}
        ).json()
        assert [p["filename"] for p in second["photos"]] == ["obama_2.jpg"]
        assert second["next_cursor"] is None
        thumb = client.get(item["thumb_url"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert client.get(item["preview_url"]).status_code == 200
        original = client.get(f"/api/photos/{item['id']}/original")
        assert original.content == (DATA / "obama_3.jpg").read_bytes()


def test_a_user_never_sees_another_users_photos(server, event) -> None:
    biden_photo = event.photo_ids["biden.jpg"]
    with server.client(event.tokens["obama"]) as client:
        for variant in ("thumb", "preview", "original"):
            answer = client.get(f"/api/photos/{biden_photo}/{variant}")
            assert answer.status_code == 404 and answer.json() == {"detail": "Photo not found"}
        gallery = client.get("/api/all-photos").json()
        assert {p["filename"] for p in gallery["photos"]} == {"obama_2.jpg", "obama_3.jpg"}
        assert client.get("/api/photos/999999/thumb").status_code == 404
    with server.client(event.tokens["boss"]) as admin:
        everything = admin.get("/api/all-photos", params={"limit": 200}).json()
        assert len(everything["photos"]) == 8
        assert admin.get(f"/api/photos/{biden_photo}/thumb").status_code == 200
        assert admin.get("/api/all-photos", params={"album": "nope"}).json()["photos"] == []


def test_authentication_and_admin_routes_answer_the_right_status(server, event) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    anonymous = httpx.get(f"{server.url}/api/my-photos")
    assert anonymous.status_code == 401 and anonymous.json() == {"detail": "Missing bearer token"}
    with server.client("not-a-token") as client:
        assert client.get("/api/my-photos").status_code == 401
    with server.client(event.tokens["obama"]) as user:
        for method, path in [
            ("GET", "/api/admin/queue/stats"),
            ("POST", "/api/admin/cache/clear"),
            ("GET", "/metrics"),
            ("GET", "/api/admin/queue/jobs/abc"),
            ("POST", "/api/admin/jobs/abc/retry"),
        ]:
            answer = user.request(method, path)
            assert answer.status_code == 403 and answer.json() == {"detail": "Admins only"}
        bad = user.get("/api/my-photos", params={"limit": "many"})
        assert bad.status_code == 422 and "limit" in bad.json()["detail"]
        assert user.get("/api/my-photos", params={"limit": 0}).status_code == 422
    with server.client(event.tokens["boss"]) as admin:
        stats = admin.get("/api/admin/queue/stats").json()
        assert set(stats["queue"]) >= {
            "total_enqueued",
            "total_processed",
            "total_failed",
            "current_queue_size",
            "running",
            "workers_active",
            "oldest_queued_seconds",
            "processed_last_minute",
        }
        assert set(stats["cache"]["user_photos_cache"]) == {"size", "hits", "misses", "hit_rate"}
        assert stats["photos"]["done"] == 8
        assert stats["time_to_findable"]["count"] == 3
        jobs = run_photoctl(["jobs", "list", "--json", "--limit", "1"], server.env).stdout
        job_id = jobs.split('"id": "')[1].split('"')[0]
        job = admin.get(f"/api/admin/queue/jobs/{job_id}").json()
        assert job["state"] == "done" and job["attempts"] == 1
        assert admin.get("/api/admin/queue/jobs/ffffffff").status_code == 404
        assert admin.post(f"/api/admin/jobs/{job_id}/retry").json()["retried"] == 1
        assert admin.post(f"/api/admin/jobs/{job_id}/retry").status_code == 409
        metrics = admin.get("/metrics")
        assert metrics.status_code == 200
        assert "photoctl_time_to_findable_seconds_bucket" in metrics.text
        assert "photoctl_queue_current_queue_size 1.0" in metrics.text


def test_login_gives_a_working_token_and_is_rate_limited(server, event) -> None:
    answer = httpx.post(f"{server.url}/api/login", json={"name": "boss", "password": "s3cret"})
    assert answer.status_code == 200
    with server.client(answer.json()["token"]) as client:
        assert client.get("/api/admin/queue/stats").status_code == 200
    wrong = httpx.post(f"{server.url}/api/login", json={"name": "boss", "password": "nope"})
    assert wrong.status_code == 401 and wrong.json() == {"detail": "Invalid name or password"}
    statuses = [
        httpx.post(f"{server.url}/api/login", json={"name": "boss", "password": "nope"}).status_code
        for _ in range(10)
    ]
    assert statuses[-1] == 429 and statuses.count(401) == 8
    limited = httpx.post(f"{server.url}/api/login", json={"name": "boss", "password": "s3cret"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert httpx.post(f"{server.url}/api/login", json={"name": ""}).status_code == 422


def test_uploads_are_accepted_at_once_and_enqueued(server, event, tmp_path) -> None:
    photo = write_photo(tmp_path / "new.jpg", seed=77, size=(1200, 800))
    with server.client(event.tokens["obama"]) as client:
        started = time.monotonic()
        answer = client.post("/api/photos", files={"file": ("new.jpg", photo.read_bytes())})
        assert answer.status_code == 202
        assert time.monotonic() - started < 5  # generous; the benchmark measures properly
        body = answer.json()
        assert body["photo_id"] > 0 and len(body["job_id"]) == 32 and not body["duplicate"]
        again = client.post("/api/photos", files={"file": ("again.jpg", photo.read_bytes())})
        assert again.json()["duplicate"] and again.json()["photo_id"] == body["photo_id"]
        text = client.post("/api/photos", files={"file": ("x.jpg", b"hello, not a photo")})
        assert text.status_code == 415 and "not an image" in text.json()["detail"]
        missing = client.post("/api/photos")
        assert missing.status_code == 422
    job = run_photoctl(["jobs", "show", body["job_id"]], server.env).stdout
    assert "queued" in job


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


def test_cache_hits_drops_on_a_new_match_and_clears_from_the_cli(server, event, tmp_path) -> None:
    def cache_figures() -> dict:
        import json

        return json.loads(run_photoctl(["cache", "stats", "--json"], server.env).stdout)

    run_photoctl(["cache", "clear"], server.env)
    with server.client(event.tokens["obama"]) as client:
        assert len(client.get("/api/my-photos").json()["photos"]) == 2
        assert len(client.get("/api/my-photos").json()["photos"]) == 2
        assert cache_figures()["hits"] == 1 and cache_figures()["misses"] == 1
        # A new photo of Obama is processed: his cached list is dropped, not kept for 30 s.
        folder = tmp_path / "late"
        folder.mkdir()
        shutil.copy(DATA / "obama_1.jpg", folder / "late-obama.jpg")
        settle(folder / "late-obama.jpg")
        ingest_paths(event.database, event.settings, [str(folder)])
        drain_in_process(event.settings, "local")
        names = [p["filename"] for p in client.get("/api/my-photos").json()["photos"]]
        assert names[0] == "late-obama.jpg" and len(names) == 3
        assert cache_figures()["size"] >= 1
        cleared = run_photoctl(["cache", "clear"], server.env)
        assert cleared.returncode == 0
        assert cache_figures() == {"size": 0, "hits": 0, "misses": 0, "hit_rate": 0.0}
        client.get("/api/my-photos")
        assert cache_figures()["misses"] == 1


def test_a_full_queue_refuses_uploads_with_retry_after(tmp_path, db_url, event) -> None:
    full = start_server(tmp_path, db_url, PHOTO_QUEUE_MAX_SIZE="1")
    try:
        with full.client(event.tokens["obama"]) as client:
            first = client.post(
                "/api/photos",
                files={"file": ("a.jpg", write_photo(tmp_path / "a.jpg", seed=901).read_bytes())},
            )
            assert first.status_code == 202
            refused = client.post(
                "/api/photos",
                files={"file": ("b.jpg", write_photo(tmp_path / "b.jpg", seed=902).read_bytes())},
            )
            assert refused.status_code == 503
            assert refused.json() == {"detail": "Queue is full, try again later"}
            assert int(refused.headers["Retry-After"]) > 0
    finally:
        stop_server(full)


@pytest.mark.slow
def test_two_workers_share_the_cache_and_the_rate_limits(tmp_path, db_url, event) -> None:
    pair = start_server(tmp_path, db_url, "--workers", "2", PHOTOCTL_SERVE_UPLOAD_RATE="6/minute")
    try:
        run_photoctl(["cache", "clear"], pair.env)
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:
            with pair.client(event.tokens["obama"]) as client:  # new connection each time
                answer = client.get("/api/my-photos")
                assert answer.status_code == 200
                seen.add(answer.headers["X-Photoctl-Worker"])
        assert len(seen) == 2, "both workers answered"
        import json

        figures = json.loads(run_photoctl(["cache", "stats", "--json"], pair.env).stdout)
        assert figures["misses"] == 1, "one miss in all: the other worker hit the shared entry"

        answered_by: dict[str, list[int]] = {}
        for seed in range(10):
            with pair.client(event.tokens["biden"]) as client:
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
def test_generated_requests_never_get_a_server_error(server, event) -> None:
    """schemathesis explores the OpenAPI document of the running server."""
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--phases",
            "examples,coverage,fuzzing",
            "--header",
            f"Authorization: Bearer {event.tokens['boss']}",
            "--workers",
            "1",
            "--suppress-health-check",
            "all",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=server.env["PHOTOCTL_DATA_DIR"],
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
