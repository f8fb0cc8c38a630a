"""Ingest: registration, dedupe by content, skipping unchanged and unsettled files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from click.testing import CliRunner

from photoctl import db, queue
from photoctl.cli import cli
from photoctl.ingest import ingest_paths
from testkit.photos import settle, write_photo, write_tree


def job_states(engine) -> dict[str, int]:
    with db.read(engine) as conn:
        return {k: v for k, v in queue.count_by_state(conn).items() if v}


def test_ingest_registers_each_image_and_enqueues_one_job(engine, settings, tmp_path) -> None:
    write_tree(tmp_path / "photos", 30)
    (tmp_path / "photos" / "notes.txt").write_text("not a photo, not an image extension")
    report = ingest_paths(engine, settings, [str(tmp_path / "photos")])
    assert (report.new, report.duplicates, report.skipped, report.errors) == (30, 0, 0, [])
    assert job_states(engine) == {"queued": 30}


def test_ingesting_the_same_tree_twice_adds_nothing(engine, settings, tmp_path) -> None:
    write_tree(tmp_path / "photos", 20)
    ingest_paths(engine, settings, [str(tmp_path / "photos")])
    again = ingest_paths(engine, settings, [str(tmp_path / "photos")])
    assert (again.new, again.duplicates, again.skipped) == (0, 0, 20)
    assert job_states(engine) == {"queued": 20}


def test_same_bytes_under_two_names_are_one_photo(engine, settings, tmp_path) -> None:
    original = write_photo(tmp_path / "photos" / "a.jpg", seed=7)
    shutil.copy2(original, tmp_path / "photos" / "copy-of-a.jpg")
    report = ingest_paths(engine, settings, [str(tmp_path / "photos")])
    assert (report.new, report.duplicates) == (1, 1)
    # Later, the same content under a third name, in another run.
    shutil.copy2(original, tmp_path / "photos" / "third.jpg")
    later = ingest_paths(engine, settings, [str(tmp_path / "photos")])
    assert (later.new, later.duplicates, later.skipped) == (0, 1, 2)
    assert job_states(engine) == {"queued": 1}


def test_files_still_being_written_are_left_for_the_next_run(engine, settings, tmp_path) -> None:
    fresh = write_photo(tmp_path / "photos" / "fresh.jpg", seed=1, settled=False)
    write_photo(tmp_path / "photos" / "old.jpg", seed=2)
    report = ingest_paths(engine, settings, [str(tmp_path / "photos")])
    assert (report.new, report.skipped, report.unsettled) == (1, 1, 1)
    settle(fresh)
    later = ingest_paths(engine, settings, [str(tmp_path / "photos")])
    assert (later.new, later.skipped) == (1, 1)


def test_a_changed_file_is_read_again(engine, settings, tmp_path) -> None:
    path = write_photo(tmp_path / "photos" / "a.jpg", seed=1)
    ingest_paths(engine, settings, [str(tmp_path / "photos")])
    write_photo(path, seed=2)
    report = ingest_paths(engine, settings, [str(tmp_path / "photos")])
    assert report.new == 1


def test_dry_run_counts_but_registers_nothing(engine, settings, tmp_path) -> None:
    write_tree(tmp_path / "photos", 5)
    report = ingest_paths(engine, settings, [str(tmp_path / "photos")], dry_run=True)
    assert report.new == 5
    assert job_states(engine) == {}


def test_directory_symlink_loops_are_not_followed_forever(engine, settings, tmp_path) -> None:
    write_photo(tmp_path / "photos" / "a" / "x.jpg", seed=1)
    os.symlink(tmp_path / "photos", tmp_path / "photos" / "a" / "back-to-top")
    report = ingest_paths(engine, settings, [str(tmp_path / "photos")])
    assert (report.new, report.errors) == (1, [])


def test_ingest_cli_prints_one_summary_and_json(tmp_path: Path, settings) -> None:
    write_tree(tmp_path / "photos", 3)
    runner = CliRunner()
    args = ["--data-dir", str(settings.data_dir), "--database-url", settings.database_url]
    result = runner.invoke(cli, [*args, "ingest", str(tmp_path / "photos"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("new", "duplicates", "skipped", "errors")} == {
        "new": 3,
        "duplicates": 0,
        "skipped": 0,
        "errors": 0,
    }
    assert summary["error_files"] == [] and summary["seconds"] >= 0
    human = runner.invoke(cli, [*args, "ingest", str(tmp_path / "photos")])
    assert human.exit_code == 0
    assert "0 new, 0 duplicates, 3 skipped, 0 errors" in human.stderr


def test_rerun_on_unchanged_tree_reads_no_file(engine, settings, tmp_path, monkeypatch) -> None:
    write_tree(tmp_path / "photos", 50)
    ingest_paths(engine, settings, [str(tmp_path / "photos")])
    opened = []
    import builtins

    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    report = ingest_paths(engine, settings, [str(tmp_path / "photos")])
    assert report.skipped == 50 and opened == []
