"""The HTTP API in-process (FastAPI's TestClient), on SQLite and on PostgreSQL, without dlib.

Why: tests/test_serve.py starts a real `photoctl serve` and enrolls users with dlib for every
test, which costs seconds each. What the routes answer does not depend on separate processes, so
these tests build the app with ``create_app(settings)`` (its lifespan runs inside
``with TestClient(app)``) and seed the faces and matches a face engine would have found straight
into the tables. The photos themselves are real: ingested and processed by the real pipeline with
the ``none`` face engine, so thumbnails, previews and originals are real files.

Seeding goes through the ``photoctl.models`` tables with SQLAlchemy Core, not through the face
modules, so the file does not depend on how those are named or split. What needs separate
processes (the CLI starting serve, ``--workers 2``, a worker dropping a serve process's cached
list, enrollment through a real selfie) stays in tests/test_serve.py.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from photoctl import config, db, users
from photoctl.api.app import create_app
from photoctl.ingest import ingest_paths
from photoctl.models import Face, Job, Match, Photo
from photoctl.worker import drain_in_process
from testkit.photos import settle, write_photo

DATA = Path(__file__).parent / "data"

# Who appears in which photo, as the local engine finds them (tests/test_serve.py's event).
APPEARS_IN = {"obama_2.jpg": "obama", "obama_3.jpg": "obama", "biden.jpg": "biden"}


@dataclass
class Seeded:
    settings: config.Settings
    database: Engine
    tokens: dict[str, str]
    user_ids: dict[str, int]
    photo_ids: dict[str, int]


def seed_match(database: Engine, photo_id: int, user_id: int, similarity: float = 93.5) -> None:
    """One face in the photo, matched to the user and findable now, as a processed job leaves it."""
    now = time.time()
    with db.write(database) as conn:
        face_id = conn.execute(
            Face.__table__.insert()
            .values(
                photo_id=photo_id,
                engine="local",
                face_index=0,
                box_left=0.4,
                box_top=0.2,
                box_width=0.2,
                box_height=0.3,
                score=0.99,
                embedding=bytes(128 * 4),
            )
            .returning(Face.__table__.c.id)
        ).scalar_one()
        conn.execute(
            Match.__table__.insert().values(
                photo_id=photo_id,
                user_id=user_id,
                face_id=face_id,
                similarity=similarity,
                matched_at=now,
                source="photo",
                findable_at=now,
            )
        )


def photo_ids_by_name(database: Engine) -> dict[str, int]:
    with db.read(database) as conn:
        return dict(conn.execute(select(Photo.filename, Photo.id)).all())


def seed_event(tmp_path: Path, settings: config.Settings, database: Engine) -> Seeded:
    """Obama twice, Biden once, five photos without faces; users obama, biden, boss (admin),
    nobody. The same event as tests/test_serve.py's, with the matches written directly."""
    folder = tmp_path / "event"
    folder.mkdir()
    for name in APPEARS_IN:
        shutil.copy(DATA / name, folder / name)
        settle(folder / name)
    for index in range(5):
        write_photo(folder / f"scenery_{index}.jpg", seed=index)
    tokens: dict[str, str] = {}
    for name in ("obama", "biden", "nobody"):
        _, tokens[name] = users.add_user(database, name)
    _, tokens["boss"] = users.add_user(database, "boss", admin=True, password="s3cret")
    user_ids = {name: users.user_id_by_name(database, name) for name in tokens}
    ingest_paths(database, settings, [str(folder)], album="Gala")
    # Real thumbnails, previews and metadata; no face engine (no dlib).
    assert drain_in_process(settings, "none").failed == 0
    photo_ids = photo_ids_by_name(database)
    for filename, name in APPEARS_IN.items():
        seed_match(database, photo_ids[filename], user_ids[name])
    return Seeded(settings, database, tokens, user_ids, photo_ids)


def serve_settings(tmp_path: Path, db_url: str, **overrides: object) -> config.Settings:
    """The settings `photoctl serve` would load for this test's data dir and database."""
    return config.load(
        data_dir=str(tmp_path / "data"),
        environ={},
        overrides={"database.url": db_url, **overrides},
    )


@pytest.fixture
def event(tmp_path: Path, settings: config.Settings, engine: Engine) -> Seeded:
    return seed_event(tmp_path, settings, engine)


class Api:
    """One TestClient over one in-process app (its lifespan open), re-pointed per caller.

    ``as_(token)`` sets the client's bearer token and returns the client: every call re-points
    the same client, so use the one returned last (one lifespan per test, as one server was)."""

    def __init__(self, client: TestClient) -> None:
        self.raw = client

    def as_(self, token: str | None) -> TestClient:
        self.raw.headers.pop("Authorization", None)
        if token:
            self.raw.headers["Authorization"] = f"Bearer {token}"
        return self.raw


def open_api(settings: config.Settings) -> Iterator[Api]:
    with TestClient(create_app(settings)) as client:
        yield Api(client)


@pytest.fixture
def api(tmp_path: Path, db_url: str, event: Seeded) -> Iterator[Api]:
    # The login rate test_serve.py's server ran with (also the default).
    yield from open_api(serve_settings(tmp_path, db_url, **{"serve.login_rate": "10/minute"}))


def test_users_get_their_own_photos_newest_first_with_pagination(api, event) -> None:
    client = api.as_(event.tokens["obama"])
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
    second = client.get("/api/my-photos", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [p["filename"] for p in second["photos"]] == ["obama_2.jpg"]
    assert second["next_cursor"] is None
    thumb = client.get(item["thumb_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert client.get(item["preview_url"]).status_code == 200
    original = client.get(f"/api/photos/{item['id']}/original")
    assert original.content == (DATA / "obama_3.jpg").read_bytes()


def test_a_user_never_sees_another_users_photos(api, event) -> None:
    biden_photo = event.photo_ids["biden.jpg"]
    client = api.as_(event.tokens["obama"])
    for variant in ("thumb", "preview", "original"):
        answer = client.get(f"/api/photos/{biden_photo}/{variant}")
        assert answer.status_code == 404 and answer.json() == {"detail": "Photo not found"}
    gallery = client.get("/api/all-photos").json()
    assert {p["filename"] for p in gallery["photos"]} == {"obama_2.jpg", "obama_3.jpg"}
    assert client.get("/api/photos/999999/thumb").status_code == 404
    admin = api.as_(event.tokens["boss"])
    everything = admin.get("/api/all-photos", params={"limit": 200}).json()
    assert len(everything["photos"]) == 8
    assert admin.get(f"/api/photos/{biden_photo}/thumb").status_code == 200
    assert admin.get("/api/all-photos", params={"album": "nope"}).json()["photos"] == []


def test_authentication_and_admin_routes_answer_the_right_status(api, event) -> None:
    assert api.as_(None).get("/healthz").json() == {"status": "ok"}
    anonymous = api.as_(None).get("/api/my-photos")
    assert anonymous.status_code == 401 and anonymous.json() == {"detail": "Missing bearer token"}
    assert api.as_("not-a-token").get("/api/my-photos").status_code == 401
    user = api.as_(event.tokens["obama"])
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
    admin = api.as_(event.tokens["boss"])
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
    with db.read(event.database) as conn:
        job_id = conn.execute(select(Job.id).limit(1)).scalar_one()
    job = admin.get(f"/api/admin/queue/jobs/{job_id}").json()
    assert job["state"] == "done" and job["attempts"] == 1
    assert admin.get("/api/admin/queue/jobs/ffffffff").status_code == 404
    assert admin.post(f"/api/admin/jobs/{job_id}/retry").json()["retried"] == 1
    assert admin.post(f"/api/admin/jobs/{job_id}/retry").status_code == 409
    metrics = admin.get("/metrics")
    assert metrics.status_code == 200
    assert "photoctl_time_to_findable_seconds_bucket" in metrics.text
    assert "photoctl_queue_current_queue_size 1.0" in metrics.text


def test_login_gives_a_working_token_and_is_rate_limited(api, event) -> None:
    anonymous = api.as_(None)
    answer = anonymous.post("/api/login", json={"name": "boss", "password": "s3cret"})
    assert answer.status_code == 200
    assert api.as_(answer.json()["token"]).get("/api/admin/queue/stats").status_code == 200
    anonymous = api.as_(None)
    wrong = anonymous.post("/api/login", json={"name": "boss", "password": "nope"})
    assert wrong.status_code == 401 and wrong.json() == {"detail": "Invalid name or password"}
    statuses = [
        anonymous.post("/api/login", json={"name": "boss", "password": "nope"}).status_code
        for _ in range(10)
    ]
    assert statuses[-1] == 429 and statuses.count(401) == 8
    limited = anonymous.post("/api/login", json={"name": "boss", "password": "s3cret"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert anonymous.post("/api/login", json={"name": ""}).status_code == 422


def test_a_login_name_no_user_can_have_is_refused_not_a_server_error(api, event) -> None:
    """A NUL cannot be stored in PostgreSQL text (schemathesis found the 500 there), and a lone
    surrogate cannot be encoded for either database."""
    anonymous = api.as_(None)
    for name in ("a\x00b", "\x00"):
        answer = anonymous.post("/api/login", json={"name": name, "password": "guess"})
        assert answer.status_code == 422, (name, answer.text)
    lone_surrogate = b'{"name": "a\\ud800b", "password": "guess"}'
    answer = anonymous.post(
        "/api/login", content=lone_surrogate, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code in (401, 422), answer.text


def test_uploads_are_accepted_at_once_and_enqueued(api, event, tmp_path) -> None:
    photo = write_photo(tmp_path / "new.jpg", seed=77, size=(1200, 800))
    client = api.as_(event.tokens["obama"])
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
    # What `photoctl jobs show <id>` reads: the upload's job waits in the queue.
    with db.read(event.database) as conn:
        state = conn.execute(select(Job.state).where(Job.id == body["job_id"])).scalar_one()
    assert state == "queued"


def counted(cache, **expected: object) -> dict:
    """The cache's figures once they show ``expected``. Requests count hits and misses from a
    background thread (cache.py), which may hold a count in flight while the test reads: poll."""
    deadline = time.monotonic() + 10
    while True:
        figures = cache.stats()
        if all(figures[key] == value for key, value in expected.items()):
            return figures
        assert time.monotonic() < deadline, figures
        time.sleep(0.02)


def test_cache_hits_a_second_request_and_drops_a_users_list_on_a_new_match(
    api,
    event,
    tmp_path,
) -> None:
    """In one process: hit and miss counts, and a dropped user tag (what a worker does after a
    new match; tests/test_serve.py checks it across processes with a real worker)."""
    cache = api.raw.app.state.services.cache
    cache.clear()
    client = api.as_(event.tokens["obama"])
    assert len(client.get("/api/my-photos").json()["photos"]) == 2
    assert len(client.get("/api/my-photos").json()["photos"]) == 2
    counted(cache, hits=1, misses=1)
    folder = tmp_path / "late"
    folder.mkdir()
    write_photo(folder / "late-obama.jpg", seed=4242)
    ingest_paths(event.database, event.settings, [str(folder)])
    assert drain_in_process(event.settings, "none").failed == 0
    late = photo_ids_by_name(event.database)["late-obama.jpg"]
    seed_match(event.database, late, event.user_ids["obama"])
    # Not dropped yet: the cached list is still served.
    assert len(client.get("/api/my-photos").json()["photos"]) == 2
    cache.drop_users([event.user_ids["obama"]])
    names = [p["filename"] for p in client.get("/api/my-photos").json()["photos"]]
    assert names[0] == "late-obama.jpg" and len(names) == 3
    # Settled before the clear: a count still in flight would land after it.
    assert counted(cache, hits=2, misses=2)["size"] >= 1
    admin = api.as_(event.tokens["boss"])
    assert admin.post("/api/admin/cache/clear").status_code == 200
    assert counted(cache, size=0, hits=0, misses=0) == {
        "size": 0,
        "hits": 0,
        "misses": 0,
        "hit_rate": 0.0,
    }
    api.as_(event.tokens["obama"]).get("/api/my-photos")
    counted(cache, misses=1)


def test_a_full_queue_refuses_uploads_with_retry_after(tmp_path, db_url, event) -> None:
    for api in open_api(serve_settings(tmp_path, db_url, **{"queue.max_size": 1})):
        client = api.as_(event.tokens["obama"])
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
