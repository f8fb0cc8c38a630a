"""Accounts: names, hashed API tokens and passwords, enrollment, and deletion of biometric data.

Only hashes are stored. API tokens are long random strings, so one SHA-256 is enough to make a
stolen database useless; passwords are chosen by people, so they get scrypt with a salt.
Enrolling replaces the user's selfie (or adds one more) and matches it against the stored faces
of the user's event at once; deleting a user removes their selfie from the engine's own index
(the event's) before the database rows. Participants who enrolled themselves on an event page
are users too (participants.py); `users list` shows only the accounts operators made.

Login tokens (from /api/login) expire after ``serve.login_token_ttl`` counted from their
creation, so shortening the setting also ends older tokens; logging out, rotating the API token
and deleting the user revoke them. A login for an unknown name, or a user without a password,
still verifies a (dummy) scrypt hash, so the answer time does not tell which names exist.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Select, bindparam, delete, func, select, update

from photoctl import audit, db, decode_memory, event_store, face_store
from photoctl.config import Settings
from photoctl.errors import (
    ConfigError,
    NoFace,
    NotFound,
    PermanentError,
    PhotoctlError,
    SeveralFaces,
)
from photoctl.event_store import Event
from photoctl.face_step import StoredFaces, drop_purged_index
from photoctl.faces import vector_cache
from photoctl.faces.base import FaceEngine
from photoctl.imaging import decode_photo
from photoctl.models import AuditAction, LoginToken, Match, Photo, SelfieFace, User, display_path

if TYPE_CHECKING:  # a type only: importing users need not load diskcache
    from photoctl.cache import ResponseCache

log = logging.getLogger(__name__)
users_table = User.__table__
login_tokens = LoginToken.__table__

_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
# Verified when there is no real hash to verify, so that a wrong name costs as much as a wrong
# password. No password hashes to this digest of zeros (scrypt output is never all zeros).
_DUMMY_HASH = f"scrypt${'5a' * 16}${'00' * 32}"


@dataclass(frozen=True)
class UserInfo:
    id: int
    name: str
    is_admin: bool
    enrolled: bool
    photos: int


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, salt_hex, digest_hex = stored.split("$")
    digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt_hex), **_SCRYPT)
    return hmac.compare_digest(digest.hex(), digest_hex)


def add_user(
    database: Engine, name: str, *, admin: bool = False, password: str | None = None
) -> tuple[int, str]:
    """Create a user; returns (user id, API token). The token is not stored, only its hash."""
    name = name.strip()
    if not name:
        raise ConfigError("a user name cannot be empty")
    token = new_token()
    with db.write(database) as conn:
        if conn.execute(select(users_table.c.id).where(users_table.c.name == name)).first():
            raise ConfigError(f"user {name!r} already exists")
        user_id = conn.execute(
            users_table.insert()
            .values(
                name=name,
                is_admin=admin,
                token_hash=hash_token(token),
                password_hash=hash_password(password) if password else None,
                created_at=time.time(),
            )
            .returning(users_table.c.id)
        ).scalar_one()
    return user_id, token


def user_id_by_name(database: Engine, name: str) -> int:
    with db.read(database) as conn:
        user_id = conn.execute(select(users_table.c.id).where(users_table.c.name == name)).scalar()
    if user_id is None:
        raise NotFound(f"no user {name!r}")
    return user_id


def rotate_token(database: Engine, name: str) -> str:
    """A new token for the user; the old one and every login token stop working at once."""
    user_id = user_id_by_name(database, name)
    token = new_token()
    with db.write(database) as conn:
        conn.execute(
            update(users_table)
            .where(users_table.c.id == user_id)
            .values(token_hash=hash_token(token))
        )
        # A rotation is what an operator does after a leak: tokens from /api/login go too.
        conn.execute(delete(login_tokens).where(login_tokens.c.user_id == user_id))
    return token


def _user_infos() -> Select[Any]:  # the columns of UserInfo
    selfies, matches = SelfieFace.__table__, Match.__table__
    enrolled = select(func.count()).where(selfies.c.user_id == users_table.c.id).scalar_subquery()
    photos = select(func.count()).where(matches.c.user_id == users_table.c.id).scalar_subquery()
    return select(users_table.c.id, users_table.c.name, users_table.c.is_admin, enrolled, photos)


def list_users(database: Engine) -> list[UserInfo]:
    """The accounts operators made (participants of events are counted by `events list`)."""
    with db.read(database) as conn:
        rows = conn.execute(
            _user_infos()
            .where(users_table.c.gallery_token_hash.is_(None))
            .order_by(users_table.c.name)
        )
        return [UserInfo(r[0], r[1], bool(r[2]), r[3] > 0, r[4]) for r in rows]


@dataclass(frozen=True)
class UserPhoto:
    id: int
    filename: str
    album: str | None
    similarity: float
    matched_at: float


def show_user(database: Engine, name: str) -> tuple[UserInfo, list[UserPhoto]]:
    """A user and every photo they are matched in, newest photo first."""
    matches, photos = Match.__table__, Photo.__table__
    with db.read(database) as conn:
        row = conn.execute(_user_infos().where(users_table.c.name == name)).first()
        if row is None:
            raise NotFound(f"no user {name!r}")
        rows = conn.execute(
            select(
                photos.c.id,
                photos.c.filename,
                photos.c.album,
                matches.c.similarity,
                matches.c.matched_at,
            )
            .select_from(matches.join(photos, photos.c.id == matches.c.photo_id))
            .where(matches.c.user_id == row[0])
            .order_by(photos.c.id.desc())
        ).all()
    info = UserInfo(row[0], row[1], bool(row[2]), row[3] > 0, row[4])
    return info, [UserPhoto(*r) for r in rows]


def enroll(
    database: Engine,
    engine: FaceEngine,
    settings: Settings,
    name: str,
    selfie: Path,
    *,
    largest: bool = True,
) -> int:
    """Enroll (or re-enroll) a user's selfie and match it against every stored face.

    ``largest=False`` refuses a selfie with several faces (SeveralFaces) instead of taking the
    largest one: the CLI asks for it, so an operator never enrolls a bystander by mistake.
    Returns how many photos the user is now matched in.
    """
    return enroll_selfie(
        database, engine, settings, user_id_by_name(database, name), selfie, largest=largest
    )


def enroll_selfie(
    database: Engine,
    engine: FaceEngine,
    settings: Settings,
    user_id: int,
    selfie: Path,
    *,
    largest: bool = True,
    replace: bool = True,
) -> int:
    """Enroll a selfie of a user and match it against the stored faces of the user's event.

    ``replace`` drops the user's earlier selfies and matches first (a new selfie may not match
    the old photos: they are matched again from scratch); without it the selfie is one more,
    matched on its own, and every match found before stays. Returns how many photos the user
    is now matched in. NoFace or SeveralFaces leave nothing stored.
    """
    with db.read(database) as conn:
        event = event_store.event_of_user(conn, user_id)
    if event is None:
        raise NotFound(f"no user with id {user_id}")
    if event.purged_at is not None:
        # Its photos get no faces any more: a selfie would match nothing and be purged again.
        raise PermanentError(
            f"event {event.slug!r} was purged on {event.face_data_deleted_on}: no face data is "
            "taken for it any more"
        )
    engine = engine.for_event(event.slug)
    shown = display_path(str(selfie))
    decoded = decode_photo(
        selfie,
        preview_px=settings.storage.preview_px,
        max_bytes=settings.ingest.max_bytes,
        max_pixels=settings.ingest.max_pixels,
        display_name=shown,
        detail_px=engine.detail_px,
    )
    try:
        record = engine.index_selfie(user_id, decoded.sharpest, allow_several=largest)
    except SeveralFaces as several:
        raise SeveralFaces(several.count, shown) from None
    # The decoded images are no longer needed: serve's decode slot goes to the next selfie
    # while this one is stored and matched.
    del decoded
    decode_memory.decoded()
    if record is None:
        raise NoFace(f"{shown}: no face found in the selfie")
    replaced: list[str] = []
    with db.write(database) as conn:
        # A purge, an erasure or a deletion that came meanwhile: keep nothing (see
        # event_store.takes_face_data and face_store.store_matches).
        purged = not event_store.takes_face_data(conn, event.id)
        erased = not purged and not face_store.users_taking_face_data(conn, [user_id])
        if purged or erased:
            selfie_face = None
        elif replace:
            selfie_face, replaced = face_store.replace_selfie(conn, engine.name, user_id, record)
        else:
            selfie_face = face_store.add_selfie(conn, engine.name, user_id, record)
    if purged:
        drop_purged_index(engine, event.slug, f"the enrollment of user {user_id}")
        raise _purged_meanwhile(event.slug)
    if selfie_face is None:
        if record.external_id:
            engine.forget([record.external_id])
        raise PermanentError(
            f"user {user_id} was erased or deleted during the enrollment: nothing of it is kept"
        )
    if replaced:
        engine.forget(replaced)
    with db.write(database) as conn:
        if replace:
            conn.execute(delete(Match.__table__).where(Match.__table__.c.user_id == user_id))
        conn.execute(
            update(users_table).where(users_table.c.id == user_id).values(enrolled_at=time.time())
        )
    # After the selfie's commit: a photo whose faces commit later matches it in its own job.
    found = engine.match_selfie(selfie_face, StoredFaces(database, event.id))
    if found:
        with db.write(database) as conn:
            purged = not event_store.takes_face_data(conn, event.id)
            if not purged:
                face_store.store_matches(conn, found, source="selfie")
        if purged:
            # The selfie committed before the purge's mark: the purge deleted it.
            raise _purged_meanwhile(event.slug)
    with db.read(database) as conn:
        return len(face_store.photos_of_user(conn, user_id))


def forget_late_selfies(engine: FaceEngine | None, event: Event | None, late: list[str]) -> None:
    """Take out of the engine's index the selfie faces stored while their user was being erased
    or deleted: after the ids it forgot were read, before the rows went (under the user's row
    lock no later selfie is stored). Rare; a failure is logged, not raised: the rows are gone,
    and the face goes with the event's index at its purge."""
    if not late:
        return
    try:
        if engine is None or event is None:
            raise ConfigError("no face engine to reach them")
        engine.for_event(event.slug).forget(late)
    except PhotoctlError as error:
        log.error(
            "[Users] %d selfie faces stored during an erasure are still in the face engine's "
            "index (%s): they go with the event's index at its purge",
            len(late),
            error,
        )


def _purged_meanwhile(slug: str) -> PermanentError:
    return PermanentError(f"event {slug!r} was purged during the enrollment: nothing of it is kept")


def delete_user(
    database: Engine,
    engine: FaceEngine | None,
    name: str,
    cache: ResponseCache | None = None,
) -> None:
    """Delete a user, their selfie (in the engine's index too), matches and login tokens, and
    drop their cached lists from ``cache`` (which must be scoped to this database)."""
    user_id = user_id_by_name(database, name)
    with db.read(database) as conn:
        external_ids = face_store.selfie_external_ids(conn, user_id)
        event = event_store.event_of_user(conn, user_id)
    if external_ids and event is not None:
        if engine is None:
            raise ConfigError("this user's selfie is held by a face engine; give --engine")
        engine.for_event(event.slug).forget(external_ids)
    with db.write(database) as conn:
        # The row first, as erasure does (participants.erase_participant).
        conn.execute(select(users_table.c.id).where(users_table.c.id == user_id).with_for_update())
        late = face_store.selfie_external_ids(conn, user_id, besides=external_ids)
        # The foreign key cascades too; said here so revocation does not hang on a pragma.
        conn.execute(delete(login_tokens).where(login_tokens.c.user_id == user_id))
        # The selfies go by the cascade: every process drops the event's selfie vectors.
        vector_cache.bump_user_event(conn, user_id, selfies_deleted=True)
        conn.execute(delete(users_table).where(users_table.c.id == user_id))
        if event is not None:
            # The user's face data goes with them: an erasure, done by the operator.
            audit.record(conn, event.id, AuditAction.ERASE, user_id, by="operator", user_deleted=1)
    # After the commit: no earlier version of the deleted rows stays in SQLite's WAL.
    db.truncate_wal(database)
    forget_late_selfies(engine, event, late)
    if cache is not None:
        # After the commit: a request racing the delete could otherwise cache the list again.
        cache.forget_users([user_id])


@functools.cache
def _api_token_query() -> Select[Any]:
    # Asked by every authenticated request; built once, since building a select costs about as
    # much as running this one.
    return select(users_table.c.id, users_table.c.name, users_table.c.is_admin).where(
        users_table.c.token_hash == bindparam("digest")
    )


def user_by_token(
    database: Engine, token: str, login_ttl_seconds: float
) -> tuple[int, str, bool] | None:
    """(id, name, is_admin) of the user holding this API token or an unexpired login token."""
    digest = hash_token(token)
    columns = (users_table.c.id, users_table.c.name, users_table.c.is_admin)
    with db.read(database) as conn:
        row = conn.execute(_api_token_query(), {"digest": digest}).first()
        if row is None:
            row = conn.execute(
                select(*columns)
                .select_from(
                    users_table.join(login_tokens, login_tokens.c.user_id == users_table.c.id)
                )
                .where(
                    login_tokens.c.token_hash == digest,
                    login_tokens.c.created_at > time.time() - login_ttl_seconds,
                )
            ).first()
    return None if row is None else (row[0], row[1], bool(row[2]))


def login(database: Engine, name: str, password: str, login_ttl_seconds: float) -> str | None:
    """A new login token if the name and password are right, else None.

    Takes as long for a name that does not exist (or has no password) as for a wrong password.
    """
    with db.read(database) as conn:
        row = conn.execute(
            select(users_table.c.id, users_table.c.password_hash).where(users_table.c.name == name)
        ).first()
    user_id, password_hash = (row[0], row[1]) if row is not None else (None, None)
    known = user_id is not None and bool(password_hash)
    # The dummy hash is verified too (and always fails) so that this costs one scrypt either way.
    matches = verify_password(password, password_hash if known else _DUMMY_HASH)
    if not (known and matches):
        return None
    token = new_token()
    now = time.time()
    with db.write(database) as conn:
        # Expired tokens are refused anyway; logins are rare enough to sweep them here.
        conn.execute(
            delete(login_tokens).where(login_tokens.c.created_at <= now - login_ttl_seconds)
        )
        conn.execute(
            login_tokens.insert().values(
                token_hash=hash_token(token), user_id=user_id, created_at=now
            )
        )
    return token


def logout(database: Engine, token: str) -> bool:
    """Revoke a login token; False when it is not one (API tokens are rotated, not revoked)."""
    with db.write(database) as conn:
        removed = conn.execute(
            delete(login_tokens).where(login_tokens.c.token_hash == hash_token(token))
        ).rowcount
    return removed > 0


def add_user_with_selfie(
    database: Engine,
    engine: FaceEngine,
    settings: Settings,
    name: str,
    selfie: Path,
    *,
    admin: bool = False,
    password: str | None = None,
    largest: bool = True,
) -> tuple[int, str, int]:
    """Create a user and enroll their selfie, or neither: (user id, API token, photos matched).

    The token is only ever shown once the whole call succeeds, so a user left behind by a failed
    enrollment (no face, several faces, an unreadable file) would be an account nobody can use,
    whose name is taken: it is deleted again, with whatever the engine indexed, before the error
    goes on to the caller.
    """
    user_id, token = add_user(database, name, admin=admin, password=password)
    try:
        count = enroll(database, engine, settings, name, selfie, largest=largest)
    except PhotoctlError:
        delete_user(database, engine, name)
        raise
    return user_id, token, count
