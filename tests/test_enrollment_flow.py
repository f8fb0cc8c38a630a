"""Refusals that keep the form, and back/reload that never makes a second gallery (issue 20,
items 17 and 18), over real HTTP to a real `photoctl serve`, on both databases.

What a person sees of the same in a browser (back buttons, screenshots) is in
tests/test_participant_back_and_reload.py.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from photoctl import db, events, participants
from photoctl.api import gallery_cookie
from photoctl.api import participant_messages as messages
from photoctl.ingest import ingest_paths
from photoctl.models import Photo, User
from photoctl.worker import drain_in_process
from testkit.photos import settle, write_photo
from tests.support.serve import Server, start_server, stop_server
from tests.test_api import seed_match

DATA = Path(__file__).parent / "data"
COOKIE = f"{gallery_cookie.COOKIE_PREFIX}gala"  # over plain HTTP; __Host- over HTTPS


@pytest.fixture
def served(tmp_path: Path, db_url: str, settings, engine) -> Iterator[Server]:
    """Events gala (one photo, processed) and coded (access code BIB-4242), and serve."""
    gala = events.create_event(engine, "gala", title="Gala", date=None, retention_days=30)
    events.create_event(
        engine, "coded", title="Run", date=None, retention_days=30, access_code="BIB-4242"
    )
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(DATA / "obama_2.jpg", folder / "obama_2.jpg")
    settle(folder / "obama_2.jpg")
    ingest_paths(engine, settings, [str(folder)], event_id=gala.id)
    assert drain_in_process(settings, "none").failed == 0
    server = start_server(tmp_path, db_url)
    try:
        yield server
    finally:
        stop_server(server)


def browser(server: Server) -> httpx.Client:
    """A client that keeps cookies and, like a browser, says its posts come from this site."""
    return httpx.Client(base_url=server.url, timeout=120, headers={"Sec-Fetch-Site": "same-origin"})


def form_fields(page: httpx.Response) -> dict[str, str]:
    """The hidden fields of the page's form (the csrf token, and "replaces" when there)."""
    return dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page.text))


def enroll(
    client: httpx.Client, slug: str, fields: dict[str, str], selfie: str = "obama_1.jpg", **form
) -> httpx.Response:
    files = {"selfie": (selfie, (DATA / selfie).read_bytes(), "image/jpeg")}
    return client.post(f"/e/{slug}", files=files, data={**fields, **form})


def participant_count(engine) -> int:
    with db.read(engine) as conn:
        return conn.execute(
            select(func.count()).select_from(User).where(User.gallery_token_hash.is_not(None))
        ).scalar_one()


def test_a_refused_enrollment_keeps_the_code_and_consent_and_shows_the_error_by_its_field(
    served: Server, engine
) -> None:
    client = browser(served)
    fields = form_fields(client.get("/e/coded"))
    wrong = enroll(client, "coded", fields, consent="yes", access_code="BIB-9999")
    assert wrong.status_code == 403
    assert re.search(r'id="access-code"[^>]* value="BIB-9999"', wrong.text), wrong.text
    assert re.search(r'id="consent"[^>]* checked', wrong.text)
    assert 'aria-invalid="true"' in wrong.text
    code_error = re.search(r'id="code-error">([^<]*)<', wrong.text)
    assert code_error and "access code is not right" in code_error.group(1)
    # The error sits right after the field it is about.
    assert wrong.text.index('id="access-code"') < wrong.text.index('id="code-error"')
    assert wrong.text.index('id="code-error"') < wrong.text.index('id="code-hint"')
    assert "choose it again" in wrong.text  # the selfie is the one thing a page cannot keep

    no_consent = enroll(client, "coded", fields, access_code="BIB-4242")
    assert no_consent.status_code == 422
    assert re.search(r'id="access-code"[^>]* value="BIB-4242"', no_consent.text)
    assert re.search(r'id="consent-error">[^<]*Tick the box', no_consent.text)
    assert not re.search(r'id="consent"[^>]* checked', no_consent.text)
    assert participant_count(engine) == 0


def test_a_refused_selfie_in_the_gallery_stays_on_the_gallery_with_the_sentence(
    served: Server, tmp_path: Path
) -> None:
    client = browser(served)
    enrolled = enroll(client, "gala", form_fields(client.get("/e/gala")), consent="yes")
    assert enrolled.status_code == 303
    gallery = enrolled.headers["location"].split("?")[0]
    page = client.get(gallery)
    scenery = tmp_path / "scenery.jpg"
    write_photo(scenery, seed=5)
    files = {"selfie": ("scenery.jpg", scenery.read_bytes(), "image/jpeg")}
    added = client.post(f"{gallery}/selfie", files=files, data=form_fields(page))
    assert added.status_code == 303
    assert added.headers["location"] == f"{gallery}?refused=no-face#add-selfie"
    shown = client.get(added.headers["location"])
    assert shown.status_code == 200 and 'id="photos-title"' in shown.text
    error = re.search(r'id="selfie-error">([^<]*)<', shown.text)
    assert error and error.group(1) == messages.NO_FACE.replace("'", "&#39;")
    # Only the known names are shown: a link cannot make the gallery say anything else.
    assert 'id="selfie-error"' not in client.get(f"{gallery}?refused=you-were-hacked").text


def test_enrolling_again_from_the_same_browser_lands_on_the_same_gallery(
    served: Server, engine
) -> None:
    client = browser(served)
    fields = form_fields(client.get("/e/gala"))
    first = enroll(client, "gala", fields, consent="yes")
    assert first.status_code == 303 and first.headers["location"].endswith("?welcome=1")
    gallery = first.headers["location"].split("?")[0]
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for attribute in ("Path=/", "HttpOnly", "SameSite=Strict", "Max-Age="):
        assert attribute in cookie
    # Back to the old form and sent again (the same fields), or a second tap: the same gallery.
    for _ in range(2):
        again = enroll(client, "gala", fields, consent="yes")
        assert again.status_code == 303 and again.headers["location"] == f"{gallery}?again=1"
    assert participant_count(engine) == 1
    # Reloaded, the event page leads to that gallery instead of offering the form.
    page = client.get("/e/gala")
    assert f'href="{gallery}"' in page.text and 'id="enroll"' not in page.text
    # Another event's page does not know this browser.
    assert 'id="enroll"' in client.get("/e/coded").text

    # Someone else on this phone: a new gallery, once, however often that form is sent.
    other_page = client.get("/e/gala", params={"another": 1})
    other_fields = form_fields(other_page)
    assert "replaces" in other_fields
    second = enroll(client, "gala", other_fields, "biden.jpg", consent="yes")
    assert second.status_code == 303 and second.headers["location"].endswith("?welcome=1")
    second_gallery = second.headers["location"].split("?")[0]
    assert second_gallery != gallery
    resent = enroll(client, "gala", other_fields, "biden.jpg", consent="yes")
    assert resent.headers["location"] == f"{second_gallery}?again=1"
    assert participant_count(engine) == 2


def test_an_erased_gallerys_cookie_resurrects_nothing(served: Server, engine) -> None:
    client = browser(served)
    fields = form_fields(client.get("/e/gala"))
    first = enroll(client, "gala", fields, consent="yes")
    gallery = first.headers["location"].split("?")[0]
    token = gallery.rsplit("/", 1)[1]
    kept = client.cookies.get(COOKIE)
    assert kept == token
    erased = client.post(f"{gallery}/delete", data=form_fields(client.get(f"{gallery}/delete")))
    assert erased.status_code == 303
    assert "Max-Age=0" in erased.headers["set-cookie"]
    assert f"{COOKIE}=;" in erased.headers["set-cookie"]
    assert client.cookies.get(COOKIE) is None

    # A browser that kept the cookie anyway (another tab, a copy): the form, and the cookie goes.
    stale = browser(served)
    stale.cookies.set(COOKIE, token)
    page = stale.get("/e/gala")
    assert 'id="enroll"' in page.text and "Max-Age=0" in page.headers["set-cookie"]
    stale.cookies.set(COOKIE, token)
    again = enroll(stale, "gala", form_fields(page), consent="yes")
    assert again.status_code == 303 and again.headers["location"].endswith("?welcome=1")
    assert again.headers["location"].split("?")[0] != gallery
    assert participant_count(engine) == 2
    old = participants.participant_by_token(engine, token)
    assert old is not None and old.erased_at is not None, "the erased one stays erased"
    assert client.get(f"/api{gallery}").json()["face_data_deleted_on"] is not None


def test_going_back_to_a_photo_after_not_me_shows_it_left_without_a_live_button(
    served: Server, engine
) -> None:
    client = browser(served)
    first = enroll(client, "gala", form_fields(client.get("/e/gala")), consent="yes")
    gallery = first.headers["location"].split("?")[0]
    token = gallery.rsplit("/", 1)[1]
    holder = participants.participant_by_token(engine, token)
    with db.read(engine) as conn:
        photo_id = conn.execute(select(Photo.id)).scalar_one()
    seed_match(engine, photo_id, holder.id)
    photo_page = client.get(f"{gallery}/photos/{photo_id}")
    assert photo_page.status_code == 200 and 'id="not-me"' in photo_page.text
    said = client.post(f"{gallery}/not-me/{photo_id}", data=form_fields(photo_page))
    assert said.status_code == 303 and said.headers["location"] == f"{gallery}?removed=1"

    back = client.get(f"{gallery}/photos/{photo_id}")
    assert back.status_code == 410
    assert "not you" in back.text and 'id="not-me"' not in back.text
    assert f'href="{gallery}"' in back.text
    # Sent again anyway (a page kept from before): nothing changes, back on the gallery.
    resent = client.post(f"{gallery}/not-me/{photo_id}", data=form_fields(photo_page))
    assert resent.status_code == 303


def test_the_default_rate_lets_a_finish_line_surge_through_one_address_and_says_when(
    served: Server,
) -> None:
    client = browser(served)
    # 60 enrollments a minute from one address (a venue's Wi-Fi): none is held back.
    statuses = [
        client.post("/api/e/gala", data={"consent": "false"}, files={"selfie": b"x"}).status_code
        for _ in range(60)
    ]
    assert statuses == [422] * 60
    refused = client.post("/e/gala", data={"consent": "yes"}, files={"selfie": b"x"})
    assert refused.status_code == 429
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 60
    said = re.search(r"Please try again in (\d+) seconds?\.", refused.text)
    assert said and abs(int(said.group(1)) - wait) <= 1, refused.text
    assert 'href="/e/gala"' in refused.text
    api = client.post("/api/e/gala", data={"consent": "false"}, files={"selfie": b"x"})
    assert api.status_code == 429 and "Please try again in" in api.json()["detail"]


def test_over_https_the_gallery_cookie_is_a_host_cookie_a_plain_one_is_not_followed(
    served: Server, engine
) -> None:
    """Behind a TLS proxy (here: this machine, trusted, saying X-Forwarded-Proto: https) the
    cookie is __Host- prefixed, and a cookie without the prefix (one a sibling subdomain could
    plant) is not followed to its gallery. Cookies go by hand: they are Secure, and this
    client speaks plain HTTP to serve, as the proxy would."""
    https = {"X-Forwarded-Proto": "https", "Sec-Fetch-Site": "same-origin"}
    client = httpx.Client(base_url=served.url, timeout=120, headers=https)

    def with_cookies(**cookies: str) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items())}

    page = client.get("/e/gala")
    csrf = form_fields(page)["csrf"]
    files = {"selfie": ("me.jpg", (DATA / "obama_1.jpg").read_bytes(), "image/jpeg")}
    headers = with_cookies(photoctl_csrf=csrf)
    planted = client.post(
        "/e/gala", files=files, data={"csrf": csrf, "consent": "yes"}, headers=headers
    )
    assert planted.status_code == 303, planted.text
    planted_token = planted.headers["location"].split("?")[0].rsplit("/", 1)[1]
    cookie = planted.headers["set-cookie"]
    assert cookie.startswith(f"__Host-{COOKIE}=") and "Secure" in cookie and "Path=/;" in cookie
    # The browser that enrolled is offered its gallery ...
    own = client.get("/e/gala", headers=with_cookies(**{f"__Host-{COOKIE}": planted_token}))
    assert 'id="your-gallery"' in own.text
    # ... a browser given the same token in a cookie without the prefix enrolls for itself.
    victim = with_cookies(photoctl_csrf=csrf, **{COOKIE: planted_token})
    page = client.get("/e/gala", headers=victim)
    assert 'id="enroll"' in page.text and 'id="your-gallery"' not in page.text
    answer = client.post(
        "/e/gala", files=files, data={"csrf": csrf, "consent": "yes"}, headers=victim
    )
    assert answer.headers["location"].endswith("?welcome=1")
    assert planted_token not in answer.headers["location"]
    assert participant_count(engine) == 2


def test_an_overlong_access_code_is_refused_on_the_page_next_to_its_field(
    served: Server,
) -> None:
    client = browser(served)
    fields = form_fields(client.get("/e/coded"))
    answer = enroll(client, "coded", fields, consent="yes", access_code="A" * 500)
    assert answer.status_code == 403 and answer.headers["content-type"].startswith("text/html")
    assert re.search(r'id="code-error">[^<]*access code is not right', answer.text)
    assert 'value="' + "A" * 200 + '"' in answer.text and "A" * 201 not in answer.text
