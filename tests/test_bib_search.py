"""Finding an event's photos by bib number, over real HTTP to a real `photoctl serve`, on SQLite
and PostgreSQL: the result page and its JSON twin, what it never tells (whether a number is on
the start list), who may search (public, code, off), the limits on walking numbers, the audit's
counts per day, and no bib number in a log line.

Bib reads are seeded as the worker's bib step will store them (tests/support/bibs.py).
"""

from __future__ import annotations

import io
import json
import re
import statistics
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from photoctl import config, db, events
from photoctl.models import ParticipantBib, StartListEntry
from tests.support import bibs
from tests.support.cli import run_photoctl
from tests.support.races import CODE, OTHER, SLUG, Race, seed_race
from tests.support.serve import Server, start_server, stop_server

SAME_SITE = {"Sec-Fetch-Site": "same-origin"}


@pytest.fixture
def race(settings: config.Settings, engine, tmp_path: Path) -> Race:
    return seed_race(settings, engine, tmp_path / "photos")


@pytest.fixture
def server(race: Race, tmp_path: Path, db_url: str) -> Iterator[Server]:
    # Limits out of the way: the test of limits sets its own.
    running = start_server(
        tmp_path, db_url, "-v", PHOTOCTL_SERVE_BIB_SEARCH_RATE_PER_ADDRESS="1000/minute"
    )
    yield running
    stop_server(running)


def client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60, headers=SAME_SITE)


def ids_of(answer: httpx.Response) -> list[int]:
    return [photo["id"] for photo in answer.json()["photos"]]


def test_a_bib_lists_the_photos_it_was_read_in_newest_first_with_images_and_zip(
    race: Race, server: Server
) -> None:
    ids = race.photo_ids
    with client(server) as http:
        answer = http.get(f"/api/e/{SLUG}/bibs/0123")  # typed with a leading zero
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["bib"] == "123"
        assert ids_of(answer) == [ids["c"], ids["b"], ids["a"]]
        assert body["next_cursor"] is None
        first = body["photos"][0]
        assert first["page_url"] == f"/e/{SLUG}/bibs/123/photos/{ids['c']}"
        assert http.get(first["page_url"]).status_code == 200
        assert set(first) >= {"id", "filename", "thumb_url", "preview_url", "original_url"}
        assert first["filename"] == "c.jpg"
        for url in (first["thumb_url"], first["preview_url"]):
            image = http.get(url)
            assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        # Keyset paging, as the face gallery's.
        page = http.get(f"/api/e/{SLUG}/bibs/123", params={"limit": 2})
        assert ids_of(page) == [ids["c"], ids["b"]]
        rest = http.get(
            f"/api/e/{SLUG}/bibs/123", params={"limit": 2, "cursor": page.json()["next_cursor"]}
        )
        assert ids_of(rest) == [ids["a"]] and rest.json()["next_cursor"] is None
        archive = zipfile.ZipFile(io.BytesIO(http.get(body["zip_url"]).content))
        assert sorted(name.split("-", 1)[1] for name in archive.namelist()) == [
            "a.jpg",
            "b.jpg",
            "c.jpg",
        ]
        # A photo where the bib was not read is not served under it.
        assert http.get(f"/api/e/{SLUG}/bibs/123/photos/{ids['d']}/thumb").status_code == 404

        assert http.get(f"/api/e/{SLUG}").json()["bib_search"] == "public"
        # The page: the event page's form (a GET) lands on the number's page, post/redirect/get.
        event_page = http.get(f"/e/{SLUG}")
        assert 'id="bib-search"' in event_page.text
        assert "Anyone who knows a bib number can see the photos" in event_page.text
        assert 'name="access_code"' not in event_page.text.split('id="bib-search"', 1)[1]
        redirect = http.get(f"/e/{SLUG}/bibs", params={"bib": " 123 "})
        assert redirect.status_code == 303 and redirect.headers["location"] == f"/e/{SLUG}/bibs/123"
        page_html = http.get(f"/e/{SLUG}/bibs/123").text
        tiles = re.findall(rf'href="/e/{SLUG}/bibs/123/photos/(\d+)"', page_html)
        assert [int(t) for t in tiles] == [ids["c"], ids["b"], ids["a"]]
        assert f'href="/e/{SLUG}/bibs/123/zip"' in page_html
        assert "Ann Runner" not in page_html  # the start list's names are never shown
        preview = http.get(f"/e/{SLUG}/bibs/123/photos/{ids['b']}")
        assert preview.status_code == 200
        assert f"/e/{SLUG}/bibs/123/photos/{ids['b']}/preview" in preview.text
        assert f"/e/{SLUG}/bibs/123/photos/{ids['b']}/original" in preview.text
        assert "Not me" not in preview.text  # read-only: "Not me" is in a participant's gallery
        original = http.get(f"/e/{SLUG}/bibs/123/photos/{ids['b']}/original")
        assert original.status_code == 200 and "b.jpg" in original.headers["content-disposition"]


def test_a_number_not_on_the_start_list_answers_as_one_without_photos(
    race: Race, server: Server
) -> None:
    with client(server) as http:
        on_list = http.get(f"/api/e/{SLUG}/bibs/789")  # ran, in no photo
        off_list = http.get(f"/api/e/{SLUG}/bibs/4321")  # no such runner
        assert on_list.status_code == off_list.status_code == 200
        assert on_list.json() == {"bib": "789", "photos": [], "next_cursor": None, "zip_url": None}
        assert off_list.json() == {**on_list.json(), "bib": "4321"}
        assert dict(on_list.headers).keys() == dict(off_list.headers).keys()
        pages = [http.get(f"/e/{SLUG}/bibs/{n}") for n in ("789", "4321")]
        assert [p.status_code for p in pages] == [200, 200]

        def same(text: str) -> str:
            return re.sub(r'name="csrf" value="[^"]*"', "", re.sub(r"789|4321", "N", text))

        assert same(pages[0].text) == same(pages[1].text)
        assert "No photos with bib" in pages[0].text

        def timed(number: str) -> float:
            start = time.perf_counter()
            assert http.get(f"/api/e/{SLUG}/bibs/{number}").status_code == 200
            return time.perf_counter() - start

        listed = statistics.median(timed("789") for _ in range(15))
        unlisted = statistics.median(timed("4321") for _ in range(15))
        # The same query runs for both: no difference beyond noise (generous under a shared CPU).
        assert abs(listed - unlisted) < max(0.5 * min(listed, unlisted), 0.02), (listed, unlisted)


def test_malformed_and_huge_numbers_are_refused_the_same_way_whatever_the_list(
    race: Race, server: Server
) -> None:
    with client(server) as http:
        for typed in ("12-3", "x" * 5000, "1" * 17, "%2e%2e", "١٢٣", "12%003", "'; drop", "-1"):
            answer = http.get(f"/api/e/{SLUG}/bibs/{typed}")
            assert answer.status_code in (404, 422), (typed, answer.status_code)
            if answer.status_code == 422:
                assert "bib number" in answer.json()["detail"]
            page = http.get(f"/e/{SLUG}/bibs/{typed}")
            assert page.status_code in (404, 422)
        long_query = http.get(f"/e/{SLUG}/bibs", params={"bib": "9" * 60})
        assert long_query.status_code == 422 and 'aria-invalid="true"' in long_query.text
        assert http.get(f"/api/e/{SLUG}/bibs/" + "9" * 5000).status_code == 422
        assert http.get(f"/api/e/{SLUG}/bibs/123", params={"cursor": -1}).status_code == 422
        assert http.get(f"/api/e/{SLUG}/bibs/123", params={"limit": 10**6}).status_code == 422


def test_another_events_slug_shows_only_its_own_photos_of_the_same_number(
    race: Race, server: Server
) -> None:
    ids = race.photo_ids
    with client(server) as http:
        assert ids_of(http.get(f"/api/e/{OTHER}/bibs/123")) == [ids["e"]]
        # A photo of city-10k asked for under other-race's slug, and the other way round.
        for slug, photo in ((OTHER, ids["a"]), (SLUG, ids["e"])):
            for variant in ("thumb", "preview", "original"):
                url = f"/api/e/{slug}/bibs/123/photos/{photo}/{variant}"
                assert http.get(url).status_code == 404
            assert http.get(f"/e/{slug}/bibs/123/photos/{photo}").status_code == 404
        assert http.get("/api/e/no-such-race/bibs/123").status_code == 404


def test_bib_search_off_or_bibs_off_offers_no_form_and_answers_404(
    race: Race, engine, server: Server
) -> None:
    with client(server) as http:
        bibs.set_bibs(engine, race.event.id, search="off")
        assert 'id="bib-search"' not in http.get(f"/e/{SLUG}").text
        assert http.get(f"/api/e/{SLUG}/bibs/123").status_code == 404
        assert http.get(f"/e/{SLUG}/bibs/123").status_code == 404
        photo = race.photo_ids["a"]
        assert http.get(f"/api/e/{SLUG}/bibs/123/photos/{photo}/thumb").status_code == 404
        assert http.get(f"/api/e/{SLUG}/bibs/123/zip").status_code == 404
        bibs.set_bibs(engine, race.event.id, bibs=False, search="public")
        assert 'id="bib-search"' not in http.get(f"/e/{SLUG}").text
        assert http.get(f"/api/e/{SLUG}").json()["bib_search"] == "off"
        assert http.get(f"/api/e/{SLUG}/bibs/123").status_code == 404


def test_code_mode_needs_the_access_code_in_the_header_or_typed_once_in_the_form(
    settings: config.Settings, engine, tmp_path: Path, db_url: str
) -> None:
    race = seed_race(settings, engine, tmp_path / "photos", search="code", access_code=CODE)
    server = start_server(tmp_path, db_url)
    photo = race.photo_ids["a"]
    try:
        with client(server) as http:
            missing = http.get(f"/api/e/{SLUG}/bibs/123")
            assert missing.status_code == 403 and "access code" in missing.json()["detail"]
            wrong = http.get(f"/api/e/{SLUG}/bibs/123", headers={"X-Access-Code": "WRONG-1"})
            assert wrong.status_code == 403 and "not right" in wrong.json()["detail"]
            assert "photos" not in wrong.json()
            right = http.get(f"/api/e/{SLUG}/bibs/123", headers={"X-Access-Code": CODE.lower()})
            assert right.status_code == 200 and len(right.json()["photos"]) == 3
            thumb = right.json()["photos"][0]["thumb_url"]
            assert http.get(thumb).status_code == 403
            assert http.get(thumb, headers={"X-Access-Code": "WRONG-1"}).status_code == 403
            assert http.get(thumb, headers={"X-Access-Code": CODE}).status_code == 200
            assert http.get(f"/api/e/{SLUG}/bibs/123/zip").status_code == 403

            # The page: the form posts the code; a wrong one is refused next to its field.
            event_page = http.get(f"/e/{SLUG}")
            form = event_page.text.split('id="bib-search"', 1)[1]
            assert 'name="access_code"' in form and "only people at the event" in form
            csrf = re.search(r'name="csrf" value="([^"]*)"', form)[1]
            refused = http.post(
                f"/e/{SLUG}/bibs", data={"bib": "123", "access_code": "nope", "csrf": csrf}
            )
            assert refused.status_code == 403 and 'id="bib-code-error"' in refused.text
            assert f"/e/{SLUG}/bibs/123/photos" not in refused.text
            assert http.get(f"/e/{SLUG}/bibs/123").status_code == 403  # no pass yet
            assert http.get(f"/e/{SLUG}/bibs/123/photos/{photo}/thumb").status_code == 403
            passed = http.post(
                f"/e/{SLUG}/bibs", data={"bib": "123", "access_code": CODE, "csrf": csrf}
            )
            assert passed.status_code == 303, passed.text
            assert passed.headers["location"] == f"/e/{SLUG}/bibs/123"
            assert "HttpOnly" in passed.headers["set-cookie"]
            assert "SameSite=Strict" in passed.headers["set-cookie"]
            page = http.get(f"/e/{SLUG}/bibs/123")  # the client keeps the pass cookie
            assert page.status_code == 200 and page.text.count('class="tile"') == 3
            assert http.get(f"/e/{SLUG}/bibs/123/photos/{photo}/thumb").status_code == 200
            # The pass is for this event only, and a made-up one opens nothing.
        with client(server) as stranger:
            stranger.cookies.set(f"photoctl_bibs_{SLUG}", "made-up-pass")
            assert stranger.get(f"/e/{SLUG}/bibs/123").status_code == 403
            # A cross-site post of the form is refused before its body is read.
            cross = stranger.post(
                f"/e/{SLUG}/bibs",
                data={"bib": "123", "access_code": CODE},
                headers={"Sec-Fetch-Site": "cross-site"},
            )
            assert cross.status_code == 403
            stale = stranger.post(f"/e/{SLUG}/bibs", data={"bib": "123", "access_code": CODE})
            assert stale.status_code == 403 and "photoctl_bibs_" not in stale.headers.get(
                "set-cookie", ""
            )
    finally:
        stop_server(server)


def test_walking_numbers_is_refused_with_429_per_address_and_per_event(
    race: Race, tmp_path: Path, db_url: str
) -> None:
    server = start_server(
        tmp_path,
        db_url,
        PHOTOCTL_SERVE_BIB_SEARCH_RATE_PER_ADDRESS="5/minute;8/day",
        PHOTOCTL_SERVE_BIB_SEARCH_RATE_PER_EVENT="1000/minute",
    )
    try:
        with client(server) as http:
            answers = [http.get(f"/api/e/{SLUG}/bibs/{n}") for n in range(100, 110)]
            codes = [a.status_code for a in answers]
            assert codes[:5] == [200] * 5 and set(codes[5:]) == {429}, codes
            assert int(answers[-1].headers["Retry-After"]) >= 1
            assert "Too many searches" in answers[-1].json()["detail"]
            page = http.get(f"/e/{SLUG}/bibs/123")
            assert page.status_code == 429 and "Too many searches" in page.text
            assert "Retry-After" in page.headers
            # Adding a bib to a gallery is a search too: it cannot walk numbers either.
            added = http.post(f"/api/g/{race.token}/bib", json={"bib": "123"})
            assert added.status_code == 429
            # Images of a number searched before are not searches.
            photo = race.photo_ids["a"]
            assert http.get(f"/api/e/{SLUG}/bibs/123/photos/{photo}/thumb").status_code == 200
    finally:
        stop_server(server)
    server = start_server(
        tmp_path,
        db_url,
        PHOTOCTL_SERVE_BIB_SEARCH_RATE_PER_ADDRESS="1000/minute",
        PHOTOCTL_SERVE_BIB_SEARCH_RATE_PER_EVENT="4/minute",
    )
    try:
        with client(server) as http:
            codes = [http.get(f"/api/e/{SLUG}/bibs/{n}").status_code for n in range(200, 206)]
            assert codes[:4] == [200] * 4 and set(codes[4:]) == {429}, codes
            # The limit is the event's: another event's search still answers.
            assert http.get(f"/api/e/{OTHER}/bibs/123").status_code == 200
    finally:
        stop_server(server)


def test_searches_are_audited_as_a_count_per_day_and_no_number_is_logged(
    race: Race, server: Server, tmp_path: Path
) -> None:
    with client(server) as http:
        for number in ("123", "456", "789", "4321"):
            assert http.get(f"/api/e/{SLUG}/bibs/{number}").status_code == 200
        assert http.get(f"/e/{SLUG}/bibs/123").status_code == 200
        nxt = http.get(f"/api/e/{SLUG}/bibs/123", params={"limit": 1}).json()["next_cursor"]
        # The next page of a search is not another search.
        assert http.get(f"/api/e/{SLUG}/bibs/123", params={"cursor": nxt}).status_code == 200
        # A gallery's bib, added and removed: a search too, and its number is in a path as well.
        assert http.post(f"/api/g/{race.token}/bib", json={"bib": "456"}).status_code == 200
        assert http.delete(f"/api/g/{race.token}/bib/456").status_code == 200
    audit = run_photoctl(["audit", "--event", SLUG, "--json"], server.env)
    assert audit.returncode == 0, audit.stderr
    entries = [json.loads(line) for line in audit.stdout.splitlines() if line.strip()]
    searches = [e for e in entries if e["action"] == "bib_searches"]
    assert len(searches) == 1, entries
    assert searches[0]["detail"]["searches"] == 7
    assert searches[0]["detail"]["day"] == time.strftime("%Y-%m-%d", time.gmtime())
    assert searches[0]["participant_id"] is None
    for number in ("123", "456", "789", "4321"):
        assert number not in json.dumps(searches)
    lines = run_photoctl(["audit", "--event", SLUG], server.env)
    assert "bib_searches" in lines.stdout and "searches=7" in lines.stdout
    stop_server(server)  # the log is complete once serve has stopped
    logged = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("serve-*.log"))
    logged += "\n".join(p.read_text(errors="replace") for p in (tmp_path / "data").rglob("*.log"))
    assert f"/e/{SLUG}/bibs/***" in logged  # serve -v logged the requests, without numbers
    for number in ("/123", "/456", "/789", "/4321", "Ann Runner"):
        assert number not in logged, number


def test_a_purged_events_bibs_find_nothing_and_its_start_list_names_and_bib_links_are_deleted(
    race: Race, engine, server: Server
) -> None:
    with client(server) as http:
        assert http.post(f"/api/g/{race.token}/bib", json={"bib": "123"}).status_code == 200
        purged = run_photoctl(["events", "purge", SLUG, "--yes"], server.env)
        assert purged.returncode == 0, purged.stderr
        assert "1 bib link" in purged.stderr and "start-list name" in purged.stderr
        with db.read(engine) as conn:
            assert conn.execute(select(func.count()).select_from(ParticipantBib)).scalar() == 0
            names = select(func.count()).where(StartListEntry.name.is_not(None))
            assert conn.execute(names).scalar() == 0
        assert http.get(f"/api/e/{SLUG}/bibs/123").status_code == 404
        assert http.get(f"/api/e/{SLUG}/bibs/123/zip").status_code == 404
        photo = race.photo_ids["a"]
        assert http.get(f"/e/{SLUG}/bibs/123/photos/{photo}/thumb").status_code == 404
        assert 'id="bib-search"' not in http.get(f"/e/{SLUG}").text
        # The other event is untouched.
        assert ids_of(http.get(f"/api/e/{OTHER}/bibs/123")) == [race.photo_ids["e"]]
    event = events.get_event(engine, OTHER)
    assert event is not None and event.purged_at is None
