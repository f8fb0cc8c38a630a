"""queue.worker_nice: `photoctl work`'s worker processes run below serve's CPU priority.

Workers (dlib, CPU-bound) and serve share the machine's cores; a worker lowers its own priority
at start (processes.lower_priority), and, when `photoctl work` leads its session as a service
or a terminal would, its session's autogroup too, since on Linux with autogroups a nice value
only counts inside its session. And where the workers come from: one forkserver per `work`
(worker_processes.py). Real processes, read from /proc: the settings are about them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import photoctl_env, run_photoctl
from tests.support.worker import Background, start_photoctl, wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _worker_pids(database: Path) -> list[int]:
    if not database.exists():
        return []
    try:
        with sqlite3.connect(database, timeout=5) as conn:
            rows = conn.execute("SELECT pid FROM workers WHERE stopped_at IS NULL").fetchall()
    except sqlite3.OperationalError:  # the schema is still being made
        return []
    return [pid for (pid,) in rows]


@pytest.mark.parametrize("setting", [7, 0])
def test_workers_run_at_the_configured_niceness_below_their_supervisor(
    tmp_path: Path, setting: int
) -> None:
    database = tmp_path / "data" / "photoctl.db"
    env = photoctl_env(tmp_path, f"sqlite:///{database}", PHOTOCTL_QUEUE_WORKER_NICE=str(setting))
    made = run_photoctl(["init"], env)
    assert made.returncode == 0, made.stderr
    work = start_photoctl(["work", "-n", "1"], env, tmp_path / "logs", "work")
    try:
        [pid] = wait_for(lambda: _worker_pids(database), 60, "a registered worker")
        base = os.nice(0)  # the supervisor starts at the test's own niceness
        assert _nice(work.process.pid) == base
        assert _nice(pid) == min(19, base + setting)
        autogroup = Path(f"/proc/{pid}/autogroup")
        if setting and autogroup.exists():
            # `photoctl work` leads its own session here: the session's autogroup is lowered.
            assert int(autogroup.read_text().split()[-1]) >= setting
        os.killpg(work.process.pid, signal.SIGTERM)
        assert work.wait(60) == 0, work.stderr()[-3000:]
    finally:
        work.kill()


def _status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in /proc/{pid}/status")


@contextlib.contextmanager
def _working(tmp_path: Path, workers: int) -> Iterator[tuple[Path, Background, list[int]]]:
    """`photoctl work -n WORKERS --engine none` in a session of its own on a new SQLite
    database: (database, the running command, its registered workers' pids); killed after."""
    database = tmp_path / "data" / "photoctl.db"
    env = photoctl_env(tmp_path, f"sqlite:///{database}")
    made = run_photoctl(["init"], env)
    assert made.returncode == 0, made.stderr
    args = ["work", "-n", str(workers), "--engine", "none"]
    work = start_photoctl(args, env, tmp_path / "logs", "work")
    try:
        pids = wait_for(
            lambda: (found := _worker_pids(database)) and len(found) == workers and found,
            60,
            f"{workers} registered workers",
        )
        yield database, work, pids
    finally:
        work.kill()


def test_workers_are_forked_from_one_server_that_a_group_stop_signal_cannot_kill(
    tmp_path: Path,
) -> None:
    """`work -n 3`'s workers come from one forkserver, which imported them once.

    It is the supervisor's child and keeps SIGINT and SIGTERM blocked: a SIGTERM to the whole
    process group (Ctrl-C, a service manager's stop) stops the workers cleanly, none reported
    dead, instead of killing the server that reports their exit codes.
    """
    with _working(tmp_path, 3) as (_, work, pids):
        [server] = {int(_status_field(pid, "PPid")) for pid in pids}
        assert server != work.process.pid
        assert int(_status_field(server, "PPid")) == work.process.pid
        blocked = int(_status_field(server, "SigBlk"), 16)
        for stop in (signal.SIGINT, signal.SIGTERM):
            assert blocked & (1 << (stop - 1)), f"{stop.name} not blocked in the forkserver"
        os.killpg(work.process.pid, signal.SIGTERM)
        assert work.wait(60) == 0, work.stderr()[-3000:]
        assert "died" not in work.stderr(), work.stderr()[-3000:]


def test_workers_stop_by_themselves_when_their_supervisor_is_killed_with_sigkill(
    tmp_path: Path,
) -> None:
    """A worker's parent is the forkserver, which outlives the supervisor while workers run: a
    supervisor killed with -9 must still leave no worker running on (each records its stop)."""
    with _working(tmp_path, 2) as (database, work, pids):
        os.kill(work.process.pid, signal.SIGKILL)  # the supervisor alone, not its group
        wait_for(lambda: not _worker_pids(database), 30, "both workers to record their stop")
        for pid in pids:
            wait_for(lambda pid=pid: not _running(pid), 10, f"worker {pid} to exit")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_workers_of_a_killed_forkserver_stop_before_their_replacements_start(
    tmp_path: Path,
) -> None:
    """kill -9 of the forkserver: multiprocessing reports each of its live workers as exit code
    255. They stop by themselves (their parent is gone) and only then are replaced, so no more
    than `-n` workers run and none of their jobs is handed out while they still run it."""
    with _working(tmp_path, 2) as (database, work, old):
        [server] = {int(_status_field(pid, "PPid")) for pid in old}
        os.kill(server, signal.SIGKILL)
        new = wait_for(
            lambda: (
                (found := _worker_pids(database))
                and len(found) == 2
                and not set(found) & set(old)
                and found
            ),
            60,
            "two replacement workers, and neither of the old ones, registered",
        )
        assert len(new) == 2
        assert not [pid for pid in old if _running(pid)], "a worker of the dead server still runs"
        os.killpg(work.process.pid, signal.SIGTERM)
        assert work.wait(60) == 0, work.stderr()[-3000:]
