"""`photoctl events` and `photoctl audit` through click, on SQLite and PostgreSQL.

In-process (CliRunner) for speed: the commands are thin, what they call is tested in
tests/test_events.py; these check options, output, exit codes and the QR poster.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result
from PIL import Image
from sqlalchemy import select, update

from photoctl import db, events
from photoctl.cli import cli
from photoctl.models import Event, Face, Photo
from testkit.fake_rekognition import AWS_ENV, FakeRekognition
from testkit.photos import write_photo


@pytest.fixture
def run(settings) -> Iterator:
    base = ["--data-dir", str(settings.data_dir), "--database-url", settings.database_url]

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(cli, [*base, *args], env=env)

    yield invoke


def test_events_create_list_show_close_and_audit(run, engine) -> None:
    created = run(
        "events", "create", "marathon-2026", "--title", "City Marathon 2026",
        "--date", "2026-05-03", "--retention-days", "60", "--access-code",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    code = created.stdout.strip()
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}", code), "the generated code, once, on stdout"
    assert "only this once" in created.stderr
    event = events.require_event(engine, "marathon-2026")
    assert event.requires_access_code and event.date == "2026-05-03"
    assert events.access_code_matches(engine, event, code.lower())
    assert "60 days after the event" in event.consent_text, "the default consent text"

    again = run("events", "create", "marathon-2026", "--title", "Again")
    assert again.exit_code == 2 and "exists already" in again.stderr
    bad = run("events", "create", "Bad Slug", "--title", "Bad")
    assert bad.exit_code == 2 and "bad event slug" in bad.stderr

    listed = [json.loads(line) for line in run("events", "list", "--json").stdout.splitlines()]
    assert [(e["slug"], e["state"]) for e in listed] == [
        ("default", "open"),
        ("marathon-2026", "open"),
    ]
    shown = run("events", "show", "marathon-2026")
    assert shown.exit_code == 0 and "face data kept until 2026-07-02" in shown.stdout
    assert "set serve.public_url" in shown.stdout
    assert run("events", "show", "nope").exit_code == 2

    closed = run("events", "close", "marathon-2026", "--json")
    assert closed.exit_code == 0 and json.loads(closed.stdout)["state"] == "closed"
    assert run("events", "close", "marathon-2026").exit_code == 0, "closing twice is fine"

    entries = [json.loads(line) for line in run("audit", "--json").stdout.splitlines()]
    assert [(e["event"], e["action"]) for e in entries] == [
        ("marathon-2026", "event_create"),
        ("marathon-2026", "event_close"),
    ]
    assert entries[0]["detail"]["retention_days"] == 60
    text = run("audit", "--event", "marathon-2026").stdout
    assert "event_create  operator" in text and code not in text
    assert run("audit", "--event", "nope").exit_code == 2


def test_consent_file_and_chosen_access_code(run, engine, tmp_path) -> None:
    consent = tmp_path / "consent.md"
    consent.write_text("We keep your face template for 10 days. Ask us anything.\n")
    created = run(
        "events", "create", "gala", "--title", "Gala", "--consent-file", str(consent),
        "--access-code", "blue-42", "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    answer = json.loads(created.stdout)
    assert "access_code" not in answer, "a chosen code is not printed back"
    event = events.require_event(engine, "gala")
    assert event.consent_text == "We keep your face template for 10 days. Ask us anything."
    assert events.access_code_matches(engine, event, "BLUE 42")
    assert not events.access_code_matches(engine, event, None)


def stored_code_hash(engine, slug: str) -> str:
    with db.read(engine) as conn:
        return conn.execute(select(Event.access_code_hash).where(Event.slug == slug)).scalar_one()


def test_access_codes_are_stored_salted_and_slow_to_guess(run, engine) -> None:
    for slug in ("gala", "ball"):
        created = run("events", "create", slug, "--title", slug, "--access-code", "blue-42")
        assert created.exit_code == 0, created.output
    gala, ball = stored_code_hash(engine, "gala"), stored_code_hash(engine, "ball")
    assert gala.startswith("scrypt$") and ball.startswith("scrypt$")
    assert gala != ball, "the same code hashes differently per event (salted)"
    assert hashlib.sha256(b"BLUE42").hexdigest() not in (gala, ball)
    assert events.access_code_matches(engine, events.require_event(engine, "gala"), "blue 42")
    assert not events.access_code_matches(engine, events.require_event(engine, "gala"), "blue-43")


def test_a_code_stored_before_salting_still_opens_and_is_hashed_again(run, engine) -> None:
    assert run("events", "create", "gala", "--title", "Gala").exit_code == 0
    with db.write(engine) as conn:  # as a database from before this change holds it
        conn.execute(
            update(Event)
            .where(Event.slug == "gala")
            .values(access_code_hash=hashlib.sha256(b"BLUE42").hexdigest())
        )
    event = events.require_event(engine, "gala")

    assert not events.access_code_matches(engine, event, "blue-43")
    assert stored_code_hash(engine, "gala") == hashlib.sha256(b"BLUE42").hexdigest()
    assert events.access_code_matches(engine, event, "Blue-42")
    assert stored_code_hash(engine, "gala").startswith("scrypt$")
    assert events.access_code_matches(engine, event, "BLUE42"), "and it still opens"


def test_events_qr_writes_a_png_of_the_event_page(run, tmp_path) -> None:
    assert run("events", "create", "run", "--title", "Run").exit_code == 0
    poster = tmp_path / "poster.png"
    unset = run("events", "qr", "run", "--out", str(poster))
    assert unset.exit_code == 2 and "serve.public_url is not set" in unset.stderr
    assert not poster.exists()
    env = {"PHOTOCTL_SERVE_PUBLIC_URL": "https://photos.example.org/"}
    made = run("events", "qr", "run", "--out", str(poster), env=env)
    assert made.exit_code == 0, made.output
    assert made.stdout.strip() == "https://photos.example.org/e/run"
    with Image.open(poster) as image:
        assert image.format == "PNG" and image.size == (2480, 3508), "an A4 poster"
    assert run("events", "qr", "nope", "--out", str(poster), env=env).exit_code == 2


def test_ingest_into_an_event_and_refusals(run, engine, tmp_path) -> None:
    folder = tmp_path / "finish"
    write_photo(folder / "a.jpg", seed=1)
    unknown = run("ingest", str(folder), "--event", "nope")
    assert unknown.exit_code == 2 and "no event 'nope'" in unknown.stderr
    assert run("events", "create", "run", "--title", "Run").exit_code == 0
    assert run("events", "close", "run").exit_code == 0
    ingested = run("ingest", str(folder), "--event", "run")
    assert ingested.exit_code == 0, ingested.output  # a closed event still takes photos
    with db.read(engine) as conn:
        assert conn.execute(select(Photo.event_id)).scalars().all() == [
            events.require_event(engine, "run").id
        ]
    assert run("events", "purge", "run", "--yes").exit_code == 0
    write_photo(folder / "b.jpg", seed=2)
    purged = run("ingest", str(folder), "--event", "run")
    assert purged.exit_code == 2 and "purged" in purged.stderr


def test_events_purge_from_cron_reaches_rekognition_and_exits_by_outcome(
    run, engine, tmp_path
) -> None:
    assert run("events", "purge").exit_code == 2, "SLUG or --expired"
    assert run("events", "purge", "x", "--expired").exit_code == 2
    nothing = run("events", "purge", "--expired")
    assert nothing.exit_code == 0 and "nothing to purge" in nothing.stderr
    assert run("events", "create", "old", "--title", "Old", "--date", "2020-01-01").exit_code == 0
    folder = tmp_path / "old"
    write_photo(folder / "a.jpg", seed=3)
    assert run("ingest", str(folder), "--event", "old").exit_code == 0
    with db.write(engine) as conn:
        photo_id = conn.execute(select(Photo.id)).scalar_one()
        conn.execute(
            Face.__table__.insert().values(
                photo_id=photo_id, engine="rekognition", face_index=0, box_left=0, box_top=0,
                box_width=1, box_height=1, score=99, external_id="f-1",
            )
        )  # fmt: skip
    dry = run("events", "purge", "--expired", "--dry-run")
    assert dry.exit_code == 0 and dry.stdout.split() == ["old"]
    # The configured engine (local) cannot delete faces held by Rekognition: refused, kept.
    refused = run("events", "purge", "--expired")
    assert refused.exit_code == 1 and "--engine rekognition" in refused.stderr
    with FakeRekognition() as fake:
        fake_client = _collection(fake, "photoctl-old")
        env = {
            **AWS_ENV,
            "PHOTOCTL_REKOGNITION_ENDPOINT_URL": fake.endpoint_url,
            "PHOTOCTL_REKOGNITION_REGION": "eu-west-1",
        }
        purged = run("--engine", "rekognition", "events", "purge", "--expired", "--json", env=env)
        assert purged.exit_code == 0, purged.output
        report = json.loads(purged.stdout)
        assert report["slug"] == "old" and report["faces"] == 1 and report["collection_deleted"]
        assert len(fake.calls("DeleteCollection")) == 1
        assert "photoctl-old" not in fake_client.list_collections()["CollectionIds"]
        again = run("--engine", "rekognition", "events", "purge", "--expired", env=env)
        assert again.exit_code == 0 and "nothing to purge" in again.stderr
    actions = [e.action for e in events.event_audit(engine, "old")]
    assert actions == ["event_create", "purge"]


def _collection(fake: FakeRekognition, collection_id: str):
    client = fake.client()
    client.create_collection(CollectionId=collection_id)
    return client


def test_every_event_command_has_help(run) -> None:
    for args in (["events"], ["events", "purge"], ["events", "create"], ["audit"]):
        helped = run(*args, "--help")
        assert helped.exit_code == 0 and len(helped.stdout) > 200, args


def test_events_edit_changes_retention_consent_and_access_code_and_is_audited(
    run, engine, tmp_path
) -> None:
    assert (
        run("events", "create", "gala", "--title", "Gala", "--access-code", "abcd").exit_code == 0
    )
    before = events.require_event(engine, "gala")
    consent = tmp_path / "consent.txt"
    consent.write_text("New words.")
    edited = run(
        "events", "edit", "gala", "--title", "Gala 2026", "--date", "2026-06-01",
        "--retention-days", "10", "--consent-file", str(consent), "--no-access-code", "--json",
    )  # fmt: skip
    assert edited.exit_code == 0, edited.output
    after = events.require_event(engine, "gala")
    assert (after.title, after.date, after.retention_days) == ("Gala 2026", "2026-06-01", 10)
    assert after.consent_text == "New words." and after.consent_version != before.consent_version
    assert not after.requires_access_code
    generated = run("events", "edit", "gala", "--access-code")
    assert generated.exit_code == 0 and events.access_code_matches(
        engine, events.require_event(engine, "gala"), generated.stdout.strip()
    )
    assert run("events", "edit", "gala", "--date", "2026-01-01", "--no-date").exit_code == 2
    assert run("events", "edit", "nope", "--title", "x").exit_code == 2
    edits = [e.detail for e in events.event_audit(engine, "gala") if e.action == "event_edit"]
    assert edits[0]["changed"] == "access_code,consent,date,retention_days,title"
    assert edits[0]["consent_version"] == after.consent_version
    assert edits[1] == {"changed": "access_code"}
