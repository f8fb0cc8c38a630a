"""The real CLI in a subprocess, with an environment that holds only what the test sets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from photoctl.config import HISTORIC_ENV_NAMES


def is_photoctl_variable(name: str) -> bool:
    """PHOTOCTL_* and the historic names photoctl still reads (config.py): a developer's shell
    must not leak either into a test."""
    return name.startswith("PHOTOCTL_") or name in HISTORIC_ENV_NAMES


def photoctl_env(tmp_path: Path, db_url: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a photoctl subprocess: its own data dir and database."""
    env = {k: v for k, v in os.environ.items() if not is_photoctl_variable(k)}
    env["PHOTOCTL_DATA_DIR"] = str(tmp_path / "data")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    if db_url:
        env["PHOTOCTL_DATABASE_URL"] = db_url
    env.update(extra)
    return env


def run_photoctl(
    args: list[str], env: dict[str, str], timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess and capture what it prints."""
    return subprocess.run(
        [sys.executable, "-m", "photoctl", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
