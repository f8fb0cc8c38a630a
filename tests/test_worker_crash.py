"""Crashes and stops lose no photo: a worker SIGKILLed mid-job, a supervisor stopped with SIGTERM,
two supervisors ("machines") sharing one PostgreSQL queue.

Everything runs as real `photoctl` subprocesses writing to one shared log file
(PHOTOCTL_LOG_FILE) as JSON lines (PHOTOCTL_LOG_FORMAT=json). A worker logs a line with
``event: job_completed`` once per job, after the transaction that marks the job done succeeded
(completion is fenced by the worker id), so counting those lines across every process shows
that no job was lost and none was recorded twice. The tests read the lines' fields (event,
worker, job, how, requeued), never their human text, which is free to change. The photos are
12 MP JPEGs that take ~0.1-0.3 s each to process, long enough to kill a worker in the middle of
one.

Signals: each supervisor gets its own session (``start_new_session``) so that teardown can kill
whatever is left of it by process group, and so that a signal sent to the supervisor reaches the
supervisor alone, as `kill PID` from an operator would. Stopping the children is then the
supervisor's job, which is what these tests check.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testkit.photos import write_tree
from tests.support.cli import ForkedCommand, photoctl_env, run_photoctl, start_photoctl
from tests.support.worker import wait_for

# One xdist process for the module: its PHOTO_COUNT big photos are made once (scripts/test.sh).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("worker_crash")]

PHOTO_COUNT = 60
BATCH = 30  # the tree is two folders of BATCH photos: set000 and set001
PHOTO_SIZE = (4000, 3000)  # ~0.1-0.3 s of one core each with --engine none
SHUTDOWN_GRACE_SECONDS = 10
# Replacing a worker that lived less than 5 s waits 5 s (supervisor._CRASH_BACKOFF_SECONDS).
RESPAWN_TIMEOUT_SECONDS = 30


# -- helpers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    position: int
    pid: int
    fields: dict[str, Any]  # the JSON object of the line

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]


class SharedLog:
    """The log file every photoctl process appends to, read incrementally as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[LogEntry] = []
        self._offset = 0
        self._partial = b""

    def refresh(self) -> list[LogEntry]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return self.entries
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()  # a line still being written
        for raw in lines:
            fields = json.loads(raw)  # a malformed line fails the test: the file must be JSON
            self.entries.append(LogEntry(len(self.entries), int(fields["pid"]), fields))
        return self.entries

    def events(self, event: str) -> list[LogEntry]:
        return [entry for entry in self.refresh() if entry.fields.get("event") == event]

    def completions(self) -> Counter[str]:
        return Counter(entry["job"] for entry in self.events("job_completed"))


def _live_processes() -> Iterator[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process that is not a zombie."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        state, parent, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if state != "Z":
            yield int(entry), int(parent), int(group)


def descendant_pids(ancestor_pid: int) -> set[int]:
    """Live descendants of a process (this kernel has no /proc/PID/task/TID/children).

    A supervisor's workers are its grandchildren: it forks them through its forkserver.
    """
    children: dict[int, list[int]] = {}
    for pid, parent, _ in _live_processes():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = [ancestor_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def group_pids(group: int) -> set[int]:
    """Live processes of a process group, including children orphaned by their parent's exit."""
    return {pid for pid, _, member_of in _live_processes() if member_of == group}


@dataclass
class Started:
    name: str
    process: ForkedCommand
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text("utf-8", "replace")

    def tail(self, characters: int = 3000) -> str:
        return f"--- {self.name} stderr (tail) ---\n{self.stderr()[-characters:]}"


@dataclass
class Processes:
    """Starts photoctl subprocesses; whatever is still running at teardown is killed."""

    directory: Path
    env: dict[str, str]
    started: list[Started] = field(default_factory=list)

    def start(self, name: str, *args: str) -> Started:
        stdout_path = self.directory / f"{name}.stdout"
        stderr_path = self.directory / f"{name}.stderr"
        process = start_photoctl(list(args), self.env, stdout_path, stderr_path, new_session=True)
        started = Started(name, process, stdout_path, stderr_path)
        self.started.append(started)
        return started

    def kill_leftovers(self) -> None:
        for started in self.started:
            try:
                os.killpg(started.pid, signal.SIGKILL)  # its own group: supervisor + children
            except ProcessLookupError:
                pass
            try:
                started.process.wait(10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture(scope="module")
def big_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree of PHOTO_COUNT distinct settled 12 MP JPEGs (each test ingests it afresh)."""
    root = tmp_path_factory.mktemp("big-photos")
    write_tree(root, PHOTO_COUNT, size=PHOTO_SIZE, per_folder=BATCH)
    return root


def crash_env(tmp_path: Path, db_url: str | None = None) -> dict[str, str]:
    return photoctl_env(
        tmp_path,
        db_url,
        PHOTOCTL_LOG_FILE=str(tmp_path / "logs" / "photoctl.log"),
        PHOTOCTL_LOG_FORMAT="json",
        # Never rotate during a test: every line stays in the one file we read.
        PHOTOCTL_LOG_MAX_BYTES=str(1 << 30),
        PHOTOCTL_QUEUE_LEASE_SECONDS="3",
        PHOTOCTL_QUEUE_SHUTDOWN_GRACE=str(SHUTDOWN_GRACE_SECONDS),
        PHOTOCTL_QUEUE_RETRY_BASE_SECONDS="0.2",
        PHOTOCTL_QUEUE_POLL_SECONDS="0.2",
        PHOTOCTL_INGEST_SETTLE_SECONDS="0",
        # Workers at the test's own priority: on a machine busy with other work, niced workers
        # would crawl and the test would measure the load instead of the queue.
        PHOTOCTL_QUEUE_WORKER_NICE="0",
    )


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Processes]]:
    made: list[Processes] = []

    def make(env: dict[str, str]) -> Processes:
        directory = tmp_path / "output"
        directory.mkdir(exist_ok=True)
        made.append(Processes(directory, env))
        return made[-1]

    yield make
    for group in made:
        group.kill_leftovers()


def ingest(env: dict[str, str], tree: Path, count: int = PHOTO_COUNT) -> None:
    result = run_photoctl(["ingest", "--json", str(tree)], env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert (report["new"], report["errors"]) == (count, 0), report


def list_jobs(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    result = run_photoctl(["jobs", "list", "--json", "--limit", "1000"], env, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return {job["id"]: job for job in jobs}


def summary(started: Started) -> dict[str, int]:
    """The report `work --json` printed on stdout: done, failed, restarted."""
    lines = started.stdout_path.read_text("utf-8", "replace").splitlines()
    assert lines, f"no `work --json` report on stdout\n{started.tail()}"
    report = json.loads(lines[-1])
    return {key: report[key] for key in ("done", "failed", "restarted")}


def wait_exit(started: Started, timeout: float) -> tuple[int, float]:
    began = time.monotonic()
    try:
        code = started.process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"{started.name} still running after {timeout:.0f} s\n{started.tail()}"
        ) from None
    return code, time.monotonic() - began


@dataclass(frozen=True)
class Kill:
    pid: int
    worker: str  # its name, e.g. PhotoWorker-1
    job: str  # the job the worker had announced (job_started) when it was killed
    requeued: int  # how many jobs its supervisor reported requeueing


def kill_a_busy_worker(log: SharedLog, supervisor: Started, attempts: int = 3) -> list[Kill]:
    """SIGKILL a worker of ``supervisor`` in the middle of a job; wait until it is buried.

    The victim is the child that most recently logged job_started without completing it,
    killed at once. Should a kill still miss (the job finished first, on a starved test
    process), another busy child is tried, until one kill really interrupts a job. Returns
    every kill made, the last one being that one.
    """
    kills: list[Kill] = []

    def busy_child() -> LogEntry | None:
        children = descendant_pids(supervisor.pid)
        latest: dict[int, LogEntry] = {}  # pid -> its job_started line
        for entry in log.refresh():
            if entry.pid not in children:
                continue
            event = entry.fields.get("event")
            if event == "job_started":
                latest[entry.pid] = entry
            elif event == "job_completed":
                latest.pop(entry.pid, None)
        if not latest:
            return None
        return max(latest.values(), key=lambda entry: entry.position)

    for _ in range(attempts):
        started = wait_for(busy_child, 60, f"a busy child of {supervisor.name}", interval=0.005)
        killed_at = len(log.entries)
        os.kill(started.pid, signal.SIGKILL)
        worker = started["worker"]

        def buried(worker: str = worker, killed_at: int = killed_at) -> LogEntry | None:
            for died in log.events("worker_died"):
                if (
                    died.position >= killed_at
                    and died.pid == supervisor.pid
                    and died["worker"] == worker
                ):
                    return died
            return None

        died = wait_for(buried, 30, f"{supervisor.name} to report {worker} died")
        assert died["how"] == "killed by signal 9", died.fields
        kills.append(Kill(started.pid, worker, started["job"], died["requeued"]))
        if kills[-1].requeued >= 1:
            return kills
    raise AssertionError(f"{attempts} SIGKILLs in a row missed every job in progress: {kills}")


def deaths(log: SharedLog, supervisor: Started) -> list[tuple[str, str, int]]:
    """(worker, how, requeued) of every worker_died line the supervisor logged."""
    return [
        (died["worker"], died["how"], died["requeued"])
        for died in log.events("worker_died")
        if died.pid == supervisor.pid
    ]


def expected_deaths(kills: list[Kill]) -> list[tuple[str, str, int]]:
    return [(kill.worker, "killed by signal 9", kill.requeued) for kill in kills]


def assert_every_job_completed_exactly_once(
    env: dict[str, str], log: SharedLog, kills: list[Kill]
) -> dict[str, dict[str, Any]]:
    jobs = list_jobs(env)
    assert len(jobs) == PHOTO_COUNT, f"{len(jobs)} jobs for {PHOTO_COUNT} photos"
    states = Counter(job["state"] for job in jobs.values())
    assert states == {"done": PHOTO_COUNT}, f"job states after the final run: {dict(states)}"
    assert len({job["photo_id"] for job in jobs.values()}) == PHOTO_COUNT

    completions = log.completions()
    twice = {job: count for job, count in completions.items() if count > 1}
    assert not twice, f"jobs completed more than once: {twice}"
    never = sorted(set(jobs) - set(completions))
    assert not never, f"{len(never)} done jobs never logged as completed: {never[:5]}"
    unknown = sorted(set(completions) - set(jobs))
    assert not unknown, f"completed jobs that are not in the queue: {unknown[:5]}"

    # The jobs the killed workers held: requeued with the reason, and finished by another worker.
    interrupted = {
        job_id: job
        for job_id, job in jobs.items()
        if "died (killed by signal 9)" in (job["last_error"] or "")
    }
    assert len(interrupted) == sum(kill.requeued for kill in kills), interrupted
    victims = {kill.pid for kill in kills}
    completed_by = {entry["job"]: entry.pid for entry in log.events("job_completed")}
    for job_id, job in interrupted.items():
        assert job["attempts"] >= 2, job
        assert completed_by[job_id] not in victims, f"{job_id} completed by a killed worker"
    return jobs


# -- tests ------------------------------------------------------------------------------------


def test_killed_worker_and_stopped_supervisor_lose_no_photo(
    tmp_path: Path, big_photos: Path, processes: Callable[[dict[str, str]], Processes]
) -> None:
    env = crash_env(tmp_path)
    log = SharedLog(tmp_path / "logs" / "photoctl.log")
    ingest(env, big_photos / "set000", BATCH)

    supervisor = processes(env).start("supervisor", "work", "-n", "3", "--engine", "none", "--json")
    wait_for(lambda: sum(log.completions().values()) >= 6, 60, "6 jobs completed")

    before_kill = descendant_pids(supervisor.pid)
    kills = kill_a_busy_worker(log, supervisor)
    assert supervisor.process.poll() is None, supervisor.tail()

    # The replacement comes after a back-off (the victim lived less than 5 s), long enough for
    # the other two to drain the first batch: the second arrives once the replacement is there,
    # so that it has jobs to take and some are still queued when the supervisor is stopped.
    wait_for(
        lambda: descendant_pids(supervisor.pid) - before_kill,
        RESPAWN_TIMEOUT_SECONDS,
        "a replacement worker process",
    )
    ingest(env, big_photos / "set001", BATCH)

    # The supervisor replaces the dead worker, and the replacement takes jobs.
    def replacement_working() -> bool:
        children = descendant_pids(supervisor.pid)
        return any(
            entry.pid in children and entry.pid not in before_kill
            for entry in log.events("job_started")
        )

    wait_for(replacement_working, RESPAWN_TIMEOUT_SECONDS, "a replacement worker to take a job")
    done_before_stop = sum(log.completions().values())
    wait_for(
        lambda: sum(log.completions().values()) >= done_before_stop + 3,
        60,
        "3 more jobs completed",
    )

    # SIGTERM to the supervisor alone: it must stop its children, which finish or release the
    # jobs in hand, and exit 0 within the grace period.
    supervisor.process.send_signal(signal.SIGTERM)
    code, seconds = wait_exit(supervisor, SHUTDOWN_GRACE_SECONDS + 20)
    assert code == 0, supervisor.tail()
    assert seconds < SHUTDOWN_GRACE_SECONDS, f"stopping took {seconds:.1f} s\n{supervisor.tail()}"
    wait_for(lambda: not group_pids(supervisor.pid), 10, "every worker to have exited")
    # Only the SIGKILLed worker died; the others stopped cleanly on SIGTERM.
    assert deaths(log, supervisor) == expected_deaths(kills), supervisor.tail()
    first = summary(supervisor)
    assert (first["failed"], first["restarted"]) == (0, len(kills)), first

    # The workers finished the jobs they were processing when asked to stop (or gave back the
    # ones they had not started): nothing is left running, and the rest waits in the queue.
    stopping = [e.position for e in log.events("shutdown") if e.pid == supervisor.pid]
    assert len(stopping) == 1, supervisor.tail()
    finished_in_hand = [e for e in log.events("job_completed") if e.position > stopping[0]]
    assert finished_in_hand, "no worker finished its job in hand after SIGTERM"
    after_stop = Counter(job["state"] for job in list_jobs(env).values())
    assert after_stop["running"] == 0, f"jobs left running after a clean stop: {after_stop}"
    assert after_stop["failed"] == 0, after_stop
    assert after_stop["queued"] + after_stop["retrying"] > 0, (
        f"nothing left to rescue: {after_stop}"
    )

    rescue = run_photoctl(
        ["work", "-n", "3", "--until-empty", "--engine", "none", "--json"], env, 120
    )
    assert rescue.returncode == 0, rescue.stderr[-3000:]
    second = json.loads(rescue.stdout)

    assert_every_job_completed_exactly_once(env, log, kills)
    assert first["done"] + second["done"] == PHOTO_COUNT, (first, second)


@pytest.mark.postgres
def test_two_supervisors_share_a_postgresql_queue_without_double_processing(
    tmp_path: Path,
    postgres_url: str,
    big_photos: Path,
    processes: Callable[[dict[str, str]], Processes],
) -> None:
    env = crash_env(tmp_path, postgres_url)
    log = SharedLog(tmp_path / "logs" / "photoctl.log")
    ingest(env, big_photos)

    # Two "machines" started at once on one database, each draining until nothing is left.
    machines = processes(env)
    command = ("work", "-n", "2", "--until-empty", "--engine", "none", "--json")
    machine_a = machines.start("machine-a", *command)
    machine_b = machines.start("machine-b", *command)
    wait_for(lambda: sum(log.completions().values()) >= 8, 60, "8 jobs completed")
    kills = kill_a_busy_worker(log, machine_a)

    for machine in (machine_a, machine_b):
        code, _ = wait_exit(machine, 90)
        assert code == 0, machine.tail()
        wait_for(lambda m=machine: not group_pids(m.pid), 10, f"{machine.name}'s workers to exit")

    assert_every_job_completed_exactly_once(env, log, kills)
    assert deaths(log, machine_a) == expected_deaths(kills), machine_a.tail()
    assert deaths(log, machine_b) == [], machine_b.tail()

    # Both machines did part of the work, and each one's summary agrees with the shared file,
    # where a worker id names its supervisor's pid (host:pid:index:random).
    per_machine = {
        machine.name: Counter(
            entry["job"]
            for entry in log.events("job_completed")
            if entry["worker_id"].split(":")[1] == str(machine.pid)
        )
        for machine in (machine_a, machine_b)
    }
    for name, completed in per_machine.items():
        assert completed, f"{name} completed no job"
    assert sum(per_machine.values(), Counter()) == log.completions()
    summaries = {machine.name: summary(machine) for machine in (machine_a, machine_b)}
    assert summaries["machine-a"]["restarted"] == len(kills), summaries
    assert summaries["machine-b"]["restarted"] == 0, summaries
    assert sum(s["done"] for s in summaries.values()) == PHOTO_COUNT, summaries
    assert all(s["failed"] == 0 for s in summaries.values()), summaries
