"""Faces and matches in the database, in both directions: new photo -> users, new selfie -> photos.

The order of writes closes the race between a photo and an enrollment processed at the same
time: a photo's faces are committed before enrolled users are read, and a selfie is committed
before stored faces are read, so whichever commits second sees the other. Faces are stored with
a checkpoint (``photos.faces_engine``): a job run again after a crash reuses them instead of
asking the engine again, which for Rekognition means no second IndexFaces of the same photo.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from PIL import Image
from sqlalchemy import ColumnElement, Connection, Engine, delete, select, update

from photoctl import db
from photoctl.catalog import PhotoRecord
from photoctl.faces.base import EnrolledFace, FaceEngine, FaceMatch, FaceRecord, StoredFace
from photoctl.imaging import DecodedPhoto
from photoctl.models import Face, Match, Photo, SelfieFace
from photoctl.pipeline import FaceSummary

faces_table = Face.__table__
matches_table = Match.__table__
photos_table = Photo.__table__
selfies_table = SelfieFace.__table__


class FaceStore:
    """Stored faces, read for engines (implements faces.base.FaceLookup)."""

    def __init__(self, database: Engine) -> None:
        self.database = database

    def all_faces(self, engine: str) -> list[StoredFace]:
        with db.read(self.database) as conn:
            return _stored_faces(conn, faces_table.c.engine == engine)

    def faces_by_external_id(self, external_ids: Sequence[str]) -> list[StoredFace]:
        found: list[StoredFace] = []
        with db.read(self.database) as conn:
            for start in range(0, len(external_ids), 500):
                chunk = list(external_ids[start : start + 500])
                found.extend(_stored_faces(conn, faces_table.c.external_id.in_(chunk)))
        return found


def _stored_faces(conn: Connection, *conditions: ColumnElement[bool]) -> list[StoredFace]:
    rows = conn.execute(
        select(
            faces_table.c.id,
            faces_table.c.photo_id,
            faces_table.c.embedding,
            faces_table.c.external_id,
        )
        .where(*conditions)
        .order_by(faces_table.c.face_index)
    )
    return [StoredFace(r.id, r.photo_id, _bytes(r.embedding), r.external_id) for r in rows]


def _bytes(value: bytes | memoryview | None) -> bytes | None:
    return None if value is None else bytes(value)


def _pending(engine_name: str) -> str:
    return f"{engine_name}:pending"


def photo_faces(
    database: Engine, engine: FaceEngine, photo: PhotoRecord, image_of: Callable[[], Image.Image]
) -> list[StoredFace]:
    """The photo's faces for this engine: stored ones if checkpointed, else found and stored."""
    with db.read(database) as conn:
        checkpoint = conn.execute(
            select(photos_table.c.faces_engine).where(photos_table.c.id == photo.id)
        ).scalar()
        if checkpoint == engine.name:
            return _load_photo_faces(conn, photo.id, engine.name)
    if checkpoint == _pending(engine.name):
        # An earlier attempt may have indexed the photo and died before storing the answer.
        engine.discard_photo_faces(photo.id)
    elif engine.keeps_index:
        with db.write(database) as conn:
            conn.execute(
                update(photos_table)
                .where(photos_table.c.id == photo.id)
                .values(faces_engine=_pending(engine.name))
            )
    records = engine.index_photo(photo.id, image_of())
    with db.write(database) as conn:
        _store_faces(conn, database, photo.id, engine.name, records)
        conn.execute(
            update(photos_table)
            .where(photos_table.c.id == photo.id)
            .values(faces_engine=engine.name)
        )
        return _load_photo_faces(conn, photo.id, engine.name)


def forget_photo_faces(conn: Connection, photo_id: int) -> None:
    """Drop a photo's stored faces and matches: its file now holds other content.

    A pending checkpoint is kept, so that an engine with an index (Rekognition) still discards
    what an interrupted attempt indexed before indexing the new content.
    """
    checkpoint = conn.execute(
        select(photos_table.c.faces_engine).where(photos_table.c.id == photo_id)
    ).scalar()
    conn.execute(delete(matches_table).where(matches_table.c.photo_id == photo_id))
    conn.execute(delete(faces_table).where(faces_table.c.photo_id == photo_id))
    if checkpoint is not None and not checkpoint.endswith(":pending"):
        conn.execute(
            update(photos_table).where(photos_table.c.id == photo_id).values(faces_engine=None)
        )


def _store_faces(
    conn: Connection,
    database: Engine,
    photo_id: int,
    engine_name: str,
    records: Sequence[FaceRecord],
) -> None:
    rows = [
        {
            "photo_id": photo_id,
            "engine": engine_name,
            "face_index": index,
            "box_left": r.box[0],
            "box_top": r.box[1],
            "box_width": r.box[2],
            "box_height": r.box[3],
            "score": r.score,
            "embedding": r.embedding,
            "external_id": r.external_id,
        }
        for index, r in enumerate(records)
    ]
    if rows:
        conn.execute(db.insert_ignoring_conflicts(database, faces_table), rows)


def _load_photo_faces(conn: Connection, photo_id: int, engine_name: str) -> list[StoredFace]:
    return _stored_faces(
        conn, faces_table.c.photo_id == photo_id, faces_table.c.engine == engine_name
    )


def enrolled_faces(database: Engine, engine_name: str) -> list[EnrolledFace]:
    with db.read(database) as conn:
        rows = conn.execute(
            select(
                selfies_table.c.user_id, selfies_table.c.embedding, selfies_table.c.external_id
            ).where(selfies_table.c.engine == engine_name)
        )
        return [EnrolledFace(r.user_id, _bytes(r.embedding), r.external_id) for r in rows]


def store_matches(
    database: Engine,
    matches: Sequence[FaceMatch],
    now: float | None = None,
    *,
    source: str = "photo",
) -> list[int]:
    """Record matches once per (photo, user); returns the users that gained a photo.

    Matches from a photo become findable when its job commits (``mark_findable``); matches
    from an enrollment are findable at once.
    """
    now = time.time() if now is None else now
    best: dict[tuple[int, int], FaceMatch] = {}
    with db.write(database) as conn:
        photo_of: dict[int, int] = {}
        face_ids = sorted({m.face_id for m in matches})
        for start in range(0, len(face_ids), 500):
            chunk = face_ids[start : start + 500]
            photo_of.update(
                conn.execute(
                    select(faces_table.c.id, faces_table.c.photo_id).where(
                        faces_table.c.id.in_(chunk)
                    )
                ).all()
            )
        for match in matches:
            key = (photo_of[match.face_id], match.user_id)
            if key not in best or match.similarity > best[key].similarity:
                best[key] = match
        rows = [
            {
                "photo_id": photo_id,
                "user_id": user_id,
                "face_id": m.face_id,
                "similarity": m.similarity,
                "matched_at": now,
                "source": source,
                "findable_at": now if source == "selfie" else None,
            }
            for (photo_id, user_id), m in best.items()
        ]
        gained: list[int] = []
        for start in range(0, len(rows), 500):
            inserted = conn.execute(
                db.insert_ignoring_conflicts(database, matches_table).returning(
                    matches_table.c.user_id
                ),
                rows[start : start + 500],
            )
            gained.extend(inserted.scalars())
    return sorted(set(gained))


class FaceStep:
    """The pipeline's face step for one engine (implements pipeline.FaceStep)."""

    def __init__(self, database: Engine, engine: FaceEngine) -> None:
        self.database = database
        self.engine = engine
        self.detail_px = engine.detail_px

    def run(self, photo: PhotoRecord, decoded: DecodedPhoto) -> FaceSummary:
        faces = photo_faces(self.database, self.engine, photo, lambda: decoded.sharpest)
        if not faces:
            return FaceSummary()
        matches = self.engine.match_faces(faces, enrolled_faces(self.database, self.engine.name))
        if matches:
            store_matches(self.database, matches)
        users = tuple(sorted({m.user_id for m in matches}))
        return FaceSummary(faces=len(faces), matches=len(users), user_ids=users)


def mark_findable(conn: Connection, photo_id: int, now: float) -> None:
    """In the job's final transaction: the photo's matches are visible from now on."""
    conn.execute(
        update(matches_table)
        .where(matches_table.c.photo_id == photo_id, matches_table.c.findable_at.is_(None))
        .values(findable_at=now)
    )


def findable_seconds(conn: Connection, since: float, limit: int = 10000) -> list[float]:
    """Seconds from ingest to findable, for photo matches that became findable since ``since``."""
    rows = conn.execute(
        select(matches_table.c.findable_at - photos_table.c.ingested_at)
        .select_from(
            matches_table.join(photos_table, photos_table.c.id == matches_table.c.photo_id)
        )
        .where(matches_table.c.source == "photo", matches_table.c.findable_at >= since)
        .order_by(matches_table.c.findable_at.desc())
        .limit(limit)
    ).scalars()
    return [max(0.0, float(value)) for value in rows]


def replace_selfie(
    database: Engine, engine_name: str, user_id: int, record: FaceRecord, now: float | None = None
) -> tuple[EnrolledFace, list[str]]:
    """Store a user's new selfie face; returns it and the engine ids of the faces it replaced."""
    now = time.time() if now is None else now
    with db.write(database) as conn:
        old = (
            conn.execute(
                select(selfies_table.c.external_id).where(
                    selfies_table.c.user_id == user_id, selfies_table.c.external_id.is_not(None)
                )
            )
            .scalars()
            .all()
        )
        conn.execute(delete(selfies_table).where(selfies_table.c.user_id == user_id))
        conn.execute(
            selfies_table.insert().values(
                user_id=user_id,
                engine=engine_name,
                embedding=record.embedding,
                external_id=record.external_id,
                created_at=now,
            )
        )
    return EnrolledFace(user_id, record.embedding, record.external_id), list(old)


def selfie_external_ids(database: Engine, user_id: int) -> list[str]:
    with db.read(database) as conn:
        return list(
            conn.execute(
                select(selfies_table.c.external_id).where(
                    selfies_table.c.user_id == user_id, selfies_table.c.external_id.is_not(None)
                )
            ).scalars()
        )


def photos_of_user(database: Engine, user_id: int) -> list[tuple[int, float]]:
    """(photo id, similarity) of every photo the user was matched in."""
    with db.read(database) as conn:
        return [
            tuple(row)
            for row in conn.execute(
                select(matches_table.c.photo_id, matches_table.c.similarity)
                .where(matches_table.c.user_id == user_id)
                .order_by(matches_table.c.photo_id)
            )
        ]
