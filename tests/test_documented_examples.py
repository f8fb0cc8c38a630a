"""Every `photoctl` example of the README and of every --help text parses, and each one that
can run here runs for real on SQLite with exit code 0 (issue 20, item 12: the README's cron
purge failed with "No such option '-q'" and nothing had ever run it).

The examples are read from the texts themselves: the README's indented lines that start with
`photoctl` (or `VAR=$(photoctl`), and the lines of each command's help that do, with `\\`
continuations joined and `# comments` dropped. `SLUG` stands for the README's event. Each runnable
example runs in its own copy of a prepared directory (default data dir, the files the examples
name), made by running the examples that create things (init, events create, users add/enroll),
so examples never depend on one another's order.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sqlite3
from pathlib import Path

import click
import pytest

from photoctl import storage_identity
from photoctl.cli import cli
from tests.support.cli import photoctl_env, run_photoctl

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SLUG = "marathon-2026"

# Examples that are parsed only, and why; any other example must run here with exit code 0
# (an example added to the README or a help text that cannot run here belongs in this list).
PARSE_ONLY = {
    ("--database-url", "postgresql://user@db/photos", "work"): "names a server that is not here",
    ("--engine", "rekognition", "work"): "needs AWS (tests/test_rekognition_*.py use a fake)",
    ("serve",): "runs until stopped (tests/test_serve.py starts it)",
    ("events", "purge", SLUG): "asks on a terminal; refused without one "
    "(tests/test_purge_by_name_needs_yes_without_terminal.py)",
    ("--data-dir", "/srv/photoctl"): "writes outside the test's directory",
    ("jobs", "retry", "8f3a1c2d"): "an example job id",
    ("db", "copy"): "names a server that is not here (tests/test_db_copy.py copies for real)",
    ("bibs", "import"): "names a start list not made here "
    "(tests/test_bib_events_and_start_lists.py imports for real)",
}
# Examples that create what the others use: run once, in order, to prepare the directory.
CREATING = (("init",), ("events", "create"), ("users", "add"), ("users", "enroll"))


def examples_in(text: str) -> list[str]:
    """The `photoctl` command lines of a text (indented blocks), continuations joined."""
    found, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if pending:
            pending += " " + stripped
        elif line.startswith("  ") and re.match(r"^(\w+=\$\()?photoctl ", stripped):
            pending = stripped
        else:
            continue
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        found.append(pending)
        pending = ""
    return found


def commands_of(example: str) -> list[tuple[str, ...]]:
    """An example's argument lists: `$(...)` unwrapped, `# comment` dropped, SLUG filled in,
    and the README's `events list / show SLUG / close SLUG` shorthand spelled out."""
    example = re.sub(r"^\w+=\$\((.*)\)", r"\1", example.split("  #")[0].strip())
    words = shlex.split(example, comments=True)[1:]
    words = [SLUG if word == "SLUG" else word for word in words]
    if "/" not in words:
        return [tuple(words)]
    parts, current = [], []
    for word in words:
        if word == "/":
            parts.append(current)
            current = []
        else:
            current.append(word)
    parts.append(current)
    group = parts[0][:-1]
    return [tuple(parts[0]), *(tuple(group + part) for part in parts[1:])]


def help_texts(command: click.Command = cli) -> list[str]:
    texts = [command.help or ""]
    if isinstance(command, click.Group):
        for child in command.commands.values():
            texts.extend(help_texts(child))
    return texts


def documented() -> list[tuple[str, ...]]:
    readme = (ROOT / "README.md").read_text()
    lines = examples_in(readme) + [e for text in help_texts() for e in examples_in(text)]
    unique: dict[tuple[str, ...], None] = {}
    for line in lines:
        for args in commands_of(line):
            unique.setdefault(args)
    return list(unique)


EXAMPLES = documented()


def parse_only(args: tuple[str, ...]) -> str | None:
    for prefix, reason in PARSE_ONLY.items():
        if args[: len(prefix)] == prefix:
            return reason
    if args[0] == "work" and not {"--until-empty", "--max-seconds", "--max-jobs"} & set(args):
        return "runs until stopped"
    return None


def creates(args: tuple[str, ...]) -> bool:
    return any(args[: len(prefix)] == prefix for prefix in CREATING)


def resolve(args: tuple[str, ...]) -> click.Context:
    """Parse as `photoctl ARGS` would, down to the command, without running anything."""
    context = cli.make_context("photoctl", list(args))
    command: click.Command = cli
    while isinstance(command, click.Group):
        # What click's Group.invoke hands on (click < 9 keeps the command's name apart).
        rest = [*getattr(context, "_protected_args", []), *context.args]
        name, found, rest = command.resolve_command(context, rest)
        assert found is not None and name is not None
        command = found
        context = command.make_context(name, rest, parent=context)
    return context


def test_the_readme_and_the_help_texts_have_the_examples_this_test_expects() -> None:
    assert ("events", "purge", "--expired", "-q") in EXAMPLES
    assert ("users", "add", "alice", "--selfie", "alice.jpg") in EXAMPLES
    assert ("events", "show", SLUG) in EXAMPLES and ("events", "close", SLUG) in EXAMPLES
    assert len(EXAMPLES) > 30
    assert all(args and not args[0].startswith("#") for args in EXAMPLES)


def test_the_parse_check_fails_on_an_unknown_option_or_argument() -> None:
    with pytest.raises(click.NoSuchOption):
        resolve(("events", "purge", "--expired", "--quietly"))
    with pytest.raises(click.UsageError):
        resolve(("events", "list", "show", SLUG))  # the shorthand taken literally
    assert resolve(("events", "purge", "--expired", "-q")).command.name == "purge"


def env_for_examples(tmp_path: Path) -> dict[str, str]:
    env = photoctl_env(
        tmp_path,
        PHOTOCTL_SERVE_PUBLIC_URL="https://photos.example.org",  # events qr needs it
        PHOTOCTL_INGEST_SETTLE_SECONDS="0",  # the photos were copied a moment ago
    )
    del env["PHOTOCTL_DATA_DIR"]  # the default, ./photoctl-data, as the examples assume
    return env


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with the files the examples name, after the creating examples ran."""
    where = tmp_path_factory.mktemp("examples") / "cwd"
    for folder, photo in (
        ("photos", "obama_2.jpg"),
        ("photos", "obama_3.jpg"),
        ("finish-line", "obama_2.jpg"),
        ("event-2026", "obama_3.jpg"),
        ("event-photos", "obama_2.jpg"),
    ):
        (where / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(DATA / photo, where / folder / photo)
    shutil.copy(DATA / "obama_1.jpg", where / "alice.jpg")
    shutil.copy(DATA / "biden.jpg", where / "bob.jpg")
    env = env_for_examples(where.parent)
    steps = [args for args in EXAMPLES if creates(args) and not parse_only(args)]
    assert ("users", "enroll", "bob", "--selfie", "bob.jpg") in steps
    for args in steps:
        if args[:2] == ("users", "enroll"):  # enrolls an existing user: make bob first
            setup = run_photoctl(["users", "add", args[2]], env, cwd=where)
            assert setup.returncode == 0, setup.stderr
        result = run_photoctl(list(args), env, cwd=where)
        assert result.returncode == 0, f"photoctl {shlex.join(args)}: {result.stderr}"
    setup = run_photoctl(["ingest", "./photos"], env, cwd=where)
    assert setup.returncode == 0, setup.stderr
    return where


@pytest.mark.parametrize("args", EXAMPLES, ids=shlex.join)
def test_every_documented_example_parses(args, prepared, monkeypatch) -> None:
    monkeypatch.chdir(prepared)  # the files the examples name exist there
    try:
        resolve(args)
    except click.ClickException as error:
        pytest.fail(f"photoctl {shlex.join(args)}: {error.format_message()}")


RUNNABLE = [args for args in EXAMPLES if not parse_only(args) and not creates(args)]


@pytest.mark.parametrize("args", RUNNABLE, ids=shlex.join)
def test_every_documented_example_that_can_run_here_runs(args, prepared, tmp_path) -> None:
    where = tmp_path / "cwd"
    shutil.copytree(prepared, where)
    # The copy's files moved with it: record their new place, as `init --move-storage` would.
    with sqlite3.connect(where / "photoctl-data" / "photoctl.db") as conn:
        conn.execute(
            "UPDATE photoctl_meta SET value = ? WHERE key = ?",
            (str(where / "photoctl-data" / "storage"), storage_identity.META_KEY),
        )
    result = run_photoctl(list(args), env_for_examples(tmp_path), cwd=where)
    assert result.returncode == 0, (
        f"photoctl {shlex.join(args)} exited {result.returncode}: {result.stderr}\n"
        "(an example that cannot run in a test belongs in PARSE_ONLY, with the reason)"
    )
