"""The CLI as a package, and the logic that left it for the core (issue 9, item 5).

`photoctl.cli` is the root group and the entry point; one module per command family imports
what they share from `photoctl.cli.common`, never from the package, so there is no import
circle. What used to be written inside commands now lives where both the CLI and the API reach
it: serving in photoctl.api.serve, creating a user with a selfie in photoctl.users, retrying
named jobs in photoctl.queue, the --watch loop in photoctl.cli.common. Every command keeps a
help text, in the manner of simonw/sqlite-utils tests/test_docs.py.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import pkgutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import update

import photoctl.cli as cli_package
from photoctl import config, db, faces, queue, users
from photoctl.api.serve import check_can_listen, run_server
from photoctl.cli import cli, main
from photoctl.cli.common import Stopped, stop_request, watch_loop
from photoctl.errors import ConfigError, NoDatabase, NotFound, PermanentError
from photoctl.models import Job, JobKind, JobState
from tests.support import MAX_MODULE_LINES

PACKAGE_DIR = Path(cli_package.__file__).parent


def all_commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> dict:
    """Every command and group under ``group``, by its words (`("jobs", "retry")`)."""
    found = {path: group}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found.update(all_commands(command, (*path, name)))
        else:
            found[(*path, name)] = command
    return found


def cli_module_names() -> list[str]:
    return [info.name for info in pkgutil.iter_modules(cli_package.__path__)]


# -- the package ------------------------------------------------------------------------------


@pytest.mark.parametrize("words", sorted(all_commands()), ids=lambda w: " ".join(w) or "photoctl")
def test_every_command_has_a_help_text_and_its_help_exits_0(words: tuple[str, ...]) -> None:
    command = all_commands()[words]
    assert (command.help or "").strip(), f"photoctl {' '.join(words)} has no help text"
    result = CliRunner().invoke(cli, [*words, "--help"], prog_name="photoctl")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: photoctl {' '.join(words)}".rstrip())
    short = CliRunner().invoke(cli, [*words, "-h"], prog_name="photoctl")
    assert short.output == result.output


def test_every_option_says_what_it_does() -> None:
    silent = [
        f"photoctl {' '.join(words)} {param.opts[0]}"
        for words, command in all_commands().items()
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    assert silent == []


def test_the_console_script_and_python_m_run_the_same_main() -> None:
    (script,) = [
        entry
        for entry in importlib.metadata.entry_points(group="console_scripts")
        if entry.name == "photoctl"
    ]
    assert script.value == "photoctl.cli:main" and script.load() is main
    ran = subprocess.run(
        [sys.executable, "-m", "photoctl", "--help"], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0 and ran.stderr == ""
    assert ran.stdout.startswith("Usage: photoctl [OPTIONS] COMMAND [ARGS]...")
    listed = ran.stdout.split("Commands:")[1].split()
    assert {name for name in cli.commands} <= set(listed)


def test_no_module_of_the_cli_or_of_serving_is_over_the_house_bound() -> None:
    # One bound for every module (tests/test_house_seams.py), not a tighter one of its own.
    paths = [*PACKAGE_DIR.glob("*.py"), PACKAGE_DIR.parent / "api" / "serve.py"]
    lengths = {path.name: len(path.read_text().splitlines()) for path in paths}
    assert max(lengths.values()) < MAX_MODULE_LINES, lengths


def test_command_modules_import_from_common_never_from_the_package() -> None:
    for name in cli_module_names():
        tree = ast.parse((PACKAGE_DIR / f"{name}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        from_cli = {module for module in imported if module and module.startswith("photoctl.cli")}
        allowed = set() if name == "common" else {"photoctl.cli.common"}
        assert from_cli <= allowed, (name, from_cli)


def test_the_names_tests_and_scripts_import_stay_importable() -> None:
    for name in ("cli", "main", "App", "json_option", "pass_app", "UsageProblem", "Stopped"):
        assert hasattr(cli_package, name), name
    for name in cli_module_names():
        importlib.import_module(f"photoctl.cli.{name}")


# -- the watch loop ---------------------------------------------------------------------------


@pytest.fixture
def fresh_stop_request():
    """The process-wide stop request, as a command finds it, and as it was afterwards."""
    stop_request.requested = False
    yield stop_request
    stop_request.requested = False


def test_watch_loop_without_an_interval_runs_one_round(fresh_stop_request) -> None:
    rounds: list[int] = []
    watch_loop(None, rounds.append)
    assert rounds == [0]


def test_watch_loop_repeats_until_a_stop_is_asked(fresh_stop_request) -> None:
    rounds: list[int] = []

    def one_round(number: int) -> None:
        rounds.append(number)
        if number == 3:
            fresh_stop_request.requested = True

    watch_loop(0.01, one_round)
    assert rounds == [0, 1, 2, 3]


def test_sigterm_during_a_watch_round_ends_the_loop_after_that_round(
    fresh_stop_request,
) -> None:
    rounds: list[int] = []

    def one_round(number: int) -> None:
        rounds.append(number)
        # What the signal handler does on SIGTERM: inside the loop it must not raise.
        fresh_stop_request.on_signal(signal.SIGTERM, None)
        rounds.append(number)

    watch_loop(60, one_round)  # would sleep a minute if the stop were not seen at once
    assert rounds == [0, 0]
    with pytest.raises(Stopped):  # outside the loop, SIGTERM stops at once
        fresh_stop_request.on_signal(signal.SIGTERM, None)


# -- serving ----------------------------------------------------------------------------------


def test_a_busy_port_is_a_config_error_naming_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"cannot listen on 127\.0\.0\.1:{port}: .*in use"):
            check_can_listen("127.0.0.1", port)
    check_can_listen("127.0.0.1", port)  # free again: no error


def test_run_server_without_a_database_creates_nothing(tmp_path: Path) -> None:
    settings = config.load(data_dir=str(tmp_path / "data"), environ={})
    with pytest.raises(NoDatabase):
        run_server(settings, host="127.0.0.1", port=1)
    assert not (tmp_path / "data").exists()


# -- users: a user with a selfie, or none -----------------------------------------------------


def test_a_failed_enrollment_leaves_no_user_and_frees_the_name(
    settings,
    engine,
    tmp_path: Path,
) -> None:
    selfie = tmp_path / "selfie.jpg"
    selfie.write_bytes(b"not an image at all")
    local = faces.make_engine("local", settings, engine)
    with pytest.raises(PermanentError):
        users.add_user_with_selfie(engine, local, settings, "alice", selfie, admin=True)
    assert users.list_users(engine) == []
    user_id, token = users.add_user(engine, "alice")  # the name was given back
    assert users.user_by_token(engine, token, 60)[0] == user_id


def test_adding_a_user_that_exists_with_a_selfie_changes_nothing(
    settings,
    engine,
    tmp_path: Path,
) -> None:
    _, token = users.add_user(engine, "alice")
    selfie = tmp_path / "selfie.jpg"
    selfie.write_bytes(b"not an image at all")
    local = faces.make_engine("local", settings, engine)
    with pytest.raises(ConfigError, match="already exists"):
        users.add_user_with_selfie(engine, local, settings, "alice", selfie)
    assert [user.name for user in users.list_users(engine)] == ["alice"]
    assert users.user_by_token(engine, token, 60) is not None


# -- queue: retrying jobs named by id prefix ----------------------------------------------------


def jobs_in_states(engine, *states: JobState) -> list[str]:
    """One no-op job per state, in that state; their ids in the same order."""
    with db.write(engine) as conn:
        ids = queue.enqueue_jobs(conn, JobKind.NOOP, [None] * len(states))
        for job_id, state in zip(ids, states, strict=True):
            conn.execute(update(Job.__table__).where(Job.id == job_id).values(state=state))
    return ids


def state_of(engine, job_id: str) -> str:
    with db.read(engine) as conn:
        return queue.get_job(conn, job_id).state


def test_retry_named_jobs_resolves_prefixes_and_requeues_only_finished_ones(engine) -> None:
    failed, done, running = jobs_in_states(engine, JobState.FAILED, JobState.DONE, JobState.RUNNING)
    with db.write(engine) as conn:
        full_ids, count = queue.retry_named_jobs(conn, [failed[:12], done, running])
    assert (full_ids, count) == ([failed, done, running], 2)
    assert [state_of(engine, job) for job in (failed, done, running)] == [
        JobState.QUEUED,
        JobState.QUEUED,
        JobState.RUNNING,
    ]


def test_retry_named_jobs_with_an_unknown_name_retries_nothing(engine) -> None:
    (failed,) = jobs_in_states(engine, JobState.FAILED)
    with pytest.raises(NotFound, match="no job zzzz"), db.write(engine) as conn:
        queue.retry_named_jobs(conn, [failed, "zzzz"])
    assert state_of(engine, failed) == JobState.FAILED


def test_retry_named_jobs_with_failed_retries_every_failed_job(engine) -> None:
    first, second, done = jobs_in_states(engine, JobState.FAILED, JobState.FAILED, JobState.DONE)
    with db.write(engine) as conn:
        assert queue.retry_named_jobs(conn, failed=True) == ([], 2)
    assert [state_of(engine, job) for job in (first, second, done)] == [
        JobState.QUEUED,
        JobState.QUEUED,
        JobState.DONE,
    ]
