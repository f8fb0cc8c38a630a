"""What every benchmark in scripts/ needs: a clean environment, the CLI, how busy the machine is.

The benchmarks run photoctl as real subprocesses on a small shared machine; each used to carry
its own copy of these helpers, and the copies had started to differ (which variables are
scrubbed, how load is read). Imported as ``_bench`` (scripts/ is on sys.path when a script runs).
"""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # photoctl from a checkout without an installed package

from sqlalchemy import func, select  # noqa: E402

from photoctl import db  # noqa: E402
from photoctl.config import HISTORIC_ENV_NAMES, Settings  # noqa: E402
from photoctl.models import Face, Job, Match  # noqa: E402

_jobs = Job.__table__

DATA = REPO / "tests" / "data"  # the face photos (tests/data/ORIGIN.md)
BUSY_CORES = 0.25  # a run during which other processes used more is run again (--busy-retries)


def cli_command() -> list[str]:
    """The photoctl command of this interpreter's environment."""
    script = Path(sys.executable).with_name("photoctl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "photoctl"]


def clean_env(extra: Mapping[str, str] | None = None, *, drop_aws: bool = False) -> dict[str, str]:
    """This environment without anything that would point photoctl elsewhere, plus extra.

    Drops PHOTOCTL_* and the historic names (config.HISTORIC_ENV_NAMES); with ``drop_aws``
    also AWS_*, so a run against the fake endpoint cannot reach a real account.
    """
    prefixes = ("PHOTOCTL_", "AWS_") if drop_aws else ("PHOTOCTL_",)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(prefixes) and key not in HISTORIC_ENV_NAMES
    }
    env.update(extra or {})
    return env


def load_average(*, all_three: bool = False) -> str:
    """The 1-minute load average (or 1, 5, 15): other work on this 2-core machine skews every
    figure."""
    try:
        loads = os.getloadavg()
    except OSError:
        return "?"
    return " ".join(f"{load:.2f}" for load in loads) if all_three else f"{loads[0]:.2f}"


def machine_cpu_seconds() -> float | None:
    """Busy CPU seconds of the whole machine since boot (Linux /proc/stat), None elsewhere."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(value) for value in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a running process (Linux), 0 if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def own_cpu_seconds(pids: Sequence[int] = ()) -> float:
    """CPU of this process, of its waited-for children, and of the running processes pids."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (
        me.ru_utime
        + me.ru_stime
        + children.ru_utime
        + children.ru_stime
        + sum(process_cpu_seconds(pid) for pid in pids)
    )


def descendants(pid: int) -> list[int]:
    """A process and every process below it (Linux /proc), the process first."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pending.extend(int(child) for child in children)
    return found


def group_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (Linux /proc), 0 elsewhere."""
    return sum(process_cpu_seconds(current) for current in descendants(pid))


def group_run_delay_seconds(pid: int) -> float:
    """Seconds the threads of a process and its descendants spent runnable but waiting for a
    CPU (/proc/PID/task/TID/schedstat; threads that have exited are not counted)."""
    total = 0
    for current in descendants(pid):
        try:
            threads = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for thread in threads:
            try:
                total += int(
                    Path(f"/proc/{current}/task/{thread}/schedstat").read_text().split()[1]
                )
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


def priorities(pid: int) -> str:
    """'nice N in autogroup-K nice M' of a process and its descendants (Linux), for reports."""
    seen = []
    for current in descendants(pid):
        try:
            nice = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()[16]
            autogroup = Path(f"/proc/{current}/autogroup").read_text().strip().lstrip("/")
        except (OSError, IndexError):
            continue
        entry = f"nice {nice} in {autogroup}"
        if entry not in seen:
            seen.append(entry)
    return "; ".join(seen) or "?"


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / tick, steal / tick


class LoadMeter:
    """CPU used during a measurement: by this benchmark (and its children), and by the rest
    of the machine (other users' tests...), in cores on average."""

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self.pids = list(pids)
        self.wall = self.own = self.others = 0.0

    def __enter__(self) -> LoadMeter:
        self._start = (time.perf_counter(), own_cpu_seconds(self.pids), machine_cpu_seconds())
        return self

    def __exit__(self, *exc: object) -> None:
        wall0, own0, machine0 = self._start
        machine1 = machine_cpu_seconds()
        self.wall = time.perf_counter() - wall0
        self.own = own_cpu_seconds(self.pids) - own0
        if machine0 is not None and machine1 is not None:
            self.others = max(0.0, (machine1 - machine0) - self.own)

    def describe(self) -> str:
        wall = max(self.wall, 1e-9)
        return (
            f"CPU during it: this benchmark {self.own:.1f} s ({self.own / wall:.2f} cores), "
            f"other processes {self.others:.1f} s ({self.others / wall:.2f} cores)"
        )


# -- photoctl as a subprocess, and what its job table says afterwards -----------------------


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'photoctl.db').resolve()}"


def bench_settings(data_dir: Path) -> Settings:
    """Defaults only (no config.ini, no environment), SQLite in data_dir."""
    return Settings(data_dir=data_dir).replace("database", url=sqlite_url(data_dir))


def run_photoctl(
    data_dir: Path, args: Sequence[str], env: dict[str, str], *, engine: str | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run `photoctl -q --data-dir D --database-url U [--engine E] ARGS`: (wall s, result)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        *cli_command(),
        "-q",
        "--data-dir",
        str(data_dir),
        "--database-url",
        sqlite_url(data_dir),
        *(["--engine", engine] if engine else []),
        *args,
    ]
    started = time.perf_counter()
    done = run_counting_descendants(
        command, cwd=data_dir.parent, env=env, capture_output=True, text=True, check=False
    )
    return time.perf_counter() - started, done


def run_counting_descendants(command: Sequence[str], **options: Any) -> subprocess.CompletedProcess:
    """subprocess.run, then wait for what the command left running, so that this process's
    RUSAGE_CHILDREN holds the CPU of every process the command started.

    `photoctl work` forks its workers from a forkserver, its own child that it does not wait
    for (the server exits by itself once the supervisor is gone). Without this, the workers' CPU,
    which the server waits for, would reach init instead of this benchmark. As a child subreaper
    (Linux prctl), this process adopts such orphans, and waits for the ones the command left.
    """
    _become_subreaper()
    before = _child_pids(os.getpid())
    done = subprocess.run(command, **options)
    for pid in sorted(_child_pids(os.getpid()) - before):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # waited for elsewhere meanwhile
    return done


_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: orphans' CPU goes uncounted, as before


def _child_pids(parent: int) -> set[int]:
    """Live children of ``parent``, from /proc (empty where there is none)."""
    found = set()
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == parent:  # zombies too: waiting for them counts their CPU
                found.add(int(entry))
    return found


def require(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode != 0:
        sys.exit(f"{what} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")


def settle_tree(root: Path, age_seconds: float = 120) -> None:
    """Backdate every file, so ingest takes them as settled (not still being copied)."""
    past = time.time() - age_seconds
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (past, past))


def wait_for_quiet(limit_seconds: float, what: str) -> None:
    """Wait (up to limit_seconds) until other processes use under 0.2 cores for 3 s running."""
    if limit_seconds <= 0 or machine_cpu_seconds() is None:
        return
    deadline = time.monotonic() + limit_seconds
    quiet, waited, busy = 0, False, 0.0
    while time.monotonic() < deadline:
        with LoadMeter() as meter:
            time.sleep(1.0)
        busy = meter.others / meter.wall
        quiet = quiet + 1 if busy < 0.2 else 0
        if quiet >= 3:
            if waited:
                print(f"  (machine quiet again before {what})", flush=True)
            return
        if not waited and busy >= 0.2:
            print(
                f"  (other processes use {busy:.2f} cores: waiting up to {limit_seconds:.0f} s "
                f"for a quiet machine before {what})",
                flush=True,
            )
            waited = True
    print(f"  (machine still busy before {what}: {busy:.2f} cores used by others)", flush=True)


@dataclass(frozen=True)
class JobFigures:
    """What the job table says about one drained queue."""

    done: int
    failed: int
    retried: int  # jobs that needed more than one attempt
    span_seconds: float  # first started_at to last finished_at
    job_seconds: list[float]  # finished_at - started_at of each done job
    first_job_seconds: list[float]  # the first job of each worker (includes its warm-up)
    later_job_seconds: list[float]  # every other done job
    errors: list[str]
    faces: int
    matches: int

    def rate(self) -> float:
        return self.done / self.span_seconds if self.span_seconds > 0 else float("nan")


def job_figures(data_dir: Path) -> JobFigures:
    settings = bench_settings(data_dir)
    engine = db.make_engine(settings)
    try:
        with db.read(engine) as conn:
            rows = conn.execute(
                select(
                    _jobs.c.state,
                    _jobs.c.attempts,
                    _jobs.c.started_at,
                    _jobs.c.finished_at,
                    _jobs.c.worker_id,
                    _jobs.c.last_error,
                )
            ).all()
            faces = conn.execute(select(func.count()).select_from(Face)).scalar_one()
            matches = conn.execute(select(func.count()).select_from(Match)).scalar_one()
    finally:
        engine.dispose()
    done = [r for r in rows if r.state == "done"]
    finished = [r for r in rows if r.finished_at is not None and r.started_at is not None]
    span = (
        max(r.finished_at for r in finished) - min(r.started_at for r in finished)
        if finished
        else 0.0
    )
    first_of: dict[str, float] = {}
    later: list[float] = []
    for r in sorted(done, key=lambda r: r.started_at):
        if (r.worker_id or "?") in first_of:
            later.append(r.finished_at - r.started_at)
        else:
            first_of[r.worker_id or "?"] = r.finished_at - r.started_at
    return JobFigures(
        done=len(done),
        failed=sum(1 for r in rows if r.state == "failed"),
        retried=sum(1 for r in rows if r.attempts > 1),
        span_seconds=span,
        job_seconds=[r.finished_at - r.started_at for r in done],
        first_job_seconds=list(first_of.values()),
        later_job_seconds=later,
        errors=sorted({r.last_error for r in rows if r.last_error})[:5],
        faces=faces,
        matches=matches,
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"
