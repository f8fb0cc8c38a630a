"""`photoctl ingest --dry-run` with the rekognition engine says what the new photos will cost
(issue 11), on SQLite and PostgreSQL, and writes nothing."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from photoctl import db, events, faces, participants
from photoctl.ingest import ingest_paths
from photoctl.ingest_estimate import ASSUMED_FACES_PER_PHOTO, estimate
from photoctl.models import Job, Photo, ServiceCall
from photoctl.worker import drain_in_process
from testkit.fake_rekognition import PALETTE
from tests.support.cli import photoctl_env, run_photoctl
from tests.support.colour_faces import face_photo

RED, BLUE = (255, 0, 0), (0, 0, 255)


def rows(engine) -> tuple[int, int, int]:
    with db.read(engine) as conn:
        return tuple(
            conn.execute(select(func.count()).select_from(model)).scalar_one()
            for model in (Photo, Job, ServiceCall)
        )  # type: ignore[return-value]


def test_a_dry_run_prints_the_calls_and_cost_of_the_new_photos_and_writes_nothing(
    settings, engine, fake, aws, tmp_path, db_url
) -> None:
    rk_settings = settings.replace(
        "rekognition", endpoint_url=fake.endpoint_url, region="eu-west-1", max_tps=100.0
    )
    run = events.create_event(engine, "run", title="Run", date=None, retention_days=30)
    rekognition = faces.make_engine("rekognition", rk_settings, engine)
    for name, colour in (("red", RED), ("blue", BLUE)):
        selfie = face_photo(tmp_path / "selfies" / f"{name}.jpg", [colour], (640, 480))
        participants.enroll_participant(
            engine, rekognition, rk_settings, run, selfie, consented=True, access_code=None
        )
    face_photo(tmp_path / "done" / "crowd.jpg", [RED, BLUE, *PALETTE[5:8]], (1400, 700))
    face_photo(tmp_path / "done" / "red.jpg", [RED], (900, 600))
    ingest_paths(engine, rk_settings, [str(tmp_path / "done")], event_id=run.id)
    assert drain_in_process(rk_settings, "rekognition").failed == 0
    for index in range(4):
        face_photo(tmp_path / "new" / f"{index}.jpg", [PALETTE[index]], (800 + 10 * index, 600))

    # Indexed so far: a photo with 5 faces and one with 1 (3 a photo); 2 selfies enrolled, so
    # a photo like these takes min(5, 2) or min(1, 2) searches: 1.5 on average.
    figures = estimate(engine, rk_settings, run.id, 4)
    assert (figures.index_faces, figures.search_faces, figures.calls) == (4, 6, 10)
    assert figures.stored_faces == 12 and figures.enrolled_selfies == 2
    assert figures.basis == "as in this event's 2 indexed photos"

    before = rows(engine)
    env = photoctl_env(
        tmp_path,
        db_url,
        PHOTOCTL_REKOGNITION_PRICE_PER_1000_CALLS="2",
        PHOTOCTL_INGEST_SETTLE_SECONDS="0",
    )
    args = [
        "--engine",
        "rekognition",
        "ingest",
        str(tmp_path / "new"),
        "--event",
        "run",
        "--dry-run",
    ]
    result = run_photoctl([*args, "--json"], env)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["new"] == 4
    assert printed["rekognition"]["calls"] == 10
    assert printed["rekognition"]["estimated_cost_usd"] == 0.02
    assert printed["rekognition"]["assumption"] == "as in this event's 2 indexed photos"
    text = run_photoctl(args, env).stderr
    assert (
        "dry run: rekognition: 4 new photos need ~10 calls (4 IndexFaces + ~6 SearchFaces), ~$0.02"
        in text
    )
    assert "Assumed: 3.0 faces a photo (as in this event's 2 indexed photos)" in text
    assert rows(engine) == before, "a dry run writes no photo, job or call count"

    # Another engine: no estimate; a first event without history: the stated assumption.
    local = run_photoctl(["--engine", "local", "ingest", str(tmp_path / "new"), "--dry-run"], env)
    assert local.returncode == 0 and "rekognition" not in local.stderr
    first = estimate(None, rk_settings, run.id, 10)
    assert (first.calls, first.stored_faces) == (10, 10 * ASSUMED_FACES_PER_PHOTO)
    assert first.basis == f"no photo indexed yet: {ASSUMED_FACES_PER_PHOTO} assumed"
