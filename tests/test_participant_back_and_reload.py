"""Back, reload and refusals as a person meets them, in a real headless Chromium (issue 20,
items 17 and 18).

A TestClient cannot press Back: whether the browser shows a page from its memory (the
back/forward cache) or asks again is the browser's choice, and what the person then sees and can
press is the point. The server is a real `photoctl serve` with the local engine; the photo of
the event is processed without faces and matched by hand where a match is needed.
Screenshots at phone and desktop sizes, as in tests/test_participant_browser.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from photoctl import db, events, participants
from photoctl.api import participant_messages as messages
from photoctl.ingest import ingest_paths
from photoctl.models import Photo, User
from photoctl.worker import drain_in_process
from testkit.photos import settle, write_photo
from tests import test_participant_browser as pages_in_chromium
from tests.support.serve import Server, start_server, stop_server
from tests.test_api import seed_match
from tests.test_participant_browser import csp_violations, phone, screenshots, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

DATA = Path(__file__).parent / "data"
# The browser (one per module) and the screenshot folder of the participant browser tests.
browser = pages_in_chromium.browser
artifacts = pages_in_chromium.artifacts


@pytest.fixture
def served(tmp_path: Path, db_url: str, settings, engine) -> Iterator[Server]:
    gala = events.create_event(engine, "gala", title="Charity Gala", date=None, retention_days=30)
    events.create_event(
        engine, "coded", title="City Run", date=None, retention_days=30, access_code="BIB-4242"
    )
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(DATA / "obama_2.jpg", folder / "obama_2.jpg")
    settle(folder / "obama_2.jpg")
    ingest_paths(engine, settings, [str(folder)], event_id=gala.id)
    assert drain_in_process(settings, "none").failed == 0
    server = start_server(tmp_path, db_url, PHOTOCTL_SERVE_ENROLL_RATE_PER_ADDRESS="4/minute")
    try:
        yield server
    finally:
        stop_server(server)


def participant_count(engine) -> int:
    with db.read(engine) as conn:
        return conn.execute(
            select(func.count()).select_from(User).where(User.gallery_token_hash.is_not(None))
        ).scalar_one()


def submit_enrollment(driver: WebDriver, selfie: str = "obama_1.jpg", code: str | None = None):
    driver.find_element(By.ID, "selfie").send_keys(str(DATA / selfie))
    if code is not None:
        field = driver.find_element(By.ID, "access-code")
        field.clear()
        field.send_keys(code)
    consent = driver.find_element(By.ID, "consent")
    if not consent.is_selected():
        consent.click()
    driver.find_element(By.CSS_SELECTOR, "#enroll button").click()


def test_back_from_a_new_gallery_and_sending_again_lands_on_the_same_gallery(
    browser: WebDriver, served: Server, engine, artifacts: Path
) -> None:
    driver = browser
    driver.delete_all_cookies()
    phone(driver)
    driver.get(f"{served.url}/e/gala")
    submit_enrollment(driver)
    wait_for(driver, lambda d: "/g/" in d.current_url, "no gallery after enrolling")
    gallery = driver.current_url.split("?")[0]

    driver.back()
    wait_for(driver, lambda d: d.current_url.endswith("/e/gala"), "back did not go back")
    screenshots(driver, artifacts, "1-back-on-the-event-page")
    if driver.find_elements(By.ID, "enroll"):
        # The browser kept the old form: sending it again lands on the same gallery.
        submit_enrollment(driver)
    else:
        assert "You already have a gallery here" in driver.page_source
        driver.find_element(By.ID, "open-gallery").click()
    wait_for(driver, lambda d: "/g/" in d.current_url, "no gallery the second time")
    assert driver.current_url.split("?")[0] == gallery
    screenshots(driver, artifacts, "2-same-gallery-again")

    driver.refresh()  # a reload of the gallery re-sends nothing
    assert driver.current_url.split("?")[0] == gallery
    driver.get(f"{served.url}/e/gala")
    assert driver.find_elements(By.ID, "enroll") == []
    screenshots(driver, artifacts, "3-event-page-of-an-enrolled-browser")
    assert participant_count(engine) == 1

    # Someone else on this phone gets a gallery of their own.
    driver.find_element(By.ID, "enroll-another").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "enroll"), "no form for another person")
    submit_enrollment(driver, "biden.jpg")
    wait_for(driver, lambda d: "welcome=1" in d.current_url, "no second gallery")
    assert driver.current_url.split("?")[0] != gallery
    assert participant_count(engine) == 2
    assert csp_violations(driver) == []


def test_back_to_a_photo_after_not_me_shows_no_live_not_me(
    browser: WebDriver, served: Server, engine, artifacts: Path
) -> None:
    driver = browser
    driver.delete_all_cookies()
    phone(driver)
    driver.get(f"{served.url}/e/gala")
    submit_enrollment(driver)
    wait_for(driver, lambda d: "/g/" in d.current_url, "no gallery after enrolling")
    gallery = driver.current_url.split("?")[0]
    holder = participants.participant_by_token(engine, gallery.rsplit("/", 1)[1])
    with db.read(engine) as conn:
        photo_id = conn.execute(select(Photo.id)).scalar_one()
    seed_match(engine, photo_id, holder.id)
    driver.get(f"{gallery}/photos/{photo_id}")
    wait_for(driver, lambda d: d.find_elements(By.ID, "not-me"), "no photo page")
    driver.find_element(By.CSS_SELECTOR, "#not-me button").click()
    wait_for(driver, lambda d: "removed=1" in d.current_url, "no answer to not me")

    driver.back()
    wait_for(
        driver, lambda d: f"/photos/{photo_id}" in d.current_url, "back did not reach the photo"
    )
    wait_for(driver, lambda d: "not you" in d.page_source, "the photo page does not say so")
    assert driver.find_elements(By.CSS_SELECTOR, "#not-me button") == []
    assert driver.find_elements(By.CSS_SELECTOR, ".preview img") == []
    screenshots(driver, artifacts, "back-after-not-me")
    assert csp_violations(driver) == []


def test_refusals_keep_the_form_and_stay_where_the_person_is(
    browser: WebDriver, served: Server, engine, artifacts: Path, tmp_path: Path
) -> None:
    driver = browser
    driver.delete_all_cookies()
    phone(driver)
    driver.get(f"{served.url}/e/coded")
    submit_enrollment(driver, code="BIB-9999")
    error = wait_for(driver, lambda d: d.find_element(By.ID, "code-error"), "no refusal")
    assert "access code is not right" in error.text
    assert driver.find_element(By.ID, "access-code").get_attribute("value") == "BIB-9999"
    assert driver.find_element(By.ID, "consent").is_selected()
    # Next to its field: just below the code input, well apart from the top of the page.
    field = driver.find_element(By.ID, "access-code").rect
    assert 0 <= error.rect["y"] - (field["y"] + field["height"]) < 40
    screenshots(driver, artifacts, "1-wrong-code-kept")

    # Corrected, with the selfie chosen again: enrolled.
    submit_enrollment(driver, code="bib 4242")
    wait_for(driver, lambda d: "/g/" in d.current_url, "no gallery with the right code")
    gallery = driver.current_url.split("?")[0]

    # A selfie without a face, from the gallery: back on the gallery, the sentence by the input.
    scenery = tmp_path / "scenery.jpg"
    write_photo(scenery, seed=7)
    driver.find_element(By.CSS_SELECTOR, "#add-selfie input[type=file]").send_keys(str(scenery))
    driver.find_element(By.CSS_SELECTOR, "#add-selfie button").click()
    error = wait_for(driver, lambda d: d.find_element(By.ID, "selfie-error"), "no refusal")
    assert driver.current_url.split("?")[0] == gallery
    assert error.text == messages.NO_FACE
    assert driver.find_element(By.ID, "photos-title")  # still the gallery
    screenshots(driver, artifacts, "2-gallery-selfie-refused")
    assert csp_violations(driver) == []


def test_the_rate_limit_page_says_when_to_try_again(
    browser: WebDriver, served: Server, artifacts: Path
) -> None:
    driver = browser
    driver.delete_all_cookies()
    phone(driver)
    for _ in range(5):  # serve allows 4 a minute from one address here
        driver.get(f"{served.url}/e/gala?another=1")
        driver.find_element(By.ID, "consent").click()
        driver.execute_script("document.getElementById('selfie').removeAttribute('required')")
        driver.find_element(By.CSS_SELECTOR, "#enroll button").click()
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".error"), "no answer")
    text = driver.find_element(By.CSS_SELECTOR, "p.error").text
    assert text.startswith("Too many people are signing up right now. Please try again in ")
    assert driver.find_element(By.LINK_TEXT, "← Back").get_attribute("href").endswith("/e/gala")
    screenshots(driver, artifacts, "rate-limited")
