"""`work` under cron (no terminal) is neither noisy nor silent (issue 20, item 21): it logged two
INFO lines per photo, and -q removed the progress lines and the summary too. Now: progress lines
at INFO, the lines about each photo at DEBUG on stderr (the log file keeps them), and -q leaves
warnings, errors and the final summary."""

from __future__ import annotations

import re

from testkit.photos import write_photo
from tests.support.cli import photoctl_env, run_photoctl

PER_PHOTO = re.compile(r"Processing job|Job [0-9a-f]{32} completed")
WORK = ["work", "-n", "1", "--engine", "none", "--until-empty"]


def ingested(tmp_path, env, count: int, broken: int = 0, first_seed: int = 0) -> None:
    """``count`` new photos queued; ``broken`` of them rewritten as garbage after ingest (their
    jobs fail)."""
    folder = tmp_path / f"photos-{first_seed}"
    photos = [
        write_photo(folder / f"{n}.jpg", seed=n, size=(320, 240))
        for n in range(first_seed, first_seed + count)
    ]
    result = run_photoctl(["ingest", str(folder)], env)
    assert result.returncode == 0, result.stderr
    for photo in photos[:broken]:
        photo.write_bytes(b"not a jpeg any more")


def test_without_a_terminal_work_logs_progress_and_a_summary_not_each_photo(tmp_path, db_url):
    log_file = tmp_path / "photoctl.log"
    env = photoctl_env(
        tmp_path, db_url, PHOTOCTL_LOG_PROGRESS_SECONDS="0.2", PHOTOCTL_LOG_FILE=str(log_file)
    )
    ingested(tmp_path, env, 8)
    result = run_photoctl(WORK, env)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert not [line for line in lines if PER_PHOTO.search(line)], result.stderr
    assert any(" INFO [Progress] " in line for line in lines), result.stderr
    assert lines[-1].startswith("work: 8 jobs done, 0 failed")
    # The shared file is the record: every photo's two lines are there, at INFO.
    record = log_file.read_text()
    assert len(re.findall(r" INFO \[PhotoWorker-0\] Processing job", record)) == 8
    assert len(re.findall(r" INFO \[PhotoWorker-0\] Job [0-9a-f]{32} completed", record)) == 8

    ingested(tmp_path, env, 2, first_seed=100)
    verbose = run_photoctl([*WORK, "-v"], env)
    assert len([line for line in verbose.stderr.splitlines() if PER_PHOTO.search(line)]) == 4


def test_quiet_work_keeps_errors_and_the_summary_and_an_idle_run_says_nothing(tmp_path, db_url):
    env = photoctl_env(tmp_path, db_url, PHOTOCTL_LOG_PROGRESS_SECONDS="0.2")
    ingested(tmp_path, env, 5, broken=1)
    result = run_photoctl([*WORK, "-q"], env)
    assert result.returncode == 1, "a job failed"
    lines = result.stderr.splitlines()
    assert [line for line in lines if " ERROR " in line and "failed" in line], result.stderr
    assert lines[-1].startswith("work: 4 jobs done, 1 failed"), result.stderr
    assert not [line for line in lines if "[Progress]" in line or PER_PHOTO.search(line)]
    assert not [line for line in lines if " INFO " in line], result.stderr

    idle = run_photoctl([*WORK, "-q"], env)
    assert (idle.returncode, idle.stdout, idle.stderr) == (0, "", ""), "cron every minute: no mail"
