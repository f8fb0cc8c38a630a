"""scripts/bench_scale.py builds its sizes and prints every curve, on both databases
(`--smallest`: seconds; the real sizes are the README's Performance table)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_scale.py"


@pytest.mark.postgres
def test_the_scale_benchmark_prints_every_curve_for_both_databases(
    postgres_admin_url: str,
) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smallest", "--postgres-url", postgres_admin_url],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(SCRIPT.parent)},
    )
    assert done.returncode == 0, done.stderr
    for database in ("sqlite", "postgresql"):
        section = done.stdout.split(f"== {database}")[1].split("\n== ")[0]
        for curve in ("enrollment", "per-photo matching", "operator commands", "gallery"):
            assert curve in section, done.stdout
        assert "skipped" not in section
