"""The participant pages and their JSON twins in-process (TestClient), on SQLite and PostgreSQL.

Why here and not in a browser: what a route answers (status, JSON, headers, the zip's members,
refusals of cross-site and stale forms, rate limits) does not need Chromium or dlib. Photos are
real (ingested and processed by the pipeline with the ``none`` engine); participants and their
matches are seeded into the tables as enrollment would leave them. Enrollment through a real
selfie, and what a person sees, are in tests/test_participant_browser.py.
"""

from __future__ import annotations

import datetime
import io
import json
import pickle
import re
import shutil
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import Engine, select

from photoctl import config, db, events, participant_store, users
from photoctl import gallery as gallery_module
from photoctl.api import csrf, gallery_grid
from photoctl.api.app import create_app
from photoctl.api.processing_figures import ProcessingFigures
from photoctl.cache import ResponseCache
from photoctl.ingest import ingest_paths
from photoctl.models import Match, Photo
from photoctl.worker import drain_in_process
from testkit.photos import jpeg_bytes, settle, write_photo
from tests.test_api import seed_match, serve_settings

DATA = Path(__file__).parent / "data"
SLUG = "gala-2026"


@dataclass
class Gallery:
    settings: config.Settings
    database: Engine
    event: events.Event
    tokens: dict[str, str]  # participant name -> gallery token
    ids: dict[str, int]  # participant name -> id
    photo_ids: dict[str, int]  # filename -> photo id


def add_participant(database: Engine, event: events.Event, name: str) -> tuple[int, str]:
    """A participant row as enrollment leaves it (the selfie itself is not needed here)."""
    token = users.new_token()
    with db.write(database) as conn:
        participant_id = participant_store.insert_participant(
            conn,
            event_id=event.id,
            name=name,
            token_hash=users.hash_token(users.new_token()),
            gallery_token_hash=users.hash_token(token),
            consent_version=event.consent_version,
            now=time.time(),
        )
    return participant_id, token


@pytest.fixture
def gallery(tmp_path: Path, settings: config.Settings, engine: Engine) -> Gallery:
    """Event gala-2026: obama_2, obama_3 (ann's), biden (bob's), two without faces."""
    event = events.create_event(
        engine, SLUG, title="Charity Gala", date="2026-05-03", retention_days=60
    )
    folder = tmp_path / "event"
    folder.mkdir()
    for name in ("obama_2.jpg", "obama_3.jpg", "biden.jpg"):
        shutil.copy(DATA / name, folder / name)
        settle(folder / name)
    for index in range(2):
        write_photo(folder / f"scenery_{index}.jpg", seed=index)
    ingest_paths(engine, settings, [str(folder)], event_id=event.id)
    assert drain_in_process(settings, "none").failed == 0
    with db.read(engine) as conn:
        photo_ids = dict(conn.execute(select(Photo.filename, Photo.id)).all())
    tokens, ids = {}, {}
    for name in ("ann", "bob"):
        ids[name], tokens[name] = add_participant(engine, event, f"p-{name}")
    for filename in ("obama_2.jpg", "obama_3.jpg"):
        seed_match(engine, photo_ids[filename], ids["ann"])
    seed_match(engine, photo_ids["biden.jpg"], ids["bob"])
    return Gallery(settings, engine, event, tokens, ids, photo_ids)


def open_client(tmp_path: Path, db_url: str, **overrides: object) -> Iterator[TestClient]:
    settings = serve_settings(tmp_path, db_url, **{"faces.engine": "local", **overrides})
    with TestClient(create_app(settings), base_url="http://photos.test") as client:
        yield client


@pytest.fixture
def client(tmp_path: Path, db_url: str, gallery: Gallery) -> Iterator[TestClient]:
    yield from open_client(tmp_path, db_url)


def form_token(client: TestClient, path: str) -> str:
    """Open a page as a browser would: its form token (the cookie is kept by the client)."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    assert client.cookies.get(csrf.COOKIE_NAME) == found.group(1)
    return found.group(1)


def test_the_gallery_json_lists_exactly_the_participants_photos_newest_first(
    client, gallery
) -> None:
    token = gallery.tokens["ann"]
    first = client.get(f"/api/g/{token}", params={"limit": 1})
    assert first.status_code == 200
    body = first.json()
    assert [p["filename"] for p in body["photos"]] == ["obama_3.jpg"]
    assert body["event"]["slug"] == SLUG and body["event"]["open"] is True
    assert body["processing"] == 0 and body["face_data_deleted_on"] is None
    assert body["zip_url"] == f"/g/{token}/zip"
    second = client.get(f"/api/g/{token}", params={"limit": 1, "cursor": body["next_cursor"]})
    assert [p["filename"] for p in second.json()["photos"]] == ["obama_2.jpg"]
    assert second.json()["next_cursor"] is None
    photo = body["photos"][0]
    for url in (photo["thumb_url"], photo["preview_url"]):
        image = client.get(url)
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    original = client.get(photo["original_url"])
    assert original.content == (DATA / "obama_3.jpg").read_bytes()
    assert original.headers["content-disposition"].startswith("attachment")
    # The same routes under /api/.
    assert client.get(f"/api{photo['thumb_url']}").status_code == 200
    # Bob's photo is not Ann's, whichever way it is asked for; an unknown link is a 404.
    biden = gallery.photo_ids["biden.jpg"]
    for variant in ("thumb", "preview", "original"):
        assert client.get(f"/g/{token}/photos/{biden}/{variant}").status_code == 404
    assert client.get(f"/g/{token}/photos/{biden}").status_code == 404
    assert client.get(f"/api/g/{token}/photos/{biden}").status_code == 404
    one = client.get(f"/api/g/{token}/photos/{photo['id']}").json()
    assert one["preview_url"] == photo["preview_url"]
    assert one["not_me_url"] == f"/api/g/{token}/not-me/{photo['id']}"
    assert client.get(f"/api/g/{users.new_token()}").status_code == 404
    assert client.get("/api/g/short").status_code == 404
    assert client.get(f"/g/{users.new_token()}").status_code == 404


def test_the_event_json_and_page_show_the_consent_text(client, gallery) -> None:
    body = client.get(f"/api/e/{SLUG}").json()
    assert body["title"] == "Charity Gala" and body["requires_access_code"] is False
    assert body["consent_version"] == gallery.event.consent_version
    assert body["open"] is True and body["face_data_deleted_on"] is None
    page = client.get(f"/e/{SLUG}")
    assert page.status_code == 200
    opening = gallery.event.consent_text.strip().split("\n")[0][:40]
    assert str(escape(opening)) in page.text
    assert 'capture="user"' in page.text and 'type="checkbox"' in page.text
    assert 'name="access_code"' not in page.text
    assert client.get("/api/e/no-such-event").status_code == 404
    assert client.get("/e/no-such-event").status_code == 404


def test_pages_carry_a_strict_policy_and_no_inline_script(client, gallery) -> None:
    token = gallery.tokens["ann"]
    photo = gallery.photo_ids["obama_2.jpg"]
    for path in (
        f"/e/{SLUG}",
        f"/g/{token}",
        f"/g/{token}/photos/{photo}",
        f"/g/{token}/delete",
        f"/api/g/{token}",
        "/static/photoctl.js",
        "/e/nope",
    ):
        answer = client.get(path)
        headers = answer.headers
        assert headers["content-security-policy"].startswith("default-src 'self'"), path
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["referrer-policy"] == "no-referrer", path
        assert headers["x-content-type-options"] == "nosniff", path
        if answer.headers["content-type"].startswith("text/html"):
            html = answer.text
            assert headers["cache-control"] == "no-store"
            # Scripts only from files, no handlers or styles written into the page.
            assert re.findall(r"<script(?![^>]*\bsrc=)", html) == [], path
            assert not re.search(r"\son[a-z]+=", html) and " style=" not in html, path
            assert "http://" not in html.replace(f"http://photos.test/g/{token}", ""), path
            for image in re.findall(r"<img[^>]*>", html):
                assert re.search(r'alt="[^"]+"', image), image


def test_cross_site_and_stale_form_posts_are_refused(client, gallery) -> None:
    token = gallery.tokens["ann"]
    photo = gallery.photo_ids["obama_2.jpg"]
    field = form_token(client, f"/g/{token}/photos/{photo}")
    not_me = f"/g/{token}/not-me/{photo}"
    # Another site's form: refused from its headers, before the body is read.
    for headers in (
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://photos.test"},
        {"Origin": "null"},
    ):
        answer = client.post(not_me, data={"csrf": field}, headers=headers)
        assert answer.status_code == 403, headers
        assert "another site" in answer.text
    assert client.post(
        f"/api/g/{token}/delete", headers={"Origin": "https://evil.example"}
    ).json() == {"detail": "Forms posted from another site are refused."}
    # Same site, but the form token is missing or does not repeat the cookie.
    same_site = {"Origin": "http://photos.test", "Sec-Fetch-Site": "same-origin"}
    for data in ({}, {"csrf": "x" * 32}):
        answer = client.post(not_me, data=data, headers=same_site, follow_redirects=False)
        assert answer.status_code == 403 and "expired" in answer.text
    # Nothing happened: Ann still has both photos.
    assert len(client.get(f"/api/g/{token}").json()["photos"]) == 2
    answer = client.post(not_me, data={"csrf": field}, headers=same_site, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == f"/g/{token}?removed=1"
    assert len(client.get(f"/api/g/{token}").json()["photos"]) == 1


def test_enrollment_refuses_without_consent_a_wrong_code_and_a_closed_event(
    client, gallery, tmp_path
) -> None:
    selfie = {"selfie": ("me.jpg", (DATA / "obama_1.jpg").read_bytes(), "image/jpeg")}
    field = form_token(client, f"/e/{SLUG}")
    no_consent = client.post(f"/e/{SLUG}", data={"csrf": field}, files=selfie)
    assert no_consent.status_code == 422 and "Tick the box" in no_consent.text
    assert 'id="enroll"' in no_consent.text  # the form again, to fix and send
    api = client.post(f"/api/e/{SLUG}", data={"consent": "false"}, files=selfie)
    assert api.status_code == 422
    # An event with an access code: a wrong or missing one is refused before any decode.
    coded = events.create_event(
        gallery.database, "coded", title="Coded", date=None, retention_days=30,
        access_code="BIB-4242",
    )  # fmt: skip
    assert client.get("/api/e/coded").json()["requires_access_code"] is True
    field = form_token(client, "/e/coded")
    assert 'name="access_code"' in client.get("/e/coded").text
    for code in ("nope", ""):
        wrong = client.post(
            "/e/coded",
            data={"csrf": field, "consent": "yes", "access_code": code},
            files=selfie,
        )
        assert wrong.status_code == 403 and "access code" in wrong.text
    api = client.post("/api/e/coded", data={"consent": "true", "access_code": "x"}, files=selfie)
    assert api.status_code == 403
    events.close_event(gallery.database, "coded")
    closed = client.post("/api/e/coded", data={"consent": "true"}, files=selfie)
    assert closed.status_code == 403 and "no longer" in closed.json()["detail"]
    assert "no longer takes new enrollments" in client.get("/e/coded").text
    # No participant was made by any of these.
    with db.read(gallery.database) as conn:
        assert participant_store.processing_count(conn, coded.id) == 0
        names = {row[0] for row in conn.execute(select(users.users_table.c.name))}
    assert names == {"p-ann", "p-bob"}


def test_enrollments_are_rate_limited_per_address_before_the_body_is_read(
    tmp_path, db_url, gallery
) -> None:
    for client in open_client(tmp_path, db_url, **{"serve.enroll_rate_per_address": "3/minute"}):
        answers = [
            client.post(f"/api/e/{SLUG}", data={"consent": "false"}, files={"selfie": b"x"})
            for _ in range(4)
        ]
        assert [a.status_code for a in answers] == [422, 422, 422, 429]
        assert int(answers[-1].headers["Retry-After"]) >= 1
        page = client.post(f"/e/{SLUG}", data={"consent": "yes"})
        assert page.status_code == 429 and page.headers["content-type"].startswith("text/html")
        # Galleries are not enrollments: they still answer.
        assert client.get(f"/api/g/{gallery.tokens['ann']}").status_code == 200


def test_enrollments_are_rate_limited_per_event(tmp_path, db_url, gallery) -> None:
    overrides = {"serve.enroll_rate_per_event": "2/minute"}
    for client in open_client(tmp_path, db_url, **overrides):
        statuses = [
            client.post(
                f"/api/e/{SLUG}", data={"consent": "false"}, files={"selfie": b"x"}
            ).status_code
            for _ in range(3)
        ]
        assert statuses == [422, 422, 429]
        # Another event is counted apart.
        events.create_event(gallery.database, "other", title="Other", date=None, retention_days=9)
        assert (
            client.post(
                "/api/e/other", data={"consent": "false"}, files={"selfie": b"x"}
            ).status_code
            == 422
        )


def test_download_all_streams_a_zip_of_exactly_the_matched_photos(client, gallery) -> None:
    token = gallery.tokens["ann"]
    with client.stream("GET", f"/g/{token}/zip") as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/zip"
        assert "content-length" not in answer.headers  # streamed, not built first
        assert answer.headers["content-disposition"].startswith(
            f'attachment; filename="{SLUG}-photos.zip"'
        )
        data = b"".join(answer.iter_bytes())
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    ids = gallery.photo_ids
    expected = {
        f"{ids['obama_3.jpg']:06d}-obama_3.jpg": "obama_3.jpg",
        f"{ids['obama_2.jpg']:06d}-obama_2.jpg": "obama_2.jpg",
    }
    assert archive.namelist() == list(expected)  # newest first, like the gallery
    for member, source in expected.items():
        assert archive.read(member) == (DATA / source).read_bytes()
        assert archive.getinfo(member).compress_type == zipfile.ZIP_STORED
    previews = zipfile.ZipFile(
        io.BytesIO(client.get(f"/api/g/{token}/zip", params={"variant": "preview"}).content)
    )
    assert [name.split("-", 1)[1] for name in previews.namelist()] == ["obama_3.jpg", "obama_2.jpg"]
    assert all(previews.read(name)[:3] == b"\xff\xd8\xff" for name in previews.namelist())


def test_not_me_add_selfie_refusals_and_erasure_through_the_json_twins(client, gallery) -> None:
    token = gallery.tokens["ann"]
    photo = gallery.photo_ids["obama_3.jpg"]
    assert client.post(f"/api/g/{token}/not-me/{photo}").json() == {"removed": True}
    assert client.post(f"/api/g/{token}/not-me/{photo}").json() == {"removed": False}
    assert client.get(f"/g/{token}/photos/{photo}/thumb").status_code == 404
    listed = client.get(f"/api/g/{token}").json()["photos"]
    assert [p["filename"] for p in listed] == ["obama_2.jpg"]
    # A selfie that is not an image is refused by the shared selfie guards.
    bad = client.post(f"/api/g/{token}/selfie", files={"selfie": ("x.jpg", b"not an image")})
    assert bad.status_code == 422 and "selfie" in bad.json()["detail"]
    erased = client.post(f"/api/g/{token}/delete")
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    assert erased.status_code == 200 and erased.json() == {"face_data_deleted_on": today}
    after = client.get(f"/api/g/{token}").json()
    assert after["face_data_deleted_on"] == today and after["erased_by"] == "participant"
    assert after["photos"] == [] and after["zip_url"] is None
    page = client.get(f"/g/{token}").text
    assert f'deleted on <time datetime="{today}">' in page and 'id="photos"' not in page
    gone = client.post(f"/api/g/{token}/selfie", files={"selfie": ("me.jpg", jpeg_bytes(seed=1))})
    assert gone.status_code == 410
    with db.read(gallery.database) as conn:
        left = conn.execute(select(Match.photo_id).where(Match.user_id == gallery.ids["ann"]))
        assert left.all() == []
    # Bob is untouched.
    assert len(client.get(f"/api/g/{gallery.tokens['bob']}").json()["photos"]) == 1


def test_the_gallery_says_how_many_photos_are_processing_and_polls(
    client, gallery, tmp_path
) -> None:
    late = tmp_path / "late"
    late.mkdir()
    write_photo(late / "late.jpg", seed=99)
    ingest_paths(gallery.database, gallery.settings, [str(late)], event_id=gallery.event.id)
    token = gallery.tokens["ann"]
    assert client.get(f"/api/g/{token}").json()["processing"] == 1
    page = client.get(f"/g/{token}").text
    assert f'data-poll="/api/g/{token}"' in page and "1 photo of this event is still" in page
    assert '<meta http-equiv="refresh"' in page  # inside <noscript>, for pages without script


def test_page_posts_need_no_bearer_token_but_keep_the_size_limits(client, gallery) -> None:
    token = gallery.tokens["ann"]
    limit = gallery.settings.serve.selfie_max_bytes
    huge = {"Content-Length": str(limit * 2), "Content-Type": "multipart/form-data; boundary=x"}
    answer = client.post(f"/g/{token}/selfie", content=b"--x--", headers=huge)
    assert answer.status_code == 413
    small = {"Content-Length": str(200_000), "Content-Type": "application/x-www-form-urlencoded"}
    answer = client.post(f"/g/{token}/delete", content=b"a=b", headers=small)
    assert answer.status_code == 413
    # The API's own routes still want their token.
    assert client.post("/api/me/selfie", files={"file": b"x"}).status_code == 401


def test_after_the_events_purge_the_link_says_when_its_face_data_was_deleted(
    client, gallery
) -> None:
    token = gallery.tokens["bob"]
    assert len(client.get(f"/api/g/{token}").json()["photos"]) == 1
    purged_at = datetime.datetime(2026, 7, 2, 12, tzinfo=datetime.UTC).timestamp()
    events.purge_event(gallery.database, None, SLUG, now=purged_at)
    body = client.get(f"/api/g/{token}").json()
    assert body["face_data_deleted_on"] == "2026-07-02" and body["erased_by"] == "purge"
    assert body["photos"] == [] and body["event"]["open"] is False
    page = client.get(f"/g/{token}").text
    assert "This event's face data was deleted on" in page and "2026-07-02" in page
    assert 'id="add-selfie"' not in page
    event_page = client.get(f"/e/{SLUG}").text
    assert "no longer takes new enrollments" in event_page and "2026-07-02" in event_page
    photo = gallery.photo_ids["biden.jpg"]
    assert client.get(f"/g/{token}/photos/{photo}/thumb").status_code == 404
    assert client.post(f"/api/g/{token}/not-me/{photo}").status_code == 410


# -- the cached grid (api/gallery_grid.py) ---------------------------------------------------


def _tiles(client: TestClient, token: str) -> tuple[list[str], list[int]]:
    """The filenames of the JSON twin and the photo ids of the page's tiles."""
    listed = [p["filename"] for p in client.get(f"/api/g/{token}").json()["photos"]]
    page = client.get(f"/g/{token}").text
    tile = rf'href="/g/{token}/photos/(\d+)" class="tile"'
    tiles = [int(found) for found in re.findall(tile, page)]
    return listed, tiles


def _cached_values(client: TestClient) -> list[bytes]:
    cache = client.app.state.services.cache.cache  # type: ignore[attr-defined]
    return [pickle.dumps(cache.get(key)) for key in cache.iterkeys()]


def test_the_gallery_grid_is_cached_without_the_token_until_a_worker_drops_the_participant(
    client, gallery
) -> None:
    token, ann = gallery.tokens["ann"], gallery.ids["ann"]
    assert _tiles(client, token) == (
        ["obama_3.jpg", "obama_2.jpg"],
        [gallery.photo_ids["obama_3.jpg"], gallery.photo_ids["obama_2.jpg"]],
    )
    # The token is kept only as a hash: no cached answer holds it, the grids included.
    values = _cached_values(client)
    assert any(b"obama_3.jpg" in value for value in values)
    assert not any(token.encode() in value for value in values)
    # A match the cache has not heard of yet is not shown: page and JSON come from the cache.
    seed_match(gallery.database, gallery.photo_ids["scenery_0.jpg"], ann)
    assert _tiles(client, token)[0] == ["obama_3.jpg", "obama_2.jpg"]
    # What a worker does after matching someone: drop their entries from its own cache handle.
    worker_cache = ResponseCache(gallery.settings, db.database_id(gallery.database))
    try:
        worker_cache.drop_users([ann])
    finally:
        worker_cache.close()
    listed, tiles = _tiles(client, token)
    assert listed == ["scenery_0.jpg", "obama_3.jpg", "obama_2.jpg"]
    assert tiles[0] == gallery.photo_ids["scenery_0.jpg"] and len(tiles) == 3


def test_not_me_and_erasure_from_the_page_drop_the_cached_grid(client, gallery) -> None:
    token = gallery.tokens["ann"]
    photo = gallery.photo_ids["obama_3.jpg"]
    assert len(_tiles(client, token)[1]) == 2  # cached now
    field = form_token(client, f"/g/{token}/photos/{photo}")
    same_site = {"Origin": "http://photos.test", "Sec-Fetch-Site": "same-origin"}
    not_me = f"/g/{token}/not-me/{photo}"
    answer = client.post(not_me, data={"csrf": field}, headers=same_site, follow_redirects=False)
    assert answer.status_code == 303
    assert _tiles(client, token) == (["obama_2.jpg"], [gallery.photo_ids["obama_2.jpg"]])
    answer = client.post(
        f"/g/{token}/delete", data={"csrf": field}, headers=same_site, follow_redirects=False
    )
    assert answer.status_code == 303
    assert _tiles(client, token) == ([], [])
    assert client.get(f"/api/g/{token}").json()["zip_url"] is None


def test_purge_close_and_edits_of_the_event_show_at_once_beside_a_cached_grid(
    client, gallery
) -> None:
    ann, bob = gallery.tokens["ann"], gallery.tokens["bob"]
    assert len(_tiles(client, ann)[1]) == 2 and len(_tiles(client, bob)[1]) == 1  # cached
    events.edit_event(gallery.database, SLUG, title="Charity Gala, renamed")
    events.close_event(gallery.database, SLUG)
    body = client.get(f"/api/g/{ann}").json()
    assert body["event"]["title"] == "Charity Gala, renamed" and body["event"]["open"] is False
    assert "Charity Gala, renamed" in client.get(f"/g/{ann}").text
    # The purge marks every participant erased: no grid is shown, cached or not, even before
    # (or without) the CLI dropping their entries.
    events.purge_event(gallery.database, None, SLUG)
    for token in (ann, bob):
        assert _tiles(client, token) == ([], [])
        assert client.get(f"/api/g/{token}").json()["erased_by"] == "purge"


def test_the_processing_count_stays_live_beside_a_cached_grid(
    client, gallery, tmp_path, monkeypatch
) -> None:
    # The count is kept a few seconds for the whole event (api/processing_figures.py); without
    # that, every request reads it, whatever the grid's cache holds.
    monkeypatch.setattr(ProcessingFigures, "refresh_seconds", 0.0)
    token = gallery.tokens["ann"]
    assert client.get(f"/api/g/{token}").json()["processing"] == 0  # the grid is cached now
    late = tmp_path / "late"
    late.mkdir()
    write_photo(late / "late.jpg", seed=77)
    ingest_paths(gallery.database, gallery.settings, [str(late)], event_id=gallery.event.id)
    body = client.get(f"/api/g/{token}").json()
    assert body["processing"] == 1 and len(body["photos"]) == 2
    assert "1 photo of this event is still" in client.get(f"/g/{token}").text
    assert drain_in_process(gallery.settings, "none").failed == 0
    assert client.get(f"/api/g/{token}").json()["processing"] == 0


def test_a_filename_holding_the_grids_token_marks_stays_a_filename() -> None:
    item = gallery_module.PhotoItem(7, "<gallery-token>\x01.jpg", None, "2026:05:03", 4, 3, 90.0)
    grid = gallery_grid.build([item], None, None)
    token = "T" * 32
    page = grid.page_html(token)
    assert f'href="/g/{token}/photos/7"' in page and "&lt;gallery-token&gt;\x01.jpg" in page
    photos = json.loads(grid.json_photos(token))
    assert photos[0]["filename"] == "<gallery-token>\x01.jpg"
    assert photos[0]["thumb_url"] == f"/g/{token}/photos/7/thumb"
