"""`events purge SLUG` from a script, cron or a pipe asks nobody: it is refused without --yes
(issue 20, item 25). `events purge --expired`, the daily cron line, needs no --yes."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

from tests.support.cli import photoctl_env, run_photoctl


def shown(env, slug: str) -> dict:
    return json.loads(run_photoctl(["events", "show", slug, "--json"], env).stdout)


def test_purging_an_event_by_name_without_a_terminal_needs_yes(tmp_path, db_url) -> None:
    env = photoctl_env(tmp_path, db_url)
    made = run_photoctl(["events", "create", "run", "--title", "Run"], env)
    assert made.returncode == 0, made.stderr

    refused = run_photoctl(["events", "purge", "run"], env)  # stdin is /dev/null
    assert refused.returncode == 2
    assert "add --yes" in refused.stderr and "'run'" in refused.stderr
    assert shown(env, "run")["purged_at"] is None, "nothing purged"

    dry = run_photoctl(["events", "purge", "run", "--dry-run"], env)
    assert (dry.returncode, dry.stdout.strip()) == (0, "run"), "a dry run needs no --yes"

    done = run_photoctl(["events", "purge", "run", "--yes"], env)
    assert done.returncode == 0, done.stderr
    assert shown(env, "run")["purged_at"] is not None


def test_the_daily_expired_purge_needs_no_yes(tmp_path, db_url) -> None:
    env = photoctl_env(tmp_path, db_url)
    old = ["events", "create", "old", "--title", "Old", "--date", "2020-01-01"]
    assert run_photoctl([*old, "--retention-days", "1"], env).returncode == 0
    purged = run_photoctl(["events", "purge", "--expired"], env)
    assert purged.returncode == 0, purged.stderr
    assert "purged old" in purged.stderr
    assert shown(env, "old")["purged_at"] is not None


def answer_on_a_terminal(args: list[str], env: dict[str, str], answer: str) -> tuple[int, str]:
    """Run with stdin and stderr on a pseudo-terminal, type ``answer`` once asked."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "photoctl", *args],
        env=env,
        stdin=slave,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    screen, answered = b"", False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the command closed the terminal
                break
            screen += chunk
            if not answered and b"[y/N]" in screen:
                os.write(master, answer.encode() + b"\n")
                answered = True
        elif process.poll() is not None:
            break
    os.close(master)
    return process.wait(10), screen.decode(errors="replace")


def test_on_a_terminal_purging_by_name_asks_first(tmp_path, db_url) -> None:
    env = photoctl_env(tmp_path, db_url)
    assert run_photoctl(["events", "create", "run", "--title", "Run"], env).returncode == 0
    code, screen = answer_on_a_terminal(["events", "purge", "run"], env, "n")
    assert code == 1 and "Delete every face, selfie and match of event 'run'?" in screen
    assert "run not purged" in screen
    assert shown(env, "run")["purged_at"] is None
    code, screen = answer_on_a_terminal(["events", "purge", "run"], env, "y")
    assert code == 0, screen
    assert shown(env, "run")["purged_at"] is not None
