"""A data dir photoctl may not write is named, with the permission, and is exit 2 (issue 20,
item 20): it was "unable to open database file. Check ... that the server is running", exit 1.

Root ignores permissions, so the "permission" case runs the CLI as the unprivileged user
`nobody` (setpriv) when the tests run as root; the "read-only mount" case bind-mounts the data
dir read-only (root only). SQLite only: with PostgreSQL the database is not in the data dir.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import photoctl_env, run_photoctl

IS_ROOT = os.geteuid() == 0
# Who runs the CLI in these tests, as the message names them.
OPERATOR = (
    f"nobody (uid {pwd.getpwnam('nobody').pw_uid})"
    if IS_ROOT
    else f"{pwd.getpwuid(os.geteuid()).pw_name} (uid {os.geteuid()})"
)


def as_operator(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """`photoctl ARGS` as a user that file permissions apply to (nobody, when we are root)."""
    # It may read and search every directory (CAP_DAC_READ_SEARCH, no write): the checkout and
    # its venv may sit in a private directory (mktemp -d, 0700), as CI's clone does.
    drop = [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    ]
    drop = drop if IS_ROOT else []
    return subprocess.run(
        [*drop, sys.executable, "-m", "photoctl", *args],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory nobody can reach (pytest's tmp_path is private to root)."""
    if IS_ROOT and not shutil.which("setpriv"):
        pytest.skip("needs setpriv to run as an unprivileged user")
    where = Path(tempfile.mkdtemp(prefix="photoctl-ro-"))
    where.chmod(0o755)
    try:
        yield where
    finally:
        for path in (where, *where.rglob("*")):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(where)


def test_a_data_dir_the_user_may_not_write_is_named_with_its_permission(shared_dir) -> None:
    env = photoctl_env(shared_dir)
    env["HOME"] = str(shared_dir)
    assert run_photoctl(["init"], env).returncode == 0  # made by root, as an installer would
    data = shared_dir / "data"
    for path in data.iterdir():
        path.chmod(0o644)
    data.chmod(0o555)

    for command in (
        ["stats"],
        ["ingest", str(shared_dir)],
        ["events", "create", "x", "--title", "X"],
    ):
        refused = as_operator(command, env)
        assert refused.returncode == 2, refused.stderr
        message = refused.stderr.strip()
        assert f"{data} is not writable by user {OPERATOR}: it is dr-xr-xr-x" in message
        assert "chown or chmod" in message
        assert "server is running" not in message and "Traceback" not in message
    # Reading needs no write: SQLite reads a WAL database read-only when it must.
    assert as_operator(["events", "list"], env).returncode == 0

    env["PHOTOCTL_DATA_DIR"] = str(data / "new")
    refused = as_operator(["init"], env)
    assert refused.returncode == 2
    assert f"cannot create {data / 'new'}: {data} is not writable by user" in refused.stderr


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(the real data dir, the same directory mounted read-only)."""
    if not IS_ROOT:
        pytest.skip("mounting needs root")
    source, mounted = tmp_path / "data", tmp_path / "read-only"
    source.mkdir()
    mounted.mkdir()
    if subprocess.run(["mount", "--bind", str(source), str(mounted)]).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        remount = ["mount", "-o", "remount,ro,bind", str(mounted)]
        if subprocess.run(remount).returncode != 0:
            pytest.skip("cannot remount read-only here")
        yield source, mounted
    finally:
        subprocess.run(["umount", str(mounted)], check=True)


def test_a_data_dir_on_a_read_only_mount_is_named(read_only_mount, tmp_path) -> None:
    source, mounted = read_only_mount
    env = photoctl_env(tmp_path)
    env["PHOTOCTL_DATA_DIR"] = str(source)
    assert run_photoctl(["init"], env).returncode == 0
    env["PHOTOCTL_DATA_DIR"] = str(mounted)

    for command in (
        ["stats"],
        ["ingest", str(tmp_path)],
        ["events", "create", "x", "--title", "X"],
    ):
        refused = run_photoctl(command, env)
        assert refused.returncode == 2, refused.stderr
        assert f"{mounted} is on a read-only file system" in refused.stderr
        assert "mount it read-write" in refused.stderr

    doctor = run_photoctl(["doctor"], env)
    assert doctor.returncode == 1
    assert f"[FAIL] database: the database's directory {mounted} is on a read-only" in (
        doctor.stdout
    )
    assert "server is running" not in doctor.stdout

    env["PHOTOCTL_DATA_DIR"] = str(mounted / "new")
    made = run_photoctl(["init"], env)
    assert made.returncode == 2
    assert f"{mounted} is on a read-only file system" in made.stderr
