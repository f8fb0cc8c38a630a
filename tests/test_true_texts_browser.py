"""What the participant pages say is true, as Chromium shows them from a real `photoctl serve`:
the consent text and the retention line under it agree (with and without a date), a gallery
whose event's photos are still processing asks to wait, and a gallery whose face data an
organizer purged says so (not that its time ran out, which one purged by the daily cron says).

Screenshots at phone and desktop sizes, as in tests/test_participant_browser.py.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from photoctl import events
from photoctl.ingest import ingest_paths
from testkit.photos import write_photo
from tests.support.cli import photoctl_env, run_photoctl
from tests.support.serve import Server, start_server, stop_server
from tests.test_participant_browser import (  # noqa: F401 (fixtures)
    By,
    WebDriver,
    artifacts,
    browser,
    csp_violations,
    phone,
    screenshots,
)
from tests.test_participant_pages import add_participant

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]


@dataclass
class Site:
    server: Server
    tokens: dict[str, str]  # participant -> gallery token


@pytest.fixture
def site(tmp_path: Path, db_url: str, engine: Engine, settings) -> Iterator[Site]:
    """gala (dated, purged by its organizer: ann), night-run (no date, an access code, a photo
    still processing: cat), old (dated 2020, purged by the daily cron: bob), fair (dated)."""
    env = photoctl_env(tmp_path, db_url)
    for args in (
        ["gala", "--title", "Charity Gala", "--date", "2027-05-03", "--retention-days", "60"],
        ["night-run", "--title", "Night Run", "--retention-days", "30", "--access-code", "BIB-42"],
        ["old", "--title", "Old Run", "--date", "2020-01-01", "--retention-days", "30"],
        ["fair", "--title", "Summer Fair", "--date", "2027-05-03", "--retention-days", "60"],
    ):
        made = run_photoctl(["events", "create", *args], env)
        assert made.returncode == 0, made.stderr
    tokens = {}
    for slug, name in (("gala", "ann"), ("night-run", "cat"), ("old", "bob")):
        _, tokens[name] = add_participant(engine, events.require_event(engine, slug), name)
    write_photo(tmp_path / "late" / "late.jpg", seed=7)
    night = events.require_event(engine, "night-run")
    ingest_paths(engine, settings, [str(tmp_path / "late")], event_id=night.id)
    purged = run_photoctl(["events", "purge", "gala", "--yes"], env)
    assert purged.returncode == 0, purged.stderr
    expired = run_photoctl(["events", "purge", "--expired"], env)
    assert expired.returncode == 0 and "purged old" in expired.stderr, expired.stderr
    server = start_server(tmp_path, db_url)
    try:
        yield Site(server, tokens)
    finally:
        stop_server(server)


def test_the_pages_say_what_is_true_of_retention_processing_and_purges(
    browser: WebDriver,  # noqa: F811
    site: Site,
    artifacts: Path,  # noqa: F811
) -> None:
    driver = browser
    phone(driver)
    url = site.server.url
    today = datetime.datetime.now(datetime.UTC).date().isoformat()

    # Without a date: the consent text and the line under it both count from the close.
    driver.get(f"{url}/e/night-run")
    consent = driver.find_element(By.ID, "consent-text").text
    retention = driver.find_element(By.ID, "retention").text
    words = "30 days after the event closes to new participants"
    assert words in consent and words in retention, (consent, retention)
    assert "days after the event." not in consent
    screenshots(driver, artifacts, "1-undated-consent")

    # With a date: both name the day.
    driver.get(f"{url}/e/fair")
    consent = driver.find_element(By.ID, "consent-text").text
    retention = driver.find_element(By.ID, "retention").text
    words = "on 2027-07-02, 60 days after the event"
    assert words in consent and words in retention, (consent, retention)
    screenshots(driver, artifacts, "1-dated-consent")

    # Photos still processing and none found yet: wait, not "send another selfie".
    driver.get(f"{url}/g/{site.tokens['cat']}")
    waiting = driver.find_element(By.ID, "no-photos").text
    assert "wait" in waiting and "Another selfie" not in waiting, waiting
    assert "1 photo of this event is still being processed" in driver.page_source
    screenshots(driver, artifacts, "2-processing")

    # Purged by the organizer before the retention ended.
    driver.get(f"{url}/g/{site.tokens['ann']}")
    notice = driver.find_element(By.ID, "deleted").text
    assert f"deleted by its organizer on {today}" in notice, notice
    assert "time it was kept for ended" not in notice
    screenshots(driver, artifacts, "3-purged-by-organizer")

    # Purged by `events purge --expired` once its retention ended.
    driver.get(f"{url}/g/{site.tokens['bob']}")
    notice = driver.find_element(By.ID, "deleted").text
    assert f"deleted on {today}, when the time it was kept for ended" in notice, notice
    assert "organizer" not in notice
    screenshots(driver, artifacts, "4-purged-at-the-end-of-retention")
    assert csp_violations(driver) == []
