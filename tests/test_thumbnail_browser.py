"""The gallery grid shows the head of a full-body portrait, in a real Chromium (issue 20, item 22).

The grid shows each thumbnail as a square (``object-fit: cover``); the thumbnail is that square,
cut around the faces the worker found, so the browser shows it whole. The photo is processed by
a real `photoctl work` with the local engine and the participant enrolls on the real page.
Screenshots at phone and desktop sizes go where the other browser tests put theirs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from photoctl import events
from photoctl.ingest import ingest_paths
from tests.support.cli import photoctl_env, run_photoctl
from tests.support.serve import Server, start_server, stop_server
from tests.test_participant_browser import (  # noqa: F401 - browser and artifacts are fixtures
    DATA,
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
    tab_to,
    wait_for,
)
from tests.test_thumbnail_faces import full_body_portrait

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]


@pytest.fixture
def portrait_event(tmp_path: Path, db_url: str, settings, engine) -> Iterator[Server]:
    """Event gala with one full-body portrait (a real face near the top), processed by a real
    `photoctl work`, and serve on it."""
    gala = events.create_event(
        engine, "gala", title="Charity Gala 2026", date="2026-05-03", retention_days=60
    )
    folder = tmp_path / "photos"
    folder.mkdir()
    full_body_portrait(folder / "portrait.jpg")
    ingest_paths(engine, settings, [str(folder)], event_id=gala.id)
    env = photoctl_env(tmp_path, db_url)
    worked = run_photoctl(["work", "-n", "1", "--until-empty"], env, timeout=240)
    assert worked.returncode == 0, worked.stderr
    server = start_server(tmp_path, db_url)
    try:
        yield server
    finally:
        stop_server(server)


def test_the_gallery_grid_shows_the_face_of_a_full_body_portrait(
    browser: WebDriver,  # noqa: F811
    portrait_event: Server,
    artifacts: Path,  # noqa: F811
) -> None:
    driver = browser
    phone(driver)
    driver.get(f"{portrait_event.url}/e/gala")
    driver.find_element(By.ID, "selfie").send_keys(str(DATA / "obama_2.jpg"))
    tab_to(driver, "consent")
    press(driver, Keys.SPACE)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(driver, lambda d: "/g/" in d.current_url, "no gallery after enrolling")
    assert shown_photos(driver) == ["portrait.jpg"]
    tile = driver.find_element(By.CSS_SELECTOR, "#photos img")
    wait_for(
        driver,
        lambda d: d.execute_script("return arguments[0].naturalWidth", tile) > 0,
        "the thumbnail did not load",
    )
    natural = driver.execute_script(
        "return [arguments[0].naturalWidth, arguments[0].naturalHeight]", tile
    )
    assert natural == [320, 320], "a square: the grid's cover crop cuts nothing off"
    screenshots(driver, artifacts, "gallery-portrait")
    assert csp_violations(driver) == []
