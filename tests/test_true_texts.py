"""What photoctl tells people is true: counts, the schema line, who the audit log credits, the
consent text and its retention. The real CLI, on SQLite and PostgreSQL.

The same texts on the participant pages, as a browser shows them, are in
tests/test_true_texts_browser.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sqlalchemy import Engine, select, update

from photoctl import config, db, events, faces, participants
from photoctl.migrations import SCHEMA_REVISION
from photoctl.models import Event, User
from photoctl.wording import plural
from testkit.photos import settle, write_photo
from tests.support.cli import photoctl_env, run_photoctl
from tests.test_events_schema import engine_at
from tests.test_participant_pages import add_participant

DATA = Path(__file__).parent / "data"


def test_plural_says_one_of_a_kind_and_several_of_any_other_count() -> None:
    assert [plural(n, "photo") for n in (0, 1, 2)] == ["0 photos", "1 photo", "2 photos"]
    assert plural(1, "entry") == "1 entry" and plural(3, "entry") == "3 entries"
    assert plural(2, "match", "matches") == "2 matches"


def test_a_new_database_says_it_was_created_not_upgraded(tmp_path: Path, empty_db_url: str) -> None:
    made = run_photoctl(["init"], photoctl_env(tmp_path, empty_db_url))
    assert made.returncode == 0, made.stderr
    assert f"Database created at schema revision {SCHEMA_REVISION}" in made.stderr, made.stderr
    assert "upgraded" not in made.stderr


def test_an_old_database_says_from_which_revision_it_was_upgraded(
    tmp_path: Path, empty_db_url: str
) -> None:
    engine_at(tmp_path, empty_db_url, "0008").dispose()
    upgraded = run_photoctl(["init"], photoctl_env(tmp_path, empty_db_url))
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"Database schema upgraded from revision 0008 to {SCHEMA_REVISION}" in upgraded.stderr
    again = run_photoctl(["init"], photoctl_env(tmp_path, empty_db_url))
    assert "schema" not in again.stderr.split("init:")[0], "nothing to say the second time"


def test_counts_of_one_are_singular(tmp_path: Path, db_url: str, engine: Engine) -> None:
    env = photoctl_env(
        tmp_path, db_url, PHOTOCTL_INGEST_MAX_BYTES="20000", PHOTOCTL_FACES_ENGINE="none"
    )
    gala = events.create_event(engine, "gala", title="Gala", date=None, retention_days=30)
    add_participant(engine, gala, "p-ann")
    folder = tmp_path / "photos"
    folder.mkdir()
    write_photo(folder / "small.jpg", size=(64, 48), seed=1)
    shutil.copy(folder / "small.jpg", folder / "copy.jpg")
    write_photo(folder / "large.jpg", size=(1600, 1200), seed=2)
    for path in folder.iterdir():
        settle(path)
    assert (folder / "large.jpg").stat().st_size > 20000

    ingested = run_photoctl(["ingest", str(folder), "--event", "gala"], env)
    assert ingested.returncode == 1, ingested.stderr
    assert "1 new, 1 duplicate, 0 skipped, 1 error in" in ingested.stderr, ingested.stderr

    listed = run_photoctl(["events", "list"], env)
    assert "gala  open  -  1 photo  1 participant  Gala" in listed.stdout, listed.stdout
    shown = run_photoctl(["events", "show", "gala"], env)
    assert "1 photo  1 participant" in shown.stdout
    assert "1 photos" not in listed.stdout + shown.stdout
    assert "1 participants" not in listed.stdout + shown.stdout

    worked = run_photoctl(["work", "-n", "1", "--until-empty"], env)
    assert worked.returncode == 0, worked.stderr
    assert "work: 1 job done, 0 failed, 0 workers restarted" in worked.stderr, worked.stderr

    purged = run_photoctl(["events", "purge", "gala", "--yes"], env)
    assert purged.returncode == 0, purged.stderr
    assert (
        'purged gala: 0 matches, 0 "not me"s, 0 selfies, 0 faces, 1 participant erased'
        in purged.stderr
    ), purged.stderr
    shown = run_photoctl(["events", "show", "gala"], env).stdout
    assert "face data deleted on " in shown and ", by hand" in shown, shown
    dry = run_photoctl(["events", "purge", "--expired", "--dry-run"], env)
    assert "dry run: 0 events would be purged" in dry.stderr


def test_the_audit_credits_each_entry_to_whoever_did_it(
    tmp_path: Path, db_url: str, engine: Engine, settings: config.Settings
) -> None:
    """Operator: the event; participant: consent, enrollment and the matches found then;
    worker: the matches a worker finds in a photo ingested afterwards."""
    env = photoctl_env(tmp_path, db_url)
    assert run_photoctl(["events", "create", "gala", "--title", "Gala"], env).returncode == 0
    gala = events.require_event(engine, "gala")
    local = faces.make_engine("local", settings, engine)
    assert local is not None
    participants.enroll_participant(
        engine, local, settings, gala, DATA / "obama_1.jpg", consented=True, access_code=None
    )
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(DATA / "obama_2.jpg", folder / "obama_2.jpg")
    settle(folder / "obama_2.jpg")
    assert run_photoctl(["ingest", str(folder), "--event", "gala"], env).returncode == 0
    worked = run_photoctl(["work", "-n", "1", "--until-empty"], env, timeout=240)
    assert worked.returncode == 0, worked.stderr

    entries = [
        json.loads(line) for line in run_photoctl(["audit", "--json"], env).stdout.splitlines()
    ]
    actors = [(entry["action"], entry["actor"]) for entry in entries]
    assert actors == [
        ("event_create", "operator"),
        ("consent", "participant"),
        ("enroll", "participant"),
        ("matches", "participant"),
        ("matches", "worker"),
    ]
    by_worker = entries[-1]
    assert by_worker["participant_id"] is None and by_worker["detail"]["users"] == 1
    worker_id = by_worker["detail"]["worker"]
    assert worker_id.count(":") == 3, "the id `photoctl work` gave the worker"
    text = run_photoctl(["audit", "--event", "gala"], env).stdout.splitlines()
    assert "  event_create  operator  " in text[0]
    assert f"  matches  participant {entries[3]['participant_id']}  photos=0" in text[3]
    assert f"  matches  worker {worker_id}  source=photo users=1" in text[4], text[4]
    assert all("operator" not in line for line in text[1:]), text

    # An operator who deletes a participant erases their face data: audited, and credited.
    participant = entries[3]["participant_id"]
    with db.read(engine) as conn:
        name = conn.execute(select(User.name).where(User.id == participant)).scalar_one()
    deleted = run_photoctl(["users", "delete", name, "--yes"], env)
    assert deleted.returncode == 0, deleted.stderr
    last = json.loads(run_photoctl(["audit", "--json"], env).stdout.splitlines()[-1])
    assert (last["action"], last["actor"], last["participant_id"]) == (
        "erase",
        "operator",
        participant,
    )
    line = run_photoctl(["audit", "--event", "gala"], env).stdout.splitlines()[-1]
    assert f"  erase  operator (participant {participant})  by=operator user_deleted=1" in line


def test_the_default_consent_text_follows_the_events_date_and_retention(
    tmp_path: Path, db_url: str
) -> None:
    env = photoctl_env(tmp_path, db_url)

    def shown(slug: str) -> dict:
        answer = run_photoctl(["events", "show", slug, "--json"], env)
        assert answer.returncode == 0, answer.stderr
        return json.loads(answer.stdout)

    assert run_photoctl(["events", "create", "run", "--title", "Run"], env).returncode == 0
    undated = shown("run")
    assert "deleted 365 days after the event closes to new participants." in undated["consent_text"]
    assert run_photoctl(["events", "edit", "run", "--date", "2027-05-03"], env).returncode == 0
    dated = shown("run")
    assert "deleted on 2028-05-02, 365 days after the event." in dated["consent_text"]
    assert dated["consent_version"] != undated["consent_version"], "a new version to agree to"
    edited = run_photoctl(["events", "edit", "run", "--retention-days", "1"], env)
    assert edited.returncode == 0, edited.stderr
    assert "deleted on 2027-05-04, 1 day after the event." in shown("run")["consent_text"]
    changes = [
        json.loads(line)["detail"]["changed"]
        for line in run_photoctl(["audit", "--json"], env).stdout.splitlines()
        if '"event_edit"' in line
    ]
    assert changes == ["consent,date", "consent,retention_days"]

    # A text of the organizer's own is theirs: an edit does not touch it.
    own = tmp_path / "consent.txt"
    own.write_text("Our own words about faces.", encoding="utf-8")
    assert run_photoctl(["events", "edit", "run", "--consent-file", str(own)], env).returncode == 0
    assert run_photoctl(["events", "edit", "run", "--no-date"], env).returncode == 0
    assert shown("run")["consent_text"] == "Our own words about faces."


def test_a_default_consent_text_of_the_earlier_wording_is_rewritten_by_an_edit(
    tmp_path: Path, db_url: str, engine: Engine
) -> None:
    """Events created before the wording followed the date said "365 days after the event"
    even without a date; an edit of their retention or date sets the true text."""
    env = photoctl_env(tmp_path, db_url)
    assert run_photoctl(["events", "create", "old", "--title", "Old"], env).returncode == 0
    earlier = events.default_consent_text("Old", 365, None).replace(
        "365 days after the event closes to new participants", "365 days after the event"
    )
    with db.write(engine) as conn:
        conn.execute(update(Event).where(Event.slug == "old").values(consent_text=earlier))
    edited = run_photoctl(["events", "edit", "old", "--retention-days", "30"], env)
    assert edited.returncode == 0, edited.stderr
    text = json.loads(run_photoctl(["events", "show", "old", "--json"], env).stdout)
    assert "deleted 30 days after the event closes to new participants." in text["consent_text"]
