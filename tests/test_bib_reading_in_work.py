"""`photoctl work` reads bibs in the photo's own job, `bibs scan` queues the photos processed
before, and `bibs find/list/stats`, `stats` and `events show` answer from what was stored
(issue 21, items 2 and 7): real OCR on generated race photos, the real CLI, both databases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import select

from photoctl.models import BibRead, Photo
from testkit.bibs import race_photo
from tests.support.cli import photoctl_env, run_photoctl

# Two small photos (3000x2000, the size a 24 MP JPEG's draft is read at) with 2-3 bibs each.
SEEDS = (11, 12)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, set[str]]]:
    folder = tmp_path_factory.mktemp("race")
    shown: dict[str, set[str]] = {}
    for seed in SEEDS:
        photo = race_photo(seed, (3000, 2000), runners=(2, 3), digit_px=(30, 70))
        photo.image.save(folder / f"race-{seed}.jpg", quality=92)
        shown[f"race-{seed}.jpg"] = {bib.number for bib in photo.bibs}
    return folder, shown


def cli(env, *args: str, code: int = 0):
    done = run_photoctl(list(args), env, timeout=180)
    assert done.returncode == code, done.stderr
    return done


def stored(db_url: str) -> list[tuple[str, str, float, float, float]]:
    engine = sqlalchemy.create_engine(db_url)
    try:
        with engine.connect() as conn:
            reads, photos = BibRead.__table__, Photo.__table__
            rows = conn.execute(
                select(
                    photos.c.filename,
                    reads.c.bib,
                    reads.c.confidence,
                    reads.c.box_width,
                    reads.c.read_at,
                ).join(photos, photos.c.id == reads.c.photo_id)
            )
            return sorted(tuple(row) for row in rows)  # type: ignore[misc]
    finally:
        engine.dispose()


def test_work_reads_bibs_in_the_photo_job_and_bibs_find_list_stats_answer(
    tmp_path, db_url, photos
) -> None:
    folder, shown = photos
    env = photoctl_env(tmp_path, db_url)
    cli(env, "events", "create", "city", "--title", "City", "--bibs")
    # One bib of the first photo is left off the start list: it is never stored.
    first, second = (sorted(shown[f"race-{seed}.jpg"]) for seed in SEEDS)
    listed = [*first[1:], *second, "77"]
    start = tmp_path / "start.csv"
    start.write_text("bib,name\n" + "".join(f"{b},Runner {b}\n" for b in listed))
    cli(env, "bibs", "import", "city", str(start))
    cli(env, "ingest", str(folder), "--event", "city")
    work = cli(env, "--engine", "none", "work", "-n", "1", "--until-empty")
    assert "2 jobs done" in work.stderr

    rows = stored(db_url)
    assert {(name, bib) for name, bib, *_ in rows} == {
        (name, bib) for name, bibs in shown.items() for bib in bibs if bib in listed
    }
    assert all(confidence >= 0.8 and 0 < width < 1 for _, _, confidence, width, _ in rows)

    found = json.loads(cli(env, "bibs", "find", "city", f"#0{second[0]}", "--json").stdout)
    assert found["bib"] == second[0]
    assert [p["filename"] for p in found["photos"]] == ["race-12.jpg"]
    assert set(found["photos"][0]) >= {"id", "filename", "confidence", "box"}
    missing = json.loads(cli(env, "bibs", "find", "city", first[0], "--json").stdout)
    assert missing == {"bib": first[0], "photos": []}, "a bib off the start list is not stored"

    exported = json.loads(cli(env, "bibs", "list", "city", "--json").stdout)
    assert [entry["bib"] for entry in exported["bibs"]] == sorted(
        {bib for bib in listed if bib != "77"}, key=int
    )
    assert all(set(p) == {"id", "filename"} for e in exported["bibs"] for p in e["photos"])

    figures = json.loads(cli(env, "bibs", "stats", "city", "--json").stdout)
    assert figures["photos_read"] == 2 and figures["distinct_bibs"] == len(listed) - 1
    assert figures["start_list_runners"] == len(listed)
    assert figures["runners_with_photos"] == len(listed) - 1
    line = cli(env, "bibs", "stats", "city").stdout
    assert f"{len(listed) - 1} of {len(listed)} start-list runners" in line
    assert "bibs:    2 photos read" in cli(env, "stats").stdout
    assert json.loads(cli(env, "stats", "--json").stdout)["bibs"]["photos_read"] == 2
    assert "bibs read: 2 photos read" in cli(env, "events", "show", "city").stdout
    assert "Runner" not in cli(env, "events", "show", "city", "--json").stdout


def test_bibs_scan_reads_photos_processed_before_and_never_reads_twice(
    tmp_path, db_url, photos
) -> None:
    folder, shown = photos
    env = photoctl_env(tmp_path, db_url)
    cli(env, "events", "create", "late", "--title", "Late")
    cli(env, "ingest", str(folder), "--event", "late")
    cli(env, "--engine", "none", "work", "--until-empty")
    assert stored(db_url) == [], "an event without bibs reads none"
    refused = cli(env, "bibs", "scan", "late", code=2)
    assert "--bibs on" in refused.stderr

    switched = cli(env, "events", "edit", "late", "--bibs", "on")
    assert "`photoctl bibs scan late` queues those processed before" in switched.stderr
    assert "2 photos of late queued" in cli(env, "bibs", "scan", "late").stderr
    assert "0 photos of late queued" in cli(env, "bibs", "scan", "late").stderr, "queued once"
    work = cli(env, "--engine", "none", "work", "--until-empty")
    assert "2 jobs done" in work.stderr
    rows = stored(db_url)
    assert {(name, bib) for name, bib, *_ in rows} == {
        (name, bib) for name, bibs in shown.items() for bib in bibs
    }
    assert "0 photos of late queued" in cli(env, "bibs", "scan", "late").stderr

    # A rerun of the photos' jobs (retry of done jobs) finds the checkpoint: nothing read again.
    jobs = [json.loads(line) for line in cli(env, "jobs", "list", "--json").stdout.splitlines()]
    for job in jobs:
        cli(env, "jobs", "retry", job["id"])
    cli(env, "--engine", "none", "work", "--until-empty")
    assert stored(db_url) == rows, "same reads, same read_at"


def test_reads_below_the_confidence_threshold_are_not_stored(tmp_path, db_url, photos) -> None:
    folder, _ = photos
    env = photoctl_env(tmp_path, db_url)
    cli(env, "events", "create", "strict", "--title", "Strict", "--bibs")
    cli(env, "ingest", str(folder), "--event", "strict")
    cli(env, "--engine", "none", "work", "--until-empty")
    every = stored(db_url)
    confidences = sorted(confidence for _, _, confidence, _, _ in every)
    assert len(confidences) >= 3
    # A threshold between the least and the most sure read: the less sure ones go.
    threshold = (confidences[0] + confidences[-1]) / 2
    env = {**env, "PHOTOCTL_BIBS_MIN_CONFIDENCE": repr(threshold)}
    for job in [
        json.loads(line) for line in cli(env, "jobs", "list", "--json").stdout.splitlines()
    ]:
        cli(env, "jobs", "retry", job["id"])
    engine = sqlalchemy.create_engine(db_url)
    with engine.begin() as conn:  # forget the checkpoint, as a photo never read would be
        conn.execute(sqlalchemy.update(Photo.__table__).values(bibs_read_at=None))
    engine.dispose()
    cli(env, "--engine", "none", "work", "--until-empty")
    kept = stored(db_url)
    assert {row[:2] for row in kept} == {row[:2] for row in every if row[2] >= threshold}
    assert len(kept) < len(every)


def test_the_local_face_engine_job_reads_bibs_too_and_a_range_bounds_what_is_kept(
    tmp_path, db_url, photos
) -> None:
    folder, shown = photos
    env = photoctl_env(tmp_path, db_url)
    # The range keeps the bibs under 3000 only: the others are never stored.
    cli(env, "events", "create", "city", "--title", "City", "--bibs", "--bib-range", "1-3000")
    cli(env, "ingest", str(folder), "--event", "city")
    work = cli(env, "work", "--until-empty")  # the default engine: local faces, same job
    assert "2 jobs done" in work.stderr, "one job a photo: thumbnails, faces and bibs"
    every = {(name, bib) for name, bibs in shown.items() for bib in bibs}
    assert {(name, bib) for name, bib, *_ in stored(db_url)} == {
        (name, bib) for name, bib in every if int(bib) <= 3000
    }
    # A narrower range later drops what it no longer allows.
    cli(env, "events", "edit", "city", "--bib-range", "1-2000")
    assert {(name, bib) for name, bib, *_ in stored(db_url)} == {
        (name, bib) for name, bib in every if int(bib) <= 2000
    }
