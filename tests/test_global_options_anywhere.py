"""The root's options work after the command too, as people type them (issue 20, item 12):
the README's cron purge, `photoctl events purge --expired -q`, failed with "No such option".
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from photoctl.cli import cli
from tests.support.cli import photoctl_env, run_photoctl
from tests.support.colour_faces import face_photo


def every_command(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(every_command(command, (*prefix, name)))
    return found


@pytest.mark.parametrize("path", every_command(), ids=" ".join)
def test_every_global_option_is_accepted_after_every_command(path, tmp_path) -> None:
    # --help is eager, but the parser first reads every option typed: an unknown one fails.
    typed = ["-q", "-v", "--data-dir", str(tmp_path), "--database-url", "sqlite:///x.db"]
    typed += ["--config", str(tmp_path / "c.ini"), "--engine", "none", "--help"]
    result = CliRunner().invoke(cli, [*path, *typed])
    assert result.exit_code == 0, result.output


def test_the_readme_cron_purge_and_a_quiet_ingest_run_on_both_databases(tmp_path, db_url):
    env = photoctl_env(tmp_path, db_url, PHOTOCTL_INGEST_SETTLE_SECONDS="0")
    made = run_photoctl(
        ["events", "create", "old", "--title", "Old", "--date", "2020-01-01"]
        + ["--retention-days", "1"],
        env,
    )
    assert made.returncode == 0, made.stderr
    face_photo(tmp_path / "photos" / "a.jpg", [(255, 0, 0)], (320, 240))

    ingest = run_photoctl(["ingest", str(tmp_path / "photos"), "--event", "old", "-q"], env)
    assert ingest.returncode == 0, ingest.stderr
    assert ingest.stderr == "", "-q after the command silences the summary as before it"
    stats = json.loads(run_photoctl(["stats", "--json"], env).stdout)
    assert stats["queue"]["current_queue_size"] == 1

    purge = run_photoctl(["events", "purge", "--expired", "-q"], env)
    assert (purge.returncode, purge.stderr) == (0, "")
    shown = json.loads(run_photoctl(["events", "show", "old", "--json"], env).stdout)
    assert shown["purged_at"] is not None


def test_an_option_after_the_command_wins_over_the_same_option_before_it(tmp_path, db_url):
    env = photoctl_env(tmp_path, None)
    del env["PHOTOCTL_DATA_DIR"]
    elsewhere = str(tmp_path / "nothing-here")
    data = str(tmp_path / "data")
    # No database in `elsewhere`: the one typed after the command is the one used.
    made = run_photoctl(["init", "--data-dir", data, "--database-url", db_url], env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    stats = run_photoctl(
        ["--data-dir", elsewhere, "stats", "--json", "--data-dir", data, "--database-url", db_url],
        env,
        cwd=tmp_path,
    )
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["queue"]["current_queue_size"] == 0
    # Without it, the one before the command applies (and finds no database: exit 2).
    assert run_photoctl(["--data-dir", elsewhere, "stats"], env, cwd=tmp_path).returncode == 2

    ini = tmp_path / "other.ini"
    ini.write_text("[queue]\nworkers = 7\n")
    shown = run_photoctl(
        ["config", "show", "--json", "--config", str(ini), "--engine", "none"], env, cwd=tmp_path
    )
    assert shown.returncode == 0, shown.stderr
    values = json.loads(shown.stdout)
    assert values["queue.workers"]["value"] == 7
    assert values["faces.engine"] == {"value": "none", "source": "command line"}


def test_verbose_and_quiet_after_the_command_set_the_logging(tmp_path) -> None:
    env = photoctl_env(tmp_path, PHOTOCTL_INGEST_SETTLE_SECONDS="0")
    face_photo(tmp_path / "photos" / "a.jpg", [(255, 0, 0)], (320, 240))
    loud = run_photoctl(["ingest", str(tmp_path / "photos"), "-v"], env)
    assert loud.returncode == 0 and " DEBUG [PhotoQueue] Job " in loud.stderr
    quiet = run_photoctl(["cache", "clear", "-q"], env)
    assert (quiet.returncode, quiet.stderr) == (0, "")


def test_init_with_quiet_prints_nothing_and_without_it_says_what_it_made(tmp_path: Path) -> None:
    env = photoctl_env(tmp_path)
    quiet = run_photoctl(["init", "-q"], env)
    spoken = run_photoctl(["init"], env)
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""
    assert spoken.returncode == 0 and "init: database already there" in spoken.stderr
