"""With the Rekognition engine, bibs are read by DetectText (issue 21, item 2): one call a photo
through the shared limiter, counted in usage, cost, budget and `ingest --dry-run`, the answer
filtered by the same rules as the local reader's. The fake endpoint reads nothing: it answers
the ground truth of testkit/bibs.py's photos, registered by the test (register_text)."""

from __future__ import annotations

import json
from pathlib import Path

from testkit.bibs import race_photo
from testkit.fake_rekognition import AWS_ENV, FakeRekognition
from tests.support.cli import photoctl_env, run_photoctl


def rekognition_env(tmp_path: Path, db_url: str, fake: FakeRekognition, **extra: str) -> dict:
    settings = {
        "PHOTOCTL_REKOGNITION_ENDPOINT_URL": fake.endpoint_url,
        "PHOTOCTL_INGEST_SETTLE_SECONDS": "0",
        "PHOTOCTL_FACES_ENGINE": "rekognition",
    }
    return photoctl_env(tmp_path, db_url, **{**AWS_ENV, **settings, **extra})


def cli(env: dict, *args: str, code: int = 0):
    done = run_photoctl(list(args), env, timeout=180)
    assert done.returncode == code, done.stderr
    return done


def test_detect_text_reads_bibs_through_the_limiter_counted_in_usage_and_dry_run(
    tmp_path: Path, db_url: str, fake: FakeRekognition
) -> None:
    env = rekognition_env(tmp_path, db_url, fake)
    folder = tmp_path / "race"
    folder.mkdir()
    shown: dict[str, set[str]] = {}
    for seed in (31, 32):
        photo = race_photo(seed, (1500, 1000), runners=(2, 2), digit_px=(20, 40))
        lines = photo.text_lines()
        # Besides the bibs: a clock (not a bib) and a bib read too unsure to be stored.
        lines += [("1:02:03", (0.1, 0.05, 0.1, 0.03), 99.0), ("4321", (0.7, 0.9, 0.05, 0.02), 50.0)]
        fake.register_text(photo.image, lines)
        photo.image.save(folder / f"race-{seed}.jpg", quality=90)
        shown[f"race-{seed}.jpg"] = {bib.number for bib in photo.bibs}
    cli(env, "events", "create", "city", "--title", "City", "--bibs")

    dry = json.loads(
        cli(env, "ingest", str(folder), "--event", "city", "--dry-run", "--json").stdout
    )
    assert dry["rekognition"]["detect_text"] == 2
    assert dry["rekognition"]["calls"] == 4, "2 IndexFaces + 2 DetectText"
    assert (
        "2 IndexFaces + ~0 SearchFaces + 2 DetectText"
        in cli(env, "ingest", str(folder), "--event", "city", "--dry-run").stderr
    )

    cli(env, "ingest", str(folder), "--event", "city")
    work = cli(env, "work", "-n", "1", "--until-empty")
    assert "2 jobs done" in work.stderr
    assert len(fake.calls("DetectText")) == 2

    listed = json.loads(cli(env, "bibs", "list", "city", "--json").stdout)["bibs"]
    assert {(p["filename"], entry["bib"]) for entry in listed for p in entry["photos"]} == {
        (name, bib) for name, bibs in shown.items() for bib in bibs
    }, "the bibs, not the clock, not the unsure read"
    found = json.loads(
        cli(env, "bibs", "find", "city", sorted(shown["race-31.jpg"])[0], "--json").stdout
    )
    assert found["photos"][0]["confidence"] == 0.98

    calls = json.loads(cli(env, "events", "show", "city", "--json").stdout)["rekognition"]
    assert calls["total"]["by_operation"]["DetectText"]["accepted"] == 2
    stats = json.loads(cli(env, "stats", "--json").stdout)
    assert stats["rekognition"]["total"]["billed"] == 4, "DetectText is billed as IndexFaces is"
    assert stats["budget"]["billed_calls"] == 4


def test_an_event_without_bibs_makes_no_detect_text_call(
    tmp_path: Path, db_url: str, fake: FakeRekognition
) -> None:
    env = rekognition_env(tmp_path, db_url, fake)
    folder = tmp_path / "race"
    folder.mkdir()
    race_photo(33, (1500, 1000), runners=(1, 1), digit_px=(20, 40)).image.save(folder / "a.jpg")
    cli(env, "events", "create", "plain", "--title", "Plain")
    dry = json.loads(
        cli(env, "ingest", str(folder), "--event", "plain", "--dry-run", "--json").stdout
    )
    assert dry["rekognition"]["detect_text"] == 0
    cli(env, "ingest", str(folder), "--event", "plain")
    cli(env, "work", "--until-empty")
    assert fake.calls("DetectText") == []
