"""The default event's page takes no enrollment until an organizer opens it (issue 20, item 1).

The default event holds everything ingested without --event, uploads and the quickstart photos:
an open page with no access code would let anyone who reaches serve send a face found anywhere
and get that person's photos. Real `photoctl serve` and the real CLI, on both databases; and an
existing database upgraded to 0011 comes out with the default event closed to enrollment.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from sqlalchemy import text

from photoctl import db, events
from tests.support.cli import photoctl_env, run_photoctl
from tests.support.serve import start_server, stop_server
from tests.test_events_schema import engine_at

DATA = Path(__file__).parent / "data"
NOT_OPEN = "Enrollment on this page is not open"


def enroll(client: httpx.Client, slug: str, **form: str) -> httpx.Response:
    selfie = {"selfie": ("me.jpg", (DATA / "obama_1.jpg").read_bytes(), "image/jpeg")}
    return client.post(f"/api/e/{slug}", files=selfie, data=form)


def page_form(client: httpx.Client, slug: str) -> tuple[httpx.Response, dict[str, str]]:
    page = client.get(f"/e/{slug}")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    return page, {"csrf": token.group(1)} if token else {}


def show(env: dict[str, str], slug: str) -> tuple[str, dict]:
    shown = run_photoctl(["events", "show", slug], env)
    assert shown.returncode == 0, shown.stderr
    as_json = run_photoctl(["events", "show", slug, "--json"], env)
    assert as_json.returncode == 0, as_json.stderr
    return shown.stdout, json.loads(as_json.stdout)


def test_the_default_event_page_takes_no_enrollment_until_an_organizer_opens_it(
    tmp_path: Path, db_url: str, engine
) -> None:
    env = photoctl_env(tmp_path, db_url)
    created = run_photoctl(["events", "create", "gala", "--title", "Gala"], env)
    assert created.returncode == 0, created.stderr
    text_out, shown = show(env, "default")
    assert "self-enrollment: off" in text_out
    assert "photoctl events edit default --self-enrollment on" in text_out
    assert shown["self_enrollment"] is False and shown["takes_enrollments"] is False
    # Other events keep taking enrollments as before.
    gala_text, gala = show(env, "gala")
    assert "self-enrollment: on" in gala_text and gala["takes_enrollments"] is True

    server = start_server(tmp_path, db_url)
    try:
        client = httpx.Client(base_url=server.url, timeout=60)
        page, form = page_form(client, "default")
        assert page.status_code == 200 and NOT_OPEN in page.text
        assert 'id="enroll"' not in page.text and 'type="file"' not in page.text
        assert client.get("/api/e/default").json()["open"] is False
        assert client.get("/api/e/default").json()["self_enrollment"] is False
        refused = enroll(client, "default", consent="true")
        assert refused.status_code == 403 and NOT_OPEN in refused.json()["detail"]
        # The HTML form posted anyway (an old page, a forged form) is refused the same way.
        _, gala_form = page_form(client, "gala")
        selfie = {"selfie": ("me.jpg", (DATA / "obama_1.jpg").read_bytes(), "image/jpeg")}
        posted = client.post("/e/default", files=selfie, data={**gala_form, "consent": "yes"})
        assert posted.status_code == 403 and NOT_OPEN in posted.text
        with db.read(engine) as conn:
            participants = conn.execute(
                text("SELECT count(*) FROM users WHERE gallery_token_hash IS NOT NULL")
            ).scalar_one()
        assert participants == 0
        assert client.get("/api/e/gala").json()["open"] is True

        opened = run_photoctl(["events", "edit", "default", "--self-enrollment", "on"], env)
        assert opened.returncode == 0, opened.stderr
        assert "matches them against every photo ingested without --event" in opened.stderr
        text_out, shown = show(env, "default")
        assert "self-enrollment: on" in text_out and shown["takes_enrollments"] is True
        assert client.get("/api/e/default").json()["open"] is True
        # Open now: a post is judged on its merits (here: no consent), no longer refused outright.
        assert enroll(client, "default", consent="false").status_code == 422
        audit = run_photoctl(["audit", "--event", "default", "--json"], env)
        edits = [json.loads(line) for line in audit.stdout.splitlines()]
        assert [e["detail"] for e in edits if e["action"] == "event_edit"] == [
            {"changed": "self_enrollment"}
        ]
        closed = run_photoctl(["events", "edit", "default", "--self-enrollment", "off"], env)
        assert closed.returncode == 0, closed.stderr
        assert client.get("/api/e/default").json()["open"] is False
    finally:
        stop_server(server)


def test_an_existing_database_upgraded_to_0011_has_its_default_event_closed_to_enrollment(
    tmp_path: Path, empty_db_url: str
) -> None:
    engine = engine_at(tmp_path, empty_db_url, "0010")
    with db.write(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO events (slug, title, retention_days, consent_text, consent_version,"
                " created_at) VALUES ('gala', 'Gala', 30, 'c', 'v', 0)"
            )
        )

    db.ensure_schema(engine)

    default, gala = events.require_event(engine, "default"), events.require_event(engine, "gala")
    assert default.self_enrollment is False and not default.takes_enrollments
    assert default.state == "open"  # photos still go in and are matched; only the page is shut
    assert gala.self_enrollment is True and gala.takes_enrollments
    assert events.create_event(
        engine, "new", title="N", date=None, retention_days=1
    ).self_enrollment
    engine.dispose()
