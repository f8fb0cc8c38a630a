"""Helpers for the worker hardening tests: photoctl subprocesses in their own session, polling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.support.cli import ForkedCommand, run_photoctl
from tests.support.cli import start_photoctl as start_forked

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Background:
    """A photoctl command running in its own session (so the whole group can be killed)."""

    process: ForkedCommand
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text("utf-8", "replace")

    def wait(self, timeout: float) -> int:
        """Exit code; on timeout the whole group is killed and the test fails with its tail."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"photoctl still running after {timeout:.0f} s\n{self.stderr()[-3000:]}"
            ) from None

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass


def start_photoctl(args: list[str], env: dict[str, str], directory: Path, name: str) -> Background:
    directory.mkdir(parents=True, exist_ok=True)
    stderr_path = directory / f"{name}.stderr"
    process = start_forked(args, env, Path(os.devnull), stderr_path, new_session=True)
    return Background(process, stderr_path)


def list_jobs(env: dict[str, str]) -> list[dict[str, Any]]:
    result = run_photoctl(["jobs", "list", "--json", "--limit", "1000"], env, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def ingest_json(env: dict[str, str], *paths: Path) -> tuple[int, dict[str, Any]]:
    result = run_photoctl(["ingest", "--json", *map(str, paths)], env, timeout=120)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return result.returncode, json.loads(result.stdout)
