"""What the operating system knows about worker processes: is one still running, and its priority.

Apart from the supervisor and the worker loop because it speaks to the kernel (/proc, signals,
nice values, autogroups), not to the queue, and both of them need it: the supervisor asks
whether a registered worker's process is gone, a worker lowers its own priority.
"""

from __future__ import annotations

import os
from pathlib import Path

# A registered worker whose process started later than this after its registration is another
# process that got the same pid.
_PID_START_SLACK_SECONDS = 2.0


def is_running(pid: int, registered_at: float) -> bool:
    """Is the process that registered as a worker at ``registered_at`` with this pid alive?

    A pid alone is not enough after a restart: the kernel reuses pids, and a new process (even
    this supervisor) may hold a dead worker's. A worker registers after its process started, so
    a process that started after the registration is another one. Where /proc cannot tell, the
    process is taken as running: its lease will still bring its jobs back.
    """
    if pid == os.getpid():
        return False  # this supervisor is not a worker; the registered one is gone
    try:
        stat_text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return _signal_zero(pid)
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    fields = stat_text[stat_text.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return False  # exited, not yet reaped
    started_at = _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return started_at <= registered_at + _PID_START_SLACK_SECONDS


def is_photoctl(pid: int) -> bool:
    """Whether the process runs photoctl: its command line names it. A worker's does, whether
    it came from the CLI or from the forkserver, whose command line lists the photoctl modules
    it preloads (worker_processes.py)."""
    try:
        return b"photoctl" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _signal_zero(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _boot_time() -> float:
    with open("/proc/stat") as stat_file:
        for line in stat_file:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def lower_priority(nice: int, supervisor_pid: int) -> None:
    """Run this worker process `nice` steps below serve.

    On Linux with autogroups (kernel.sched_autogroup_enabled = 1, the default of most
    distributions) the CPU is shared fairly between sessions first, and a process's nice value
    only counts against processes of its own session: a `photoctl work` started by setsid, as a
    daemon or from another terminal competes with serve at full weight whatever its nice value
    (measured with scripts/bench_serve.py). When the supervisor leads its own session, that
    session's autogroup holds nothing but this `photoctl work`, so it is lowered too.
    """
    try:
        os.nice(nice)
    except OSError:
        return  # not permitted here; run at normal priority
    try:
        if os.getsid(0) != supervisor_pid:
            return  # the session holds a shell or other programs too: leave it alone
        with open("/proc/self/autogroup") as current:  # "/autogroup-123 nice 0"
            if int(current.read().split()[-1]) >= nice:
                return
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(nice))
    except (OSError, ValueError, IndexError):
        pass  # no autogroups (disabled, a cgroup, not Linux): os.nice is what there is
