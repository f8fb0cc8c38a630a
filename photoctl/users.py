"""Accounts: names, hashed API tokens and passwords, enrollment, and deletion of biometric data.

Only hashes are stored. API tokens are long random strings, so one SHA-256 is enough to make a
stolen database useless; passwords are chosen by people, so they get scrypt with a salt.
Enrolling replaces the user's selfie and matches it against every stored face at once;
deleting a user removes their selfie from the engine's own index before the database rows.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, delete, func, select, update

from photoctl import db, matching
from photoctl.config import Settings
from photoctl.errors import ConfigError, NotFound, PermanentError
from photoctl.faces.base import FaceEngine
from photoctl.imaging import decode_photo
from photoctl.models import LoginToken, Match, SelfieFace, User, display_path

users_table = User.__table__

_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


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
    """A new token for the user; the old one stops working at once."""
    user_id = user_id_by_name(database, name)
    token = new_token()
    with db.write(database) as conn:
        conn.execute(
            update(users_table)
            .where(users_table.c.id == user_id)
            .values(token_hash=hash_token(token))
        )
    return token


def list_users(database: Engine) -> list[UserInfo]:
    selfies, matches = SelfieFace.__table__, Match.__table__
    enrolled = select(func.count()).where(selfies.c.user_id == users_table.c.id).scalar_subquery()
    photos = select(func.count()).where(matches.c.user_id == users_table.c.id).scalar_subquery()
    with db.read(database) as conn:
        rows = conn.execute(
            select(
                users_table.c.id, users_table.c.name, users_table.c.is_admin, enrolled, photos
            ).order_by(users_table.c.name)
        )
        return [UserInfo(r[0], r[1], bool(r[2]), r[3] > 0, r[4]) for r in rows]


def enroll(
    database: Engine, engine: FaceEngine, settings: Settings, name: str, selfie: Path
) -> int:
    """Enroll (or re-enroll) a user's selfie and match it against every stored face.

    Returns how many photos the user is now matched in.
    """
    user_id = user_id_by_name(database, name)
    shown = display_path(str(selfie))
    decoded = decode_photo(
        selfie,
        preview_px=settings.storage.preview_px,
        max_bytes=settings.ingest.max_bytes,
        max_pixels=settings.ingest.max_pixels,
        display_name=shown,
        detail_px=engine.detail_px,
    )
    record = engine.index_selfie(user_id, decoded.sharpest)
    if record is None:
        raise PermanentError(f"{shown}: no face found in the selfie")
    selfie_face, replaced = matching.replace_selfie(database, engine.name, user_id, record)
    if replaced:
        engine.forget(replaced)
    with db.write(database) as conn:
        # A new selfie may not match the old photos: they are matched again from scratch.
        conn.execute(delete(Match.__table__).where(Match.__table__.c.user_id == user_id))
        conn.execute(
            update(users_table).where(users_table.c.id == user_id).values(enrolled_at=time.time())
        )
    found = engine.match_selfie(selfie_face, matching.FaceStore(database))
    if found:
        matching.store_matches(database, found, source="selfie")
    return len(matching.photos_of_user(database, user_id))


def delete_user(database: Engine, engine: FaceEngine | None, name: str) -> None:
    """Delete a user, their selfie (in the engine's index too) and their matches."""
    user_id = user_id_by_name(database, name)
    external_ids = matching.selfie_external_ids(database, user_id)
    if external_ids:
        if engine is None:
            raise ConfigError("this user's selfie is held by a face engine; give --engine")
        engine.forget(external_ids)
    with db.write(database) as conn:
        conn.execute(delete(users_table).where(users_table.c.id == user_id))


def user_by_token(database: Engine, token: str) -> tuple[int, str, bool] | None:
    """(id, name, is_admin) of the user holding this API or login token, or None."""
    digest = hash_token(token)
    login_tokens = LoginToken.__table__
    with db.read(database) as conn:
        row = conn.execute(
            select(users_table.c.id, users_table.c.name, users_table.c.is_admin).where(
                users_table.c.token_hash == digest
            )
        ).first()
        if row is None:
            row = conn.execute(
                select(users_table.c.id, users_table.c.name, users_table.c.is_admin)
                .select_from(
                    users_table.join(login_tokens, login_tokens.c.user_id == users_table.c.id)
                )
                .where(login_tokens.c.token_hash == digest)
            ).first()
    return None if row is None else (row[0], row[1], bool(row[2]))


def login(database: Engine, name: str, password: str) -> str | None:
    """A new login token if the name and password are right, else None."""
    with db.read(database) as conn:
        row = conn.execute(
            select(users_table.c.id, users_table.c.password_hash).where(users_table.c.name == name)
        ).first()
    if row is None or not verify_password(password, row[1]):
        return None
    token = new_token()
    with db.write(database) as conn:
        conn.execute(
            LoginToken.__table__.insert().values(
                token_hash=hash_token(token), user_id=row[0], created_at=time.time()
            )
        )
    return token
