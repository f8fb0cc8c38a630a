"""A participant's whole way through the pages, in a real headless Chromium (selenium).

Why a browser: what these tests check is what a person gets, which a TestClient cannot see: the
form refusing to post without consent, the camera input, keyboard use, a phone-sized screen
without sideways scrolling, a preview that loads, a zip that downloads, and no Content Security
Policy violation in the console. The server is a real `photoctl serve`; the event's photos are
processed by a real `photoctl work --until-empty` with the local (dlib) engine, and the selfie
is enrolled by it too, so "exactly the matched photos" is what face matching found.

Screenshots at phone (390x844) and desktop (1280x800) sizes go to $PHOTOCTL_TEST_ARTIFACTS
(one folder per test) or else to the test's tmp_path; the folder is printed.

Debian's chromium and chromium-driver are needed (scripts/test.sh installs them). Without them
the tests are skipped on a developer's machine, and fail where CI is set: CI never skips them.
"""

from __future__ import annotations

import base64
import datetime
import os
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from photoctl import db, events
from photoctl.ingest import ingest_paths
from photoctl.models import Photo, User
from testkit.photos import settle, write_photo
from tests.support.cli import photoctl_env, run_photoctl
from tests.support.serve import Server, start_server, stop_server

DATA = Path(__file__).parent / "data"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SIZES = {"phone": (390, 844), "desktop": (1280, 800)}
WAIT_SECONDS = 60
# Read before conftest's clean_environment removes every PHOTOCTL_* variable from the tests.
ARTIFACTS_ROOT = os.environ.get("PHOTOCTL_TEST_ARTIFACTS")

# One xdist process for the module: one Chromium (~1.2 CPU-s to start) serves its four tests.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the browser tests: {message}")
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=options
    )
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    folder = (
        Path(ARTIFACTS_ROOT) / request.node.name if ARTIFACTS_ROOT else tmp_path / "screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nscreenshots of {request.node.name}: {folder}")
    return folder


def phone(driver: WebDriver) -> None:
    width, height = SIZES["phone"]
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True},
    )


def screenshots(driver: WebDriver, folder: Path, name: str) -> None:
    """The whole page at phone and desktop sizes; at phone size nothing scrolls sideways."""
    for size, (width, height) in SIZES.items():
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": size == "phone"},
        )
        time.sleep(0.2)  # layout after the resize
        if size == "phone":
            scroll_width = driver.execute_script("return document.documentElement.scrollWidth")
            assert scroll_width <= width, f"{name}: {scroll_width} px wide on a {width} px phone"
        content = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": width, "height": max(height, content["height"])}
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}},
        )
        (folder / f"{name}-{size}.png").write_bytes(base64.b64decode(shot["data"]))
    phone(driver)


def wait_for(driver: WebDriver, condition, message: str):
    return WebDriverWait(driver, WAIT_SECONDS).until(lambda d: condition(d), message)


def csp_violations(driver: WebDriver) -> list[str]:
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]
    ]


def shown_photos(driver: WebDriver) -> list[str]:
    """The filenames of the gallery's thumbnails, in page order (from their alt text)."""
    images = driver.find_elements(By.CSS_SELECTOR, "#photos img")
    for image in images:
        assert image.get_attribute("loading") == "lazy"
        assert image.get_attribute("alt")
    return [image.get_attribute("alt").split()[1].rstrip(",") for image in images]


def press(driver: WebDriver, key: str) -> None:
    """A key press where the focus is (element.send_keys would type into a file input)."""
    ActionChains(driver).send_keys(key).perform()


def tab_to(driver: WebDriver, element_id: str, limit: int = 15) -> None:
    """Move the keyboard focus with Tab until it reaches the element."""
    for _ in range(limit):
        if driver.switch_to.active_element.get_attribute("id") == element_id:
            return
        press(driver, Keys.TAB)
    raise AssertionError(f"Tab never reached #{element_id}")


@pytest.fixture
def event_server(tmp_path: Path, db_url: str, settings, engine) -> Iterator[Server]:
    """Event gala (two photos of Obama, one of Biden, two without faces, processed by a real
    `photoctl work`), event coded (with an access code), and serve on them."""
    gala = events.create_event(
        engine, "gala", title="Charity Gala 2026", date="2026-05-03", retention_days=60
    )
    events.create_event(
        engine, "coded", title="City Marathon", date=None, retention_days=30,
        access_code="BIB-4242",
    )  # fmt: skip
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("obama_2.jpg", "obama_3.jpg", "biden.jpg"):
        shutil.copy(DATA / name, folder / name)
        settle(folder / name)
    for index in range(2):
        write_photo(folder / f"scenery_{index}.jpg", seed=index)
    ingest_paths(engine, settings, [str(folder)], event_id=gala.id)
    env = photoctl_env(tmp_path, db_url)
    worked = run_photoctl(["work", "-n", "1", "--until-empty"], env, timeout=240)
    assert worked.returncode == 0, worked.stderr
    server = start_server(tmp_path, db_url)
    try:
        yield server
    finally:
        stop_server(server)


def photo_ids(engine) -> dict[str, int]:
    with db.read(engine) as conn:
        return dict(conn.execute(select(Photo.filename, Photo.id)).all())


def test_a_participant_enrolls_sees_downloads_corrects_and_deletes(
    browser: WebDriver, event_server: Server, engine, artifacts: Path, tmp_path: Path
) -> None:
    driver = browser
    phone(driver)
    driver.get(f"{event_server.url}/e/gala")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Charity Gala 2026"
    assert driver.find_element(By.ID, "consent-text").text.strip()
    selfie = driver.find_element(By.ID, "selfie")
    assert selfie.get_attribute("capture") == "user"
    assert selfie.get_attribute("accept") == "image/*"
    screenshots(driver, artifacts, "1-event")

    # With the keyboard: the selfie (a file input takes its path as keys), consent, submit.
    selfie.send_keys(str(DATA / "obama_1.jpg"))
    tab_to(driver, "consent")
    press(driver, Keys.SPACE)
    assert driver.find_element(By.ID, "consent").is_selected()
    press(driver, Keys.TAB)
    assert driver.switch_to.active_element.text == "Find my photos"
    press(driver, Keys.ENTER)
    wait_for(driver, lambda d: "/g/" in d.current_url, "no gallery after enrolling")

    ids = photo_ids(engine)
    gallery_url = driver.current_url.split("?")[0]
    token = gallery_url.rsplit("/", 1)[1]
    assert "bookmark this link" in driver.page_source.lower()
    assert driver.find_element(By.ID, "gallery-link").get_attribute("value") == gallery_url
    # Exactly the photos of Obama, newest first; not Biden, not the scenery.
    assert shown_photos(driver) == ["obama_3.jpg", "obama_2.jpg"]
    screenshots(driver, artifacts, "2-gallery")

    # A preview on tap, and the original's download link.
    driver.find_element(By.CSS_SELECTOR, "#photos a").click()
    preview = wait_for(
        driver, lambda d: d.find_element(By.CSS_SELECTOR, ".preview img"), "no preview"
    )
    wait_for(
        driver,
        lambda d: d.execute_script("return arguments[0].naturalWidth", preview) > 0,
        "preview did not load",
    )
    assert preview.get_attribute("alt")
    original = driver.find_element(By.ID, "download-original").get_attribute("href")
    assert original.endswith(f"/g/{token}/photos/{ids['obama_3.jpg']}/original")
    screenshots(driver, artifacts, "3-preview")

    # "Download all": a zip of exactly the two originals.
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.get(gallery_url)
    driver.find_element(By.ID, "download-all").click()
    zips = wait_for(
        driver,
        lambda d: [p for p in downloads.glob("*.zip") if p.stat().st_size > 0],
        "the zip did not download",
    )
    wait_for(driver, lambda d: not list(downloads.glob("*.crdownload")), "zip still downloading")
    with zipfile.ZipFile(zips[0]) as archive:
        assert archive.namelist() == [
            f"{ids['obama_3.jpg']:06d}-obama_3.jpg",
            f"{ids['obama_2.jpg']:06d}-obama_2.jpg",
        ]
        assert archive.read(archive.namelist()[0]) == (DATA / "obama_3.jpg").read_bytes()

    # "Not me" on obama_3: gone, and a new selfie that matches it best does not bring it back.
    driver.get(f"{gallery_url}/photos/{ids['obama_3.jpg']}")
    driver.find_element(By.CSS_SELECTOR, "#not-me button").click()
    wait_for(driver, lambda d: "removed=1" in d.current_url, "no answer to not me")
    assert shown_photos(driver) == ["obama_2.jpg"]
    driver.find_element(By.CSS_SELECTOR, "#add-selfie input[type=file]").send_keys(
        str(DATA / "obama_3.jpg")
    )
    driver.find_element(By.CSS_SELECTOR, "#add-selfie button").click()
    wait_for(driver, lambda d: "added=" in d.current_url, "no answer to the new selfie")
    assert "Your new selfie is saved" in driver.page_source
    assert shown_photos(driver) == ["obama_2.jpg"]

    # "Delete my face data", confirmed on a page of its own.
    driver.find_element(By.ID, "delete-link").click()
    wait_for(driver, lambda d: d.current_url.endswith("/delete"), "no confirmation page")
    screenshots(driver, artifacts, "4-confirm-delete")
    driver.find_element(By.CSS_SELECTOR, "#confirm-delete button").click()
    deleted = wait_for(driver, lambda d: d.find_element(By.ID, "deleted"), "no deleted notice")
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    assert f"deleted on {today}" in deleted.text
    assert driver.find_elements(By.CSS_SELECTOR, "#photos img") == []
    screenshots(driver, artifacts, "5-deleted")
    thumb = f"{gallery_url}/photos/{ids['obama_2.jpg']}/thumb"
    assert httpx.get(thumb).status_code == 404
    assert csp_violations(driver) == []


def test_enrollment_is_refused_without_consent_and_with_a_wrong_access_code(
    browser: WebDriver, event_server: Server, engine, artifacts: Path
) -> None:
    driver = browser
    phone(driver)
    driver.get(f"{event_server.url}/e/gala")
    driver.find_element(By.ID, "selfie").send_keys(str(DATA / "obama_1.jpg"))
    driver.find_element(By.CSS_SELECTOR, "#enroll button").click()
    # The browser keeps the form: the box must be ticked.
    assert driver.current_url.endswith("/e/gala")
    assert driver.execute_script("return document.getElementById('consent').validity.valueMissing")
    # A browser that posts anyway (the check removed) is refused by the server.
    driver.execute_script("document.getElementById('consent').removeAttribute('required')")
    driver.find_element(By.CSS_SELECTOR, "#enroll button").click()
    error = wait_for(driver, lambda d: d.find_element(By.ID, "consent-error"), "no refusal")
    assert "Tick the box" in error.text
    screenshots(driver, artifacts, "no-consent")

    driver.get(f"{event_server.url}/e/coded")
    driver.find_element(By.ID, "selfie").send_keys(str(DATA / "obama_1.jpg"))
    driver.find_element(By.ID, "access-code").send_keys("BIB-9999")
    driver.find_element(By.ID, "consent").click()
    driver.find_element(By.CSS_SELECTOR, "#enroll button").click()
    error = wait_for(driver, lambda d: d.find_element(By.ID, "code-error"), "no refusal")
    assert "access code is not right" in error.text
    screenshots(driver, artifacts, "wrong-code")
    with db.read(engine) as conn:
        participants = conn.execute(
            select(func.count()).select_from(User).where(User.gallery_token_hash.is_not(None))
        ).scalar_one()
    assert participants == 0
    assert csp_violations(driver) == []
