"""queue.worker_nice: `photoctl work`'s worker processes run below serve's CPU priority.

Workers (dlib, CPU-bound) and serve share the machine's cores; a worker lowers its own priority
at start (processes.lower_priority), and, when `photoctl work` leads its session as a service
or a terminal would, its session's autogroup too, since on Linux with autogroups a nice value
only counts inside its session. Real processes, read from /proc: the setting is about them.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.support.cli import photoctl_env, run_photoctl
from tests.support.worker import start_photoctl, wait_for

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
