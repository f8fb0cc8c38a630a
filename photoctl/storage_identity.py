"""Which storage a database's files are in, recorded in the database itself.

The database stores thumbnails, previews and uploads as keys relative to the storage root, so a
process with another ``storage.root`` (a second machine whose config.ini points elsewhere, a
cron line without the config) would write its files where no one else looks and still mark its
jobs done: serve then answers 404 for them. So the database records its storage
(``photoctl_meta`` key ``storage``) and every process that writes or serves stored files (init,
ingest, work, serve, jobs prune) compares its own with it and refuses to work on a difference.

The rule for recording: ``init`` records the storage of a new database; a database made before
this (or by a command that does not record) gets the storage of the first of those processes
that finds none recorded. Only ``init --move-storage`` changes a recorded storage, after the
operator has moved the files.

Storages compare by a normalised form: a folder by its absolute path (a shared folder must be
mounted at one path on every machine), a bucket as ``s3://bucket/prefix``, followed by
`` at <endpoint>`` for an S3-compatible server (lower-case scheme and host, no default port, no
trailing slash); the same bucket name on another server is another storage.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, select, update

from photoctl import db
from photoctl.errors import ConfigError
from photoctl.models import Meta, Photo
from photoctl.storage_settings import S3_SCHEME, split_s3_url

if TYPE_CHECKING:
    from photoctl.config import Settings

META_KEY = "storage"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class StorageMismatch(ConfigError):
    """This process's storage is not the one the database's files are in (exit 2)."""


def identity(settings: Settings) -> str:
    """The normalised storage of these settings, as recorded and shown in messages."""
    storage = settings.storage
    if not storage.is_s3:
        return os.path.normpath(os.path.abspath(settings.storage_root))
    bucket, prefix = split_s3_url(storage.root)
    where = f"{S3_SCHEME}{bucket}/{prefix}".rstrip("/")
    endpoint = _normalised_endpoint(storage.endpoint_url)
    return f"{where} at {endpoint}" if endpoint else where


def _normalised_endpoint(url: str) -> str:
    if not url:
        return ""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets
    port = parts.port
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def recorded(conn: Connection) -> str | None:
    """The storage recorded in the database, or None (a database older than the record)."""
    return conn.execute(select(Meta.value).where(Meta.key == META_KEY)).scalar()


def _record(conn: Connection, storage: str) -> None:
    """Record ``storage`` unless one is already (a racing process may have won)."""
    conn.execute(
        db.insert_ignoring_conflicts(conn, Meta.__table__).values(key=META_KEY, value=storage)
    )


def mismatch_message(recorded_storage: str, own: str) -> str:
    return (
        f"storage mismatch: this database's files are in {recorded_storage} (recorded in the "
        f"database), this process's storage is {own}: set storage.root (and "
        "storage.endpoint_url) to the recorded one, or after moving the files there run "
        "`photoctl init --move-storage`"
    )


def ensure_same(settings: Settings, engine: Engine, *, record: bool = True) -> str:
    """This process's storage, when it is the recorded one; StorageMismatch (exit 2) otherwise.

    With ``record`` a database without a recorded storage gets this one (the rule in the
    module docstring); without it (a dry run, a check) nothing is written.
    """
    own = identity(settings)
    if record:
        with db.write(engine) as conn:
            _record(conn, own)
            found = recorded(conn)
    else:
        with db.read(engine) as conn:
            found = recorded(conn)
    if found is not None and found != own:
        raise StorageMismatch(mismatch_message(found, own))
    return own


SAMPLE = 20


def missing_from_store(settings: Settings, engine: Engine) -> tuple[int, int]:
    """(thumbnails looked for, of which missing) in this process's store: a sample of the
    newest photos' thumbnails, so that a move recorded before the files were copied shows."""
    from photoctl.storage import open_store

    with db.read(engine) as conn:
        keys = (
            conn.execute(
                select(Photo.thumb_path)
                .where(Photo.thumb_path.is_not(None))
                .order_by(Photo.id.desc())
                .limit(SAMPLE)
            )
            .scalars()
            .all()
        )
    store = open_store(settings)
    return len(keys), sum(1 for key in keys if key is not None and not store.exists(key))


def move(settings: Settings, engine: Engine) -> tuple[str | None, str]:
    """Record this process's storage as the database's, whatever was: (before, now)."""
    own = identity(settings)
    with db.write(engine) as conn:
        before = recorded(conn)
        if before is None:
            _record(conn, own)
        else:
            conn.execute(update(Meta).where(Meta.key == META_KEY).values(value=own))
    return before, own
