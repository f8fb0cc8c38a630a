"""`photoctl doctor`: checks that say what is wrong and how to fix it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from photoctl import db, file_access
from photoctl.config import Settings
from photoctl.errors import PhotoctlError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def run_checks(settings: Settings, engine: Engine) -> list[Check]:
    """Every check, in order; one that fails unexpectedly is its own FAIL line, never the end
    of the report (the operator needs the other lines most when something is broken)."""
    database = _check_database(engine)
    checks = [_check_config(settings), database]
    if database.ok:
        checks.append(_guarded("schema", _check_schema, engine))
    checks.append(_guarded("storage", _check_storage, settings))
    schema_ok = any(check.name == "schema" and check.ok for check in checks)
    if schema_ok:
        checks.append(_guarded("storage record", _check_storage_record, settings, engine))
    checks.append(_check_face_engine(settings, engine if database.ok else None))
    if schema_ok and settings.faces.daily_budget.strip():
        checks.append(_guarded("budget", _check_budget, settings, engine))
    return checks


def _guarded(name: str, check: Callable[..., Check], *args: Any) -> Check:
    try:
        return check(*args)
    except PhotoctlError as error:
        return Check(name, False, str(error))


def _check_storage_record(settings: Settings, engine: Engine) -> Check:
    """Whether this process's storage is the one the database records (storage_identity.py)."""
    from photoctl import storage_identity

    own = storage_identity.identity(settings)
    with db.read(engine) as conn:
        found = storage_identity.recorded(conn)
    if found is None:
        return Check(
            "storage record",
            True,
            f"none recorded yet: the next init, ingest, work or serve records {own}",
        )
    if found != own:
        return Check("storage record", False, storage_identity.mismatch_message(found, own))
    return Check("storage record", True, f"{own}, as recorded in the database")


def _check_budget(settings: Settings, engine: Engine) -> Check:
    """Whether today's face-service budget still lets workers claim photo jobs."""
    from photoctl.budget import BILLED_ENGINE, spend_today

    with db.read(engine) as conn:
        spend = spend_today(conn, settings)
    if settings.faces.engine != BILLED_ENGINE:
        return Check("budget", True, f"{spend.describe()} (holds back the rekognition engine only)")
    if spend.reached:
        return Check(
            "budget",
            False,
            f"{spend.describe()}. Raise faces.daily_budget in the config file (workers re-read "
            "it) if more is planned",
        )
    return Check("budget", True, spend.describe())


def _missing_bucket(settings: Settings, bucket: str) -> str:
    endpoint = settings.storage.endpoint_url
    command = f"aws s3 mb s3://{bucket}" + (f" --endpoint-url {endpoint}" if endpoint else "")
    return (
        f"bucket {bucket} does not exist: create it with `{command}` (or your provider's "
        "console), or fix storage.root"
    )


def _check_config(settings: Settings) -> Check:
    if settings.config_file is None:
        return Check("config", True, "no config.ini: defaults and environment")
    return Check("config", True, f"{settings.config_file.resolve()} read")


def config_failure(error: PhotoctlError) -> Check:
    """The check line for settings that cannot be loaded (a broken config.ini, a bad value)."""
    return Check(
        "config",
        False,
        f"{error}. Fix it; `photoctl config example` prints every key with its default",
    )


def _check_face_engine(settings: Settings, engine: Engine | None) -> Check:
    from photoctl import faces

    name = settings.faces.engine
    try:
        face_engine = faces.make_engine(name, settings, engine)
        if face_engine is None:
            return Check("faces", True, "engine none: thumbnails and metadata only")
        if face_engine.keeps_index and engine is not None:
            db.ensure_schema(engine)  # the limiter keeps its state in the database
        return Check("faces", True, f"engine {name}: {face_engine.check()}")
    except PhotoctlError as error:
        return Check("faces", False, f"engine {name}: {error}")


def _check_database(engine: Engine) -> Check:
    url = engine.url.render_as_string(hide_password=True)
    sqlite = db.sqlite_file(url)
    if sqlite and (problem := file_access.write_problem(Path(os.path.abspath(sqlite)))):
        return Check("database", False, problem)  # readable maybe, but nothing could be stored
    try:
        db.check_connection(engine)
    except PhotoctlError as error:
        return Check(
            "database",
            False,
            f"{url} unreachable: {error}. Check database.url / "
            "--database-url and that the server is running.",
        )
    return Check("database", True, f"{url} reachable")


def _check_schema(engine: Engine) -> Check:
    current, head = db.current_revision(engine), db.head_revision()
    if current == head:
        return Check("schema", True, f"at the latest revision ({head})")
    return Check(
        "schema",
        False,
        f"at revision {current or 'none'}, latest is {head}: any "
        "photoctl command (e.g. `photoctl stats`) upgrades it",
    )


def _check_storage(settings: Settings) -> Check:
    if settings.storage.is_s3:
        # boto3 only where S3 is used
        from photoctl.object_store import ObjectMissing, store_for

        store = store_for(settings.storage)
        try:
            answers = store.reachable()
        except ObjectMissing:  # HeadBucket's 404: the bucket itself
            return Check("storage", False, _missing_bucket(settings, store.bucket))
        if answers:
            return Check("storage", True, f"{settings.storage.root} answers")
        return Check(
            "storage",
            False,
            f"{settings.storage.root} does not answer (bucket missing, credentials refused or "
            "endpoint down): check storage.endpoint_url and the AWS credentials",
        )
    root = settings.storage_root
    if not root.exists():
        # doctor only looks: the first worker or upload creates the root.
        parent = next(p for p in root.parents if p.exists())
        if os.access(parent, os.W_OK | os.X_OK):
            return Check("storage", True, f"{root} does not exist yet; the first worker creates it")
        return Check(
            "storage",
            False,
            f"{root} does not exist and {parent} is not writable: fix permissions or set "
            "storage.root",
        )
    try:
        with tempfile.NamedTemporaryFile(dir=root, prefix=".doctor-"):
            pass
    except OSError as error:
        return Check(
            "storage",
            False,
            f"{root} is not writable ({error.strerror}): fix its permissions or set storage.root",
        )
    free_gib = os.statvfs(root).f_bavail * os.statvfs(root).f_frsize / 2**30
    return Check("storage", True, f"{root} writable, {free_gib:.1f} GiB free")
