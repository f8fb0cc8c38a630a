"""A participant's gallery with their bib, over real HTTP to a real `photoctl serve`, on SQLite
and PostgreSQL: the union of face matches and bib reads, each photo marked why, "Not me" for
either kind for good, at most a few bibs, and "delete my face data" forgetting the bib link.

Bib reads are seeded as the worker's bib step will store them (tests/support/bibs.py).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from photoctl import config, db
from photoctl.models import ParticipantBib, Rejection
from tests.support import bibs
from tests.support.races import SLUG, Race, seed_race
from tests.support.serve import Server, start_server, stop_server

SAME_SITE = {"Sec-Fetch-Site": "same-origin"}


@pytest.fixture
def race(settings: config.Settings, engine, tmp_path: Path) -> Race:
    return seed_race(settings, engine, tmp_path / "photos")


@pytest.fixture
def server(race: Race, tmp_path: Path, db_url: str) -> Iterator[Server]:
    running = start_server(
        tmp_path, db_url, PHOTOCTL_SERVE_BIB_SEARCH_RATE_PER_ADDRESS="1000/minute"
    )
    yield running
    stop_server(running)


def found_by(http: httpx.Client, token: str) -> dict[int, str | None]:
    answer = http.get(f"/api/g/{token}")
    assert answer.status_code == 200, answer.text
    return {photo["id"]: photo["found_by"] for photo in answer.json()["photos"]}


def bib_links(engine) -> int:
    with db.read(engine) as conn:
        return conn.execute(select(func.count()).select_from(ParticipantBib)).scalar_one()


def test_the_gallery_holds_face_and_bib_photos_each_marked_why(race: Race, server: Server) -> None:
    ids, token = race.photo_ids, race.token
    with httpx.Client(base_url=server.url, timeout=60, headers=SAME_SITE) as http:
        assert found_by(http, token) == {ids["d"]: "face", ids["a"]: "face"}
        added = http.post(f"/api/g/{token}/bib", json={"bib": " 0123 "})
        assert added.status_code == 200, added.text
        assert added.json() == {"bibs": ["123"]}
        gallery = found_by(http, token)
        assert list(gallery) == [ids["d"], ids["c"], ids["b"], ids["a"]]  # newest first
        assert gallery == {ids["d"]: "face", ids["c"]: "bib", ids["b"]: "bib", ids["a"]: "both"}
        # A bib photo is the participant's like a face photo: page, images, zip.
        for variant in ("thumb", "preview", "original"):
            assert http.get(f"/g/{token}/photos/{ids['b']}/{variant}").status_code == 200
        page = http.get(f"/g/{token}/photos/{ids['b']}")
        assert page.status_code == 200 and 'id="not-me"' in page.text
        archive = zipfile.ZipFile(io.BytesIO(http.get(f"/g/{token}/zip").content))
        assert len(archive.namelist()) == 4
        html = http.get(f"/g/{token}").text
        assert html.count('class="found-by found-bib"') == 2
        assert html.count('class="found-by found-both"') == 1
        assert html.count('class="found-by found-face"') == 1
        assert 'id="your-bibs"' in html and ">123<" in html
        # Adding the same bib again changes nothing; a malformed one is refused.
        assert http.post(f"/api/g/{token}/bib", json={"bib": "123"}).json() == {"bibs": ["123"]}
        assert http.post(f"/api/g/{token}/bib", json={"bib": "12-3"}).status_code == 422
        assert http.post(f"/api/g/{token}/bib", json={"bib": "9" * 101}).status_code == 422
        # Another event's photo of the same number is not in this gallery.
        assert http.get(f"/g/{token}/photos/{ids['e']}/thumb").status_code == 404


def test_not_me_removes_a_bib_photo_or_a_both_photo_for_good(
    race: Race, engine, server: Server
) -> None:
    ids, token = race.photo_ids, race.token
    with httpx.Client(base_url=server.url, timeout=60, headers=SAME_SITE) as http:
        assert http.post(f"/api/g/{token}/bib", json={"bib": "123"}).status_code == 200
        for name in ("b", "a"):  # b: by bib only; a: by face and bib
            answer = http.post(f"/api/g/{token}/not-me/{ids[name]}")
            assert answer.json() == {"removed": True}, name
        assert found_by(http, token) == {ids["d"]: "face", ids["c"]: "bib"}
        assert http.get(f"/g/{token}/photos/{ids['b']}/thumb").status_code == 404
        assert http.post(f"/api/g/{token}/not-me/{ids['b']}").json() == {"removed": False}
        # For good: the bib removed and added again, and the same bib read again in the photo.
        http.delete(f"/api/g/{token}/bib/123")
        assert found_by(http, token) == {ids["d"]: "face"}
        http.post(f"/api/g/{token}/bib", json={"bib": "123"})
        bibs.read_bib(engine, ids["d"], race.event.id, "123")
        http.delete(f"/api/g/{token}/bib/999")  # drops the cached grid
        assert found_by(http, token) == {ids["d"]: "both", ids["c"]: "bib"}
        # The HTML form, with its double-submit token, from the gallery itself.
        html = http.get(f"/g/{token}").text
        csrf = re.search(r'id="add-bib">\s*<input type="hidden" name="csrf" value="([^"]*)"', html)
        assert csrf is not None
        posted = http.post(f"/g/{token}/not-me/{ids['c']}", data={"csrf": csrf[1]})
        assert posted.status_code == 303
        assert found_by(http, token) == {ids["d"]: "both"}
    with db.read(engine) as conn:
        rejected = set(conn.execute(select(Rejection.photo_id)).scalars())
    assert rejected == {ids["a"], ids["b"], ids["c"]}


def test_the_bib_form_on_the_gallery_page_adds_removes_and_refuses_in_words(
    race: Race, server: Server
) -> None:
    token = race.token
    with httpx.Client(base_url=server.url, timeout=60, headers=SAME_SITE) as http:
        html = http.get(f"/g/{token}").text
        csrf = re.search(r'id="add-bib">\s*<input type="hidden" name="csrf" value="([^"]*)"', html)
        assert csrf is not None
        added = http.post(f"/g/{token}/bib", data={"bib": "123", "csrf": csrf[1]})
        assert (
            added.status_code == 303 and added.headers["location"] == f"/g/{token}?bib_added=1#bibs"
        )
        assert "123" not in added.headers["location"].replace(token, "")
        assert 'id="bib-added"' in http.get(f"/g/{token}?bib_added=1").text
        stale = http.post(f"/g/{token}/bib", data={"bib": "456", "csrf": "forged"})
        assert stale.status_code == 303 and "bib_refused=stale" in stale.headers["location"]
        cross = http.post(
            f"/g/{token}/bib",
            data={"bib": "456", "csrf": csrf[1]},
            headers={"Sec-Fetch-Site": "cross-site"},
        )
        assert cross.status_code == 403
        bad = http.post(f"/g/{token}/bib", data={"bib": "12/3", "csrf": csrf[1]})
        page = http.get(bad.headers["location"])
        assert 'id="bib-error"' in page.text and "letters and digits" in page.text
        for number in ("456", "789"):
            assert (
                http.post(f"/g/{token}/bib", data={"bib": number, "csrf": csrf[1]}).status_code
                == 303
            )
        fourth = http.post(f"/g/{token}/bib", data={"bib": "1000", "csrf": csrf[1]})
        assert "bib_refused=too-many" in fourth.headers["location"]
        assert http.post(f"/api/g/{token}/bib", json={"bib": "1000"}).status_code == 409
        removed = http.post(f"/g/{token}/bib/remove", data={"bib": "789", "csrf": csrf[1]})
        assert removed.status_code == 303
        assert http.post(f"/api/g/{token}/bib", json={"bib": "1000"}).json() == {
            "bibs": ["123", "456", "1000"]
        }


def test_deleting_face_data_forgets_the_bib_link_and_the_bib_photos(
    race: Race, engine, server: Server
) -> None:
    token = race.token
    with httpx.Client(base_url=server.url, timeout=60, headers=SAME_SITE) as http:
        assert http.post(f"/api/g/{token}/bib", json={"bib": "123"}).status_code == 200
        assert bib_links(engine) == 1
        assert http.post(f"/api/g/{token}/delete").status_code == 200
        assert bib_links(engine) == 0
        gallery = http.get(f"/api/g/{token}").json()
        assert gallery["photos"] == [] and gallery["face_data_deleted_on"] is not None
        assert http.get(f"/g/{token}/photos/{race.photo_ids['b']}/thumb").status_code == 404
        assert http.post(f"/api/g/{token}/bib", json={"bib": "123"}).status_code == 410
        assert bib_links(engine) == 0
        assert 'id="add-bib"' not in http.get(f"/g/{token}").text


def test_no_bib_form_on_the_gallery_of_an_event_without_bib_search(
    race: Race, engine, server: Server
) -> None:
    token = race.token
    with httpx.Client(base_url=server.url, timeout=60, headers=SAME_SITE) as http:
        bibs.set_bibs(engine, race.event.id, search="off")
        assert 'id="add-bib"' not in http.get(f"/g/{token}").text
        assert http.post(f"/api/g/{token}/bib", json={"bib": "123"}).status_code == 403
        assert bib_links(engine) == 0
        assert http.post("/api/g/not-a-real-token-at-all/bib", json={"bib": "1"}).status_code == 404
        assert SLUG in http.get(f"/api/g/{token}").text
