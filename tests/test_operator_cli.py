"""The operator's view of the CLI: quiet runs, signals, progress, --json, ingest paths and globs.

Every test runs the real `photoctl` in a subprocess (a pseudo-terminal where a terminal is the
point), on SQLite and on PostgreSQL where a database is involved. A command that needs a
database gets one from `photoctl ingest` first.
"""

from __future__ import annotations

import fcntl
import importlib
import inspect
import json
import os
import pkgutil
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click

from photoctl import cli as cli_module
from photoctl import config, db, queue, stats
from photoctl.models import JobKind
from testkit.photos import settle, write_photo, write_tree
from tests.support.cli import photoctl_env, run_photoctl

# -- helpers --------------------------------------------------------------------------------


class Background:
    """A photoctl subprocess whose stdout and stderr lines are collected as they come."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "photoctl", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._collect, args=(stream, lines), daemon=True)
            for stream, lines in (
                (self.process.stdout, self.stdout),
                (self.process.stderr, self.stderr),
            )
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait_for(self, condition: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None and not condition():
                self.finish(5)
                raise AssertionError(f"exited {self.process.returncode}: {self.stderr}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; stdout {self.stdout}, stderr {self.stderr}")
            time.sleep(0.05)

    def quiet_for(self, seconds: float) -> None:
        """Assert that nothing new is printed for ``seconds`` (the thing under test is silence)."""
        before = (len(self.stdout), len(self.stderr))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert (len(self.stdout), len(self.stderr)) == before, (self.stdout, self.stderr)
            assert self.process.poll() is None, self.stderr
            time.sleep(0.05)

    def finish(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.finish(timeout)


def summaries(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("ingest: ")]


def ingest(
    tmp_path: Path, env: dict[str, str], count: int = 3, size: tuple[int, int] = (320, 240)
) -> Path:
    """A settled tree of ``count`` photos, ingested: the database exists afterwards."""
    root = tmp_path / "photos"
    write_tree(root, count, size=size)
    result = run_photoctl(["ingest", str(root)], env)
    assert result.returncode == 0, result.stderr
    return root


def run_on_a_terminal(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple:
    """(exit code, stdout, what reached the terminal) with stderr on a 120x40 pseudo-terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "photoctl", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        elif process.poll() is not None:
            break
    os.close(master)
    stdout = process.stdout.read().decode()
    return process.wait(timeout), stdout, screen.decode(errors="replace")


def enqueue_noops(settings: config.Settings, count: int) -> None:
    engine = db.make_engine(settings)
    try:
        with db.write(engine) as conn:
            queue.enqueue_jobs(conn, JobKind.NOOP, [None] * count)
    finally:
        engine.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- 18: quiet, watch, signals, serve --------------------------------------------------------


def test_quiet_leaves_warnings_errors_and_stdout_but_no_summaries(
    tmp_path: Path, empty_db_url: str
) -> None:
    # An empty database: the first -q ingest creates it, and must say nothing doing so.
    env = photoctl_env(tmp_path, empty_db_url)
    write_tree(tmp_path / "photos", 3)
    first = run_photoctl(["-q", "ingest", str(tmp_path / "photos")], env)
    assert (first.returncode, first.stdout, first.stderr) == (0, "", "")
    again = run_photoctl(["-q", "ingest", str(tmp_path / "photos"), "--json"], env)
    assert again.returncode == 0 and again.stderr == ""
    assert json.loads(again.stdout)["unchanged"] == 3
    retried = run_photoctl(["-q", "jobs", "retry", "--failed", "--json"], env)
    assert (retried.returncode, retried.stderr) == (0, "")
    assert json.loads(retried.stdout) == {"queued_again": 0}
    pruned = run_photoctl(["-q", "jobs", "prune", "--older-than", "1d"], env)
    assert (pruned.returncode, pruned.stdout, pruned.stderr) == (0, "", "")
    worked = run_photoctl(["-q", "work", "-n", "1", "--engine", "none", "--until-empty"], env)
    assert (worked.returncode, worked.stdout) == (0, "")
    assert worked.stderr.startswith("work: 3 jobs done, 0 failed"), "-q keeps work's summary"
    assert len(worked.stderr.splitlines()) == 1
    listed = run_photoctl(["-q", "jobs", "list"], env)
    assert listed.stderr == "" and len(listed.stdout.splitlines()) == 3
    (tmp_path / "empty").mkdir()
    empty = run_photoctl(["-q", "ingest", str(tmp_path / "empty")], env)
    assert empty.returncode == 0
    assert empty.stderr.startswith("warning: no images found under ")
    broken_file = write_photo(tmp_path / "bad" / "broken.jpg")
    broken_file.write_bytes(b"not a jpeg at all")
    settle(broken_file)
    broken = run_photoctl(["-q", "ingest", str(tmp_path / "bad")], env)
    assert broken.returncode == 1
    assert broken.stderr.startswith("error: ") and "broken.jpg" in broken.stderr
    assert "ingest:" not in broken.stderr


def test_quiet_keeps_the_shared_log_file_at_its_level(tmp_path: Path, empty_db_url: str) -> None:
    # An empty database, as above: creating it is part of what -q keeps off the terminal.
    env = photoctl_env(tmp_path, empty_db_url, PHOTOCTL_LOG_FILE=str(tmp_path / "photoctl.log"))
    write_tree(tmp_path / "photos", 2)
    result = run_photoctl(["-q", "ingest", str(tmp_path / "photos")], env)
    assert (result.returncode, result.stderr) == (0, "")
    worked = run_photoctl(["-q", "work", "-n", "1", "--engine", "none", "--until-empty"], env)
    assert worked.returncode == 0 and worked.stderr.startswith("work: 2 jobs done")
    record = (tmp_path / "photoctl.log").read_text()
    assert "[PhotoQueue] 2 jobs enqueued" in record
    assert record.count("Processing job") == 2


def test_watch_prints_only_when_something_changed_and_sigterm_exits_0(
    tmp_path: Path, db_url: str
) -> None:
    env = photoctl_env(tmp_path, db_url, PHOTOCTL_INGEST_WATCH_INTERVAL_SECONDS="0.1")
    write_tree(tmp_path / "photos", 3)
    watcher = Background(["ingest", "--watch", str(tmp_path / "photos")], env)
    try:
        watcher.wait_for(lambda: summaries(watcher.stderr))
        assert summaries(watcher.stderr)[0].startswith("ingest: 3 new")
        watcher.quiet_for(1.5)  # about 15 rescans of an unchanged tree: not a word
        write_photo(tmp_path / "photos" / "late.jpg", seed=99)
        watcher.wait_for(lambda: len(summaries(watcher.stderr)) == 2)
        assert summaries(watcher.stderr)[1].startswith("ingest: 1 new")
        watcher.quiet_for(0.5)
    finally:
        code = watcher.terminate()
    assert code == 0, watcher.stderr
    assert len(summaries(watcher.stderr)) == 2
    assert not any("Traceback" in line for line in watcher.stderr)


def test_sigterm_ends_stats_watch_with_exit_0(tmp_path: Path, db_url: str) -> None:
    env = photoctl_env(tmp_path, db_url)
    ingest(tmp_path, env)
    watcher = Background(["stats", "--watch", "1", "--json"], env)
    watcher.wait_for(lambda: watcher.stdout)
    assert watcher.terminate() == 0
    assert watcher.stderr == [] and json.loads(watcher.stdout[0])["photos"]["total"] == 3


def test_sigterm_during_the_settle_wait_ends_ingest_cleanly_with_exit_0(
    tmp_path: Path, db_url: str
) -> None:
    env = photoctl_env(
        tmp_path,
        db_url,
        PHOTOCTL_INGEST_SETTLE_SECONDS="30",
        PHOTOCTL_INGEST_SETTLE_WAIT_SECONDS="600",
    )
    write_tree(tmp_path / "photos", 2)
    write_photo(tmp_path / "photos" / "copying.jpg", seed=50, settled=False)
    running = Background(["ingest", str(tmp_path / "photos"), "--json"], env)
    running.wait_for(lambda: any("still being written" in line for line in running.stderr))
    assert running.terminate(timeout=15) == 0
    report = json.loads(running.stdout[0])
    assert (report["new"], report["still_being_written"]) == (2, 1)


def test_closed_stdout_ends_a_command_with_exit_0(tmp_path: Path, db_url: str) -> None:
    env = photoctl_env(tmp_path, db_url)
    ingest(tmp_path, env, count=1)
    settings = config.load(data_dir=str(tmp_path / "data"), environ=env)
    enqueue_noops(settings, 3000)  # ~200 KB of lines: more than a pipe holds
    for args in (["jobs", "list", "--limit", "3000"], ["stats", "--watch", "0.1", "--json"]):
        reader = subprocess.Popen(
            [sys.executable, "-m", "photoctl", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert reader.stdout.readline()  # like `| head -1`
        reader.stdout.close()
        assert reader.wait(60) == 0, args
        assert reader.stderr.read() == "", args


def test_serve_on_a_busy_port_is_one_error_line_with_exit_2(tmp_path: Path, db_url: str) -> None:
    env = photoctl_env(tmp_path, db_url)
    ingest(tmp_path, env, count=1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_photoctl(["serve", "--port", str(port)], env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    assert f"127.0.0.1:{port}" in result.stderr and "in use" in result.stderr


# -- 19: progress, --json --------------------------------------------------------------------


def test_work_logs_progress_lines_without_a_terminal(tmp_path: Path, db_url: str) -> None:
    env = photoctl_env(tmp_path, db_url, PHOTOCTL_LOG_PROGRESS_SECONDS="0.2")
    ingest(tmp_path, env, count=12)
    result = run_photoctl(["work", "-n", "1", "--engine", "none", "--until-empty", "--json"], env)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "[Progress]" in line]
    assert lines, result.stderr
    shape = re.compile(r"(\d+) done, (\d+) failed in \d+\S* \([\d.]+ jobs/s\); (\d+) left")
    counts = [tuple(map(int, shape.search(line).groups())) for line in lines]
    assert all(done + failed + left == 12 for done, failed, left in counts)  # one snapshot
    assert "\r" not in result.stderr and "jobs/s]" not in result.stderr  # no bar off a terminal
    report = json.loads(result.stdout)
    assert (report["done"], report["failed"], report["restarted"]) == (12, 0, 0)
    assert report["seconds"] > 0


def test_work_draws_a_progress_bar_on_a_terminal(tmp_path: Path, db_url: str) -> None:
    env = photoctl_env(tmp_path, db_url)
    ingest(tmp_path, env, count=20, size=(1600, 1200))  # ~0.05 s a job: several bar updates
    code, stdout, screen = run_on_a_terminal(
        ["work", "-n", "1", "--engine", "none", "--until-empty", "--json"], env
    )
    assert code == 0, screen
    assert json.loads(stdout)["done"] == 20
    bars = re.findall(
        r"work:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+) \[[\d:]+<([\d:?]+),\s*([\d.?]+)jobs/s\]", screen
    )
    assert bars, screen
    assert {total for _, total, _, _ in bars} == {"20"}
    assert any(rate != "?" and eta != "?" for _, _, eta, rate in bars)  # a rate and an ETA
    assert "[Progress]" not in screen
    assert "Processing job" not in screen  # job lines would scroll the bar away


def test_json_of_doctor_and_jobs_show_retry_prune(tmp_path: Path, db_url: str) -> None:
    env = photoctl_env(tmp_path, db_url)
    ingest(tmp_path, env, count=2)
    doctor = run_photoctl(["doctor", "--json"], env)
    checks = json.loads(doctor.stdout)
    assert doctor.returncode == 0 and checks["ok"] is True
    assert {"database", "schema", "storage"} <= {check["name"] for check in checks["checks"]}
    assert all(set(check) == {"name", "ok", "detail"} for check in checks["checks"])
    job_id = json.loads(run_photoctl(["jobs", "list", "--json"], env).stdout.splitlines()[0])["id"]
    shown = run_photoctl(["jobs", "show", job_id[:8], "--json"], env)
    job = json.loads(shown.stdout)
    assert (job["id"], job["state"], job["attempts"]) == (job_id, "queued", 0)
    assert job["filename"].endswith(".jpg") and isinstance(job["created_at"], float)
    work = run_photoctl(["work", "-n", "1", "--engine", "none", "--until-empty"], env)
    assert work.returncode == 0, work.stderr
    retried = run_photoctl(["jobs", "retry", job_id, "--json"], env)
    assert json.loads(retried.stdout) == {"queued_again": 1}
    assert "1 job queued again" in retried.stderr
    pruned = run_photoctl(["jobs", "prune", "--older-than", "0s", "--json"], env)
    assert json.loads(pruned.stdout) == {"pruned": 1, "uploads_deleted": 0}


def test_stats_json_carries_a_timestamp_and_text_shows_time_to_findable(
    tmp_path: Path, db_url: str
) -> None:
    env = photoctl_env(tmp_path, db_url)
    ingest(tmp_path, env, count=1)
    figures = json.loads(run_photoctl(["stats", "--json"], env).stdout)
    taken = datetime.fromisoformat(figures["timestamp"])
    assert taken.tzinfo is not None and abs((datetime.now(UTC) - taken).total_seconds()) < 60
    text = run_photoctl(["stats"], env).stdout
    assert "findable: no photo matched a user in the last hour" in text


def test_text_stats_render_time_to_findable_percentiles() -> None:
    figures = {
        "queue": {
            "current_queue_size": 0,
            "retrying": 0,
            "running": 0,
            "oldest_queued_seconds": 0.0,
            "total_enqueued": 4,
            "total_processed": 4,
            "total_failed": 0,
            "processed_last_minute": 4,
            "workers_active": 0,
        },
        "photos": {"total": 4, "done": 4, "failed": 0, "pending": 0},
        "cache": {"user_photos_cache": {"size": 0, "hits": 0, "misses": 0, "hit_rate": 0.0}},
        "time_to_findable": {"count": 7, "p50_seconds": 1.25, "p95_seconds": 3.5},
    }
    assert "findable: p50 1.2 s, p95 3.5 s" in stats.render(figures)
    assert "(7 matches in the last hour)" in stats.render(figures)


def test_every_json_flag_is_the_one_shared_option() -> None:
    # photoctl.cli is a package: every module of it, not only its __init__.
    modules = [cli_module] + [
        importlib.import_module(f"{cli_module.__name__}.{info.name}")
        for info in pkgutil.iter_modules(cli_module.__path__)
    ]
    source = "".join(inspect.getsource(module) for module in modules)
    assert source.count('"--json"') == 1  # only inside json_option

    def commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
        found = {}
        for name, command in group.commands.items():
            found[prefix + name] = command
            if isinstance(command, click.Group):
                found.update(commands(command, prefix + name + " "))
        return found

    with_json = {
        name
        for name, command in commands(cli_module.cli).items()
        if any("--json" in param.opts for param in command.params)
    }
    assert {
        "work",
        "doctor",
        "jobs show",
        "jobs retry",
        "jobs prune",
        "stats",
        "ingest",
    } <= with_json


# -- 20: ingest paths, warnings, settling, ignore globs ---------------------------------------


def test_ingest_of_a_missing_path_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    env = photoctl_env(tmp_path)
    write_tree(tmp_path / "photos", 1)
    result = run_photoctl(["ingest", str(tmp_path / "photos"), str(tmp_path / "typo")], env)
    assert result.returncode == 2
    assert result.stderr == f"Error: no such file or directory: {tmp_path / 'typo'}\n"
    assert not (tmp_path / "data").exists()


def test_ingest_of_a_folder_without_images_is_a_warning(tmp_path: Path, db_url: str) -> None:
    env = photoctl_env(tmp_path, db_url)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no photos here")
    result = run_photoctl(["ingest", str(tmp_path / "notes"), "--json"], env)
    assert result.returncode == 0
    assert f"warning: no images found under {tmp_path / 'notes'}" in result.stderr
    assert json.loads(result.stdout)["new"] == 0


def test_skipped_splits_into_unchanged_and_still_being_written(tmp_path: Path, db_url: str) -> None:
    env = photoctl_env(
        tmp_path,
        db_url,
        PHOTOCTL_INGEST_SETTLE_SECONDS="30",
        PHOTOCTL_INGEST_SETTLE_WAIT_SECONDS="0",
    )
    root = ingest(tmp_path, env, count=3)
    write_photo(root / "copying.jpg", seed=77, settled=False)
    result = run_photoctl(["ingest", str(root), "--json"], env)
    report = json.loads(result.stdout)
    assert {k: report[k] for k in ("new", "duplicates", "skipped", "errors")} == {
        "new": 0,
        "duplicates": 0,
        "skipped": 4,
        "errors": 0,
    }
    assert (report["unchanged"], report["still_being_written"]) == (3, 1)
    assert {"seconds", "error_files"} <= set(report)
    human = run_photoctl(["ingest", str(root)], env)
    assert "4 skipped, 0 errors in " in human.stderr
    assert "(skipped: 3 unchanged, 1 still being written)" in human.stderr


def test_one_shot_ingest_waits_for_files_being_written_to_settle(
    tmp_path: Path, db_url: str
) -> None:
    env = photoctl_env(
        tmp_path,
        db_url,
        PHOTOCTL_INGEST_SETTLE_SECONDS="1",
        PHOTOCTL_INGEST_SETTLE_WAIT_SECONDS="60",
    )
    write_tree(tmp_path / "photos", 2)
    copying = write_photo(tmp_path / "photos" / "copying.jpg", seed=60, settled=False)
    running = Background(["ingest", str(tmp_path / "photos"), "--json"], env)
    # The copy goes on (its mtime keeps moving) until ingest says it waits for it.
    waiting = "waiting up to 60 s for 1 file still being written"
    deadline = time.monotonic() + 60
    while not any(waiting in line for line in running.stderr):
        assert running.process.poll() is None and time.monotonic() < deadline, running.stderr
        os.utime(copying)
        time.sleep(0.05)
    assert running.finish(60) == 0, running.stderr
    report = json.loads(running.stdout[0])
    assert (report["new"], report["skipped"], report["still_being_written"]) == (3, 0, 0)


def test_one_shot_ingest_leaves_what_does_not_settle_within_the_bound(
    tmp_path: Path, db_url: str
) -> None:
    env = photoctl_env(
        tmp_path,
        db_url,
        PHOTOCTL_INGEST_SETTLE_SECONDS="30",
        PHOTOCTL_INGEST_SETTLE_WAIT_SECONDS="0.5",
    )
    write_tree(tmp_path / "photos", 2)
    write_photo(tmp_path / "photos" / "still-copying.jpg", seed=61, settled=False)
    started = time.monotonic()
    result = run_photoctl(["ingest", str(tmp_path / "photos"), "--json"], env)
    assert result.returncode == 0
    assert time.monotonic() - started < 30
    report = json.loads(result.stdout)
    assert (report["new"], report["still_being_written"]) == (2, 1)


def test_ignore_globs_skip_nas_folders_by_default_and_more_on_request(
    tmp_path: Path, db_url: str
) -> None:
    env = photoctl_env(tmp_path, db_url)
    root = tmp_path / "share"
    kept = [
        write_photo(root / "ceremony" / "a.jpg", seed=1),
        write_photo(root / "party" / "b.jpg", seed=2),
    ]
    for seed, junk in enumerate(
        [
            "@eaDir/a.jpg/SYNOPHOTO_THUMB_XL.jpg",
            "#recycle/old.jpg",
            "$RECYCLE.BIN/S-1-5-21/gone.jpg",
            "$Recycle.Bin/also-gone.jpg",
            "ceremony/.thumbnails/t.jpg",
            "party/@eaDir/x.jpg",
            "Rejects/blurry.jpg",
            "party/draft_01.jpg",
        ],
        start=10,
    ):
        write_photo(root / junk, seed=seed)
    result = run_photoctl(
        ["ingest", str(root), "--ignore", "rejects", "--ignore", "draft_*", "--json"], env
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["new"] == len(kept)
    listed = run_photoctl(["jobs", "list", "--json"], env).stdout.splitlines()
    assert sorted(json.loads(line)["filename"] for line in listed) == ["a.jpg", "b.jpg"]
    # Without the extra globs, only the defaults apply.
    again = run_photoctl(["ingest", str(root), "--json"], env)
    assert json.loads(again.stdout)["new"] == 2  # Rejects/blurry.jpg and draft_01.jpg
