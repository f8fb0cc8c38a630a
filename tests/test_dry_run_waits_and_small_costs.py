"""`ingest --dry-run` right after a card was copied (issue 20, item 19): it counted none of the
files still settling and said the cost was "~$0.00". It now waits for them as ingest does
(ingest.settle_wait_seconds), and a cost under a cent is shown to two significant digits."""

from __future__ import annotations

import json
import time

import pytest

from photoctl.budget_syntax import usd_text
from testkit.photos import write_photo
from tests.support.cli import photoctl_env, run_photoctl


def copied_just_now(folder, count: int) -> None:
    for index in range(count):
        write_photo(folder / f"IMG_{index}.jpg", seed=index, size=(320, 240), settled=False)


def test_a_dry_run_right_after_a_copy_waits_for_the_files_and_prices_them(tmp_path, db_url):
    env = photoctl_env(tmp_path, db_url, PHOTOCTL_INGEST_SETTLE_SECONDS="1")
    assert run_photoctl(["init"], env).returncode == 0
    copied_just_now(tmp_path / "card", 3)
    began = time.monotonic()
    args = ["--engine", "rekognition", "ingest", str(tmp_path / "card"), "--dry-run"]
    dry = run_photoctl(args, env)
    assert dry.returncode == 0, dry.stderr
    assert time.monotonic() - began >= 0.5, "it waited for the files to settle"
    assert "dry run: would ingest 3 new, 0 duplicates, 0 skipped" in dry.stderr, dry.stderr
    # 3 IndexFaces, nobody enrolled: 3 calls at the default $1 per 1,000.
    assert "3 new photos need ~3 calls (3 IndexFaces + ~0 SearchFaces), ~$0.003;" in dry.stderr
    assert "~$0.00;" not in dry.stderr and "~$0.00009/month" in dry.stderr

    as_json = json.loads(run_photoctl([*args, "--json"], env).stdout)
    assert as_json["new"] == 3 and as_json["rekognition"]["estimated_cost_usd"] == 0.003
    assert as_json["rekognition"]["storage_cost_per_month_usd"] == 0.00009

    # It wrote nothing: the real run still finds all three new.
    stats = json.loads(run_photoctl(["stats", "--json"], env).stdout)
    assert stats["queue"]["total_enqueued"] == 0


def test_a_dry_run_with_no_wait_configured_says_what_is_still_being_written(tmp_path) -> None:
    env = photoctl_env(
        tmp_path, PHOTOCTL_INGEST_SETTLE_SECONDS="30", PHOTOCTL_INGEST_SETTLE_WAIT_SECONDS="0"
    )
    copied_just_now(tmp_path / "card", 2)
    dry = run_photoctl(["ingest", str(tmp_path / "card"), "--dry-run"], env)
    assert dry.returncode == 0
    assert "0 new, 0 duplicates, 2 skipped" in dry.stderr
    assert "2 still being written" in dry.stderr


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (0.0, "$0"),
        (0.003, "$0.003"),
        (0.00009, "$0.00009"),
        (0.0123, "$0.01"),
        (0.5, "$0.50"),
        (1234.567, "$1,234.57"),
    ],
)
def test_costs_are_shown_to_the_cent_and_below_a_cent_to_two_digits(amount, shown) -> None:
    assert usd_text(amount) == shown
