"""The database records its storage; a process with another one refuses (issue 20, item 13).

Two "machines" are two working directories, each with its own data dir (so its own default
storage root, ``<data dir>/storage``) or its own config.ini, pointing at one database. The
second one used to create ``./photoctl-data/storage`` on its own disk and mark jobs done while
serve on the first answered 404 for their thumbnails.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from photoctl import config, storage_identity
from testkit.seaweedfs import SeaweedFS
from tests.support.cli import photoctl_env, run_photoctl

DATA = Path(__file__).parent / "data"


def machine(tmp_path: Path, name: str, db_url: str) -> tuple[dict[str, str], Path]:
    """A machine's working directory and environment; its data dir is ``<home>/data``."""
    home = tmp_path / name
    home.mkdir()
    return photoctl_env(home, db_url), home


def photos(tmp_path: Path, count: int = 2) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir(exist_ok=True)
    for source in sorted(DATA.glob("*.jpg"))[:count]:
        shutil.copy(source, folder / source.name)
    return folder


def recorded_storage(db_url: str) -> str | None:
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return conn.execute(
                text("SELECT value FROM photoctl_meta WHERE key = 'storage'")
            ).scalar()
    finally:
        engine.dispose()


def test_a_second_machine_with_another_storage_root_refuses_to_work_and_creates_nothing(
    tmp_path: Path, empty_db_url: str
) -> None:
    env_a, home_a = machine(tmp_path, "a", empty_db_url)
    env_b, home_b = machine(tmp_path, "b", empty_db_url)
    storage_a, storage_b = home_a / "data" / "storage", home_b / "data" / "storage"

    init = run_photoctl(["init"], env_a, cwd=home_a)
    ingested = run_photoctl(["ingest", str(photos(tmp_path))], env_a, cwd=home_a)
    refusals = {
        name: run_photoctl(args, env_b, cwd=home_b)
        for name, args in {
            "work": ["work", "--until-empty"],
            "ingest": ["ingest", str(photos(tmp_path))],
            "serve": ["serve", "--port", "1"],
            "init": ["init"],
        }.items()
    }
    doctor = run_photoctl(["doctor", "--json"], env_b, cwd=home_b)
    listed = run_photoctl(["jobs", "list", "--json"], env_a, cwd=home_a)

    assert init.returncode == 0, init.stderr
    assert f"storage {storage_a}" in init.stderr
    assert ingested.returncode == 0, ingested.stderr
    assert recorded_storage(empty_db_url) == str(storage_a)
    for name, refused in refusals.items():
        assert refused.returncode == 2, (name, refused.stderr)
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, (name, refused.stderr)
        assert str(storage_a) in lines[0] and str(storage_b) in lines[0], lines[0]
        assert "storage mismatch" in lines[0] and "--move-storage" in lines[0]
    assert not storage_b.exists()  # nothing written on the wrong disk
    assert {json.loads(line)["state"] for line in listed.stdout.splitlines()} == {"queued"}
    checks = {check["name"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert doctor.returncode == 1
    assert not checks["storage record"]["ok"]
    assert str(storage_a) in checks["storage record"]["detail"]
    assert checks["database"]["ok"] and checks["schema"]["ok"]


def test_a_machine_whose_config_names_the_recorded_storage_works(
    tmp_path: Path, db_url: str
) -> None:
    env_a, home_a = machine(tmp_path, "a", db_url)
    env_b, home_b = machine(tmp_path, "b", db_url)
    storage_a = home_a / "data" / "storage"
    # The same folder spelled another way (relative to b's working directory, a trailing
    # slash): one storage once normalised.
    spelled = Path("..") / "a" / "data" / "storage"
    (home_b / "config.ini").write_text(f"[storage]\nroot = {spelled}/\n")

    assert run_photoctl(["init"], env_a, cwd=home_a).returncode == 0
    ingested = run_photoctl(["ingest", str(photos(tmp_path, 1))], env_b, cwd=home_b)
    worked = run_photoctl(["work", "--until-empty", "--engine", "none"], env_b, cwd=home_b)
    doctor = run_photoctl(["doctor", "--json"], env_b, cwd=home_b)

    assert ingested.returncode == 0, ingested.stderr
    assert worked.returncode == 0, worked.stderr
    assert len(list((storage_a / "thumbs").rglob("*.jpg"))) == 1
    checks = {check["name"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert checks["storage record"] == {
        "name": "storage record",
        "ok": True,
        "detail": f"{storage_a}, as recorded in the database",
    }


def test_a_database_without_a_record_gets_the_storage_of_its_first_writer(
    tmp_path: Path, db_url: str
) -> None:
    # db_url is migrated but never used by init: like a database made before the record.
    env_a, home_a = machine(tmp_path, "a", db_url)
    env_b, home_b = machine(tmp_path, "b", db_url)

    before = run_photoctl(["doctor", "--json"], env_b, cwd=home_b)
    dry_run = run_photoctl(["ingest", "--dry-run", str(photos(tmp_path))], env_b, cwd=home_b)
    recorded_after_dry_run = recorded_storage(db_url)
    first = run_photoctl(["work", "--until-empty"], env_a, cwd=home_a)
    second = run_photoctl(["work", "--until-empty"], env_b, cwd=home_b)

    checks = {check["name"]: check for check in json.loads(before.stdout)["checks"]}
    assert checks["storage record"]["ok"]
    assert checks["storage record"]["detail"].startswith("none recorded yet")
    assert dry_run.returncode == 0, dry_run.stderr
    assert recorded_after_dry_run is None  # a dry run writes nothing
    assert first.returncode == 0, first.stderr
    assert recorded_storage(db_url) == str(home_a / "data" / "storage")
    assert second.returncode == 2
    assert "storage mismatch" in second.stderr


def test_init_move_storage_records_the_new_storage_and_the_old_one_is_refused(
    tmp_path: Path, db_url: str
) -> None:
    env_a, home_a = machine(tmp_path, "a", db_url)
    env_b, home_b = machine(tmp_path, "b", db_url)
    assert run_photoctl(["init"], env_a, cwd=home_a).returncode == 0
    assert run_photoctl(["ingest", str(photos(tmp_path, 1))], env_a, cwd=home_a).returncode == 0
    assert run_photoctl(["work", "--until-empty"], env_a, cwd=home_a).returncode == 0
    too_early = run_photoctl(["init", "--move-storage"], env_b, cwd=home_b)  # files not there
    back = run_photoctl(["init", "--move-storage"], env_a, cwd=home_a)
    shutil.copytree(home_a / "data" / "storage", home_b / "data" / "storage")

    moved = run_photoctl(["init", "--move-storage"], env_b, cwd=home_b)
    now_b = run_photoctl(["work", "--until-empty"], env_b, cwd=home_b)
    now_a = run_photoctl(["work", "--until-empty"], env_a, cwd=home_a)

    assert too_early.returncode == 0, too_early.stderr
    storage_b = home_b / "data" / "storage"
    assert f"warning: 1 of the 1 newest thumbnails are not in {storage_b}: copy" in (
        too_early.stderr
    )
    assert back.returncode == 0, back.stderr
    assert moved.returncode == 0, moved.stderr
    assert "warning" not in moved.stderr
    assert f"storage moved from {home_a / 'data' / 'storage'} to " in moved.stderr
    assert recorded_storage(db_url) == str(home_b / "data" / "storage")
    assert now_b.returncode == 0, now_b.stderr
    assert now_a.returncode == 2 and "storage mismatch" in now_a.stderr


def test_s3_storages_compare_by_bucket_prefix_and_normalised_endpoint(tmp_path: Path) -> None:
    def identity(root: str, endpoint: str = "") -> str:
        overrides = {"storage.root": root, "storage.endpoint_url": endpoint}
        settings = config.load(data_dir=str(tmp_path), environ={}, overrides=overrides)
        return storage_identity.identity(settings)

    same = {
        identity("s3://photos/2026", "http://seaweedfs:8333"),
        identity("s3://photos/2026/", "http://SeaweedFS:8333/"),
    }
    assert same == {"s3://photos/2026 at http://seaweedfs:8333"}
    assert identity("s3://photos/2026", "https://s3.example.org:443") == (
        "s3://photos/2026 at https://s3.example.org"
    )
    assert identity("s3://photos/2026") == "s3://photos/2026"  # AWS S3
    assert identity("s3://photos/2026", "http://other:8333") != identity(
        "s3://photos/2026", "http://seaweedfs:8333"
    )
    assert identity("s3://photos") == "s3://photos"


@pytest.mark.xdist_group("seaweedfs")
def test_a_machine_without_the_bucket_config_is_refused_and_one_spelling_it_otherwise_works(
    tmp_path: Path, db_url: str, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    root = f"s3://{s3_bucket}/event"
    bucket_env = {**seaweedfs.env, "PHOTOCTL_STORAGE_ROOT": root}
    env_a, home_a = machine(tmp_path, "a", db_url)
    env_a.update(bucket_env, PHOTOCTL_STORAGE_ENDPOINT_URL=seaweedfs.endpoint_url)
    env_b, home_b = machine(tmp_path, "b", db_url)  # forgot the [storage] settings
    env_c, home_c = machine(tmp_path, "c", db_url)
    # The same bucket and server, spelled with trailing slashes.
    env_c.update(
        bucket_env,
        PHOTOCTL_STORAGE_ROOT=root + "/",
        PHOTOCTL_STORAGE_ENDPOINT_URL=seaweedfs.endpoint_url + "/",
    )

    init = run_photoctl(["init"], env_a, cwd=home_a)
    forgot = run_photoctl(["work", "--until-empty"], env_b, cwd=home_b)
    same = run_photoctl(["work", "--until-empty"], env_c, cwd=home_c)

    recorded = f"{root} at {seaweedfs.endpoint_url}"
    assert init.returncode == 0, init.stderr
    assert recorded_storage(db_url) == recorded
    assert forgot.returncode == 2
    assert recorded in forgot.stderr and str(home_b / "data" / "storage") in forgot.stderr
    assert same.returncode == 0, same.stderr
