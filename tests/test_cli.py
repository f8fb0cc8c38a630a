"""Every command explains itself, and the entry points work."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from photoctl.cli import cli
from tests.support.cli import photoctl_env, run_photoctl


def all_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(all_commands(command, (*prefix, name)))
    return found


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_every_command_has_help_with_a_description(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    command = cli
    for name in path:
        command = command.commands[name]
    assert command.help and len(command.help.strip()) > 20


def test_python_dash_m_runs_the_cli(tmp_path) -> None:
    result = run_photoctl(["--version"], photoctl_env(tmp_path))
    assert result.returncode == 0 and "version" in result.stdout


def test_unknown_job_is_reported_with_exit_1(tmp_path) -> None:
    # Read-only commands need an existing database (issue 7 item 11): create it first.
    assert CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "init"]).exit_code == 0
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "jobs", "show", "abc"])
    assert result.exit_code == 1 and "no job abc" in result.stderr


def test_bad_usage_exits_2(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "work", "-n", "0"])
    assert result.exit_code == 2


def test_doctor_reports_database_schema_and_storage(tmp_path) -> None:
    assert CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "init"]).exit_code == 0
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "doctor"])
    assert "[ok  ] database" in result.stdout and "[ok  ] storage" in result.stdout
