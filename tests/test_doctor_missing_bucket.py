"""`doctor` with a storage bucket that does not exist (issue 20, item 14), on a real SeaweedFS.

It used to print only `Error: s3://other: object is missing from the bucket`, exit 1, with no
check lines and nothing on --json: the one command meant to say what is wrong said least.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from testkit.seaweedfs import SeaweedFS
from tests.support.cli import photoctl_env, run_photoctl

# One SeaweedFS for all of them: the S3 tests share an xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("seaweedfs")


def test_doctor_reports_a_missing_bucket_as_a_check_line_and_runs_the_other_checks(
    tmp_path: Path, db_url: str, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    missing = f"other-{uuid.uuid4().hex[:8]}"
    env = photoctl_env(
        tmp_path,
        db_url,
        **seaweedfs.env,
        PHOTOCTL_STORAGE_ROOT=f"s3://{missing}/photos",
        PHOTOCTL_STORAGE_ENDPOINT_URL=seaweedfs.endpoint_url,
    )

    as_json = run_photoctl(["doctor", "--json"], env, cwd=tmp_path)
    as_text = run_photoctl(["doctor"], env, cwd=tmp_path)

    assert as_json.returncode == 1, as_json.stderr
    report = json.loads(as_json.stdout)
    checks = {check["name"]: check for check in report["checks"]}
    assert report["ok"] is False
    assert checks["storage"] == {
        "name": "storage",
        "ok": False,
        "detail": f"bucket {missing} does not exist: create it with `aws s3 mb s3://{missing} "
        f"--endpoint-url {seaweedfs.endpoint_url}` (or your provider's console), or fix "
        "storage.root",
    }
    for other in ("config", "database", "schema", "faces"):
        assert checks[other]["ok"], checks[other]
    assert as_text.returncode == 1
    lines = as_text.stdout.splitlines()
    assert f"[FAIL] storage: bucket {missing} does not exist: create it with" in "\n".join(lines)
    assert [line.split("]")[1].split(":")[0].strip() for line in lines] == [
        check["name"] for check in report["checks"]
    ]
    assert "Error" not in as_text.stderr
