"""Finding photos by bib number in a real headless Chromium: the event page's form, the bib's
read-only result page and a photo of it, a number without photos, and a participant's gallery
with their bib (face, bib and both marked), at phone (390 px) and desktop sizes.

Photos are processed by the pipeline (``none`` engine); bib reads and the participant's face
matches are seeded as the worker's steps store them (tests/support/races.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from photoctl import config
from tests.support.races import CODE, SLUG, Race, seed_race
from tests.support.serve import Server, start_server, stop_server
from tests.test_participant_browser import (  # noqa: F401 - browser and artifacts are fixtures
    By,
    Keys,
    WebDriver,
    artifacts,
    browser,
    csp_violations,
    phone,
    press,
    screenshots,
    shown_photos,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]


@pytest.fixture
def race(settings: config.Settings, engine, tmp_path: Path) -> Race:
    return seed_race(settings, engine, tmp_path / "photos")


@pytest.fixture
def server(race: Race, tmp_path: Path, db_url: str) -> Iterator[Server]:
    running = start_server(tmp_path, db_url)
    yield running
    stop_server(running)


def loaded(driver: WebDriver, selector: str) -> bool:
    return all(
        driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
        for img in driver.find_elements(By.CSS_SELECTOR, selector)
    )


def test_a_runner_finds_their_photos_by_bib_on_the_event_page(
    browser: WebDriver,  # noqa: F811
    server: Server,
    race: Race,
    artifacts: Path,  # noqa: F811
) -> None:
    driver = browser
    phone(driver)
    driver.get(f"{server.url}/e/{SLUG}")
    form = driver.find_element(By.ID, "bib-search")
    assert "Find my photos by bib number" in form.text
    assert "Anyone who knows a bib number can see the photos" in form.text
    screenshots(driver, artifacts, "1-event-with-bib-search")
    field = driver.find_element(By.ID, "bib")
    field.send_keys(" 0123")
    press(driver, Keys.ENTER)
    wait_for(driver, lambda d: d.current_url.endswith(f"/e/{SLUG}/bibs/123"), "result page")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Photos with bib 123"
    assert shown_photos(driver) == ["c.jpg", "b.jpg", "a.jpg"]
    wait_for(driver, lambda d: loaded(d, "#photos img"), "thumbnails load")
    assert driver.find_elements(By.CSS_SELECTOR, ".found-by") == []  # not a gallery: no reason
    assert "Ann Runner" not in driver.page_source
    screenshots(driver, artifacts, "2-bib-results")
    driver.find_elements(By.CSS_SELECTOR, "#photos a.tile")[1].click()
    wait_for(driver, lambda d: loaded(d, ".preview img"), "the preview loads")
    assert driver.find_elements(By.ID, "not-me") == []  # read-only
    assert (
        driver.find_element(By.ID, "download-original")
        .get_attribute("href")
        .endswith(f"/photos/{race.photo_ids['b']}/original")
    )
    screenshots(driver, artifacts, "3-bib-photo")
    driver.find_element(By.CSS_SELECTOR, ".back a").click()
    field = wait_for(driver, lambda d: d.find_element(By.ID, "bib"), "the result page's form")
    field.clear()
    field.send_keys("789")
    press(driver, Keys.ENTER)
    wait_for(driver, lambda d: d.current_url.endswith("/bibs/789"), "789's page")
    assert "No photos with bib 789 yet" in driver.find_element(By.ID, "no-photos").text
    screenshots(driver, artifacts, "4-bib-without-photos")
    field = driver.find_element(By.ID, "bib")
    field.clear()
    field.send_keys("12-3")
    press(driver, Keys.ENTER)
    error = wait_for(driver, lambda d: d.find_element(By.ID, "bib-error"), "the refusal")
    assert "letters and digits" in error.text
    screenshots(driver, artifacts, "5-bib-refused")
    assert csp_violations(driver) == []


def test_a_participant_adds_their_bib_and_sees_face_and_bib_photos_marked(
    browser: WebDriver,  # noqa: F811
    server: Server,
    race: Race,
    artifacts: Path,  # noqa: F811
) -> None:
    driver = browser
    phone(driver)
    driver.get(f"{server.url}/g/{race.token}")
    assert shown_photos(driver) == ["d.jpg", "a.jpg"]
    bibs = driver.find_element(By.ID, "bibs")
    assert "Your bib number" in bibs.text
    driver.find_element(By.CSS_SELECTOR, "#add-bib #bib").send_keys("123")
    driver.find_element(By.CSS_SELECTOR, "#add-bib button[type=submit]").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "bib-added"), "bib added")
    assert shown_photos(driver) == ["d.jpg", "c.jpg", "b.jpg", "a.jpg"]
    marks = [m.text for m in driver.find_elements(By.CSS_SELECTOR, "#photos .found-by")]
    assert marks == ["Face", "Bib", "Bib", "Face + bib"]
    wait_for(driver, lambda d: loaded(d, "#photos img"), "thumbnails load")
    assert "123" in driver.find_element(By.ID, "your-bibs").text
    screenshots(driver, artifacts, "6-gallery-with-bib")
    driver.find_elements(By.CSS_SELECTOR, "#photos a.tile")[2].click()  # b.jpg: by bib only
    wait_for(driver, lambda d: loaded(d, ".preview img"), "the preview loads")
    driver.find_element(By.CSS_SELECTOR, "#not-me button").click()
    wait_for(driver, lambda d: "removed=1" in d.current_url, "back on the gallery")
    assert shown_photos(driver) == ["d.jpg", "c.jpg", "a.jpg"]
    screenshots(driver, artifacts, "7-gallery-after-not-me")
    assert csp_violations(driver) == []


def test_an_event_asking_for_its_code_takes_it_once_in_the_bib_form(
    browser: WebDriver,  # noqa: F811
    settings: config.Settings,
    engine,
    tmp_path: Path,
    db_url: str,
    artifacts: Path,  # noqa: F811
) -> None:
    seed_race(settings, engine, tmp_path / "photos", search="code", access_code=CODE)
    server = start_server(tmp_path, db_url)
    try:
        driver = browser
        phone(driver)
        driver.get(f"{server.url}/e/{SLUG}")
        driver.find_element(By.ID, "bib").send_keys("123")
        driver.find_element(By.ID, "bib-access-code").send_keys("WRONG-9")
        screenshots(driver, artifacts, "1-code-form")
        driver.find_element(By.CSS_SELECTOR, "#bib-search button[type=submit]").click()
        error = wait_for(driver, lambda d: d.find_element(By.ID, "bib-code-error"), "refused")
        assert "not right" in error.text
        assert driver.find_elements(By.CSS_SELECTOR, "#photos") == []
        screenshots(driver, artifacts, "2-code-refused")
        driver.find_element(By.ID, "bib-access-code").send_keys(CODE)
        driver.find_element(By.CSS_SELECTOR, "#bib-search button[type=submit]").click()
        wait_for(driver, lambda d: d.current_url.endswith("/bibs/123"), "result page")
        assert shown_photos(driver) == ["c.jpg", "b.jpg", "a.jpg"]
        wait_for(driver, lambda d: loaded(d, "#photos img"), "thumbnails load with the pass")
        # With the pass, the next search asks for no code.
        assert driver.find_elements(By.ID, "bib-access-code") == []
        screenshots(driver, artifacts, "3-code-results")
        assert csp_violations(driver) == []
    finally:
        stop_server(server)
