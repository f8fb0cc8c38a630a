"""Faces, selfies and matches in the database: the queries, and nothing else.

A query module (see db.py): every function takes the caller's Connection and never commits, so
the caller decides what one transaction holds. face_step.py runs the pipeline's face step on
these queries, users.py enrollment and deletion, changed_files.py forgets the faces of a photo
whose content changed, and the worker publishes a photo's matches with ``mark_findable``.

``photos.faces_engine`` is the face checkpoint: the name of the engine whose faces of the photo
are stored, or ``<engine>:pending`` while an engine that keeps its own index (Rekognition) may
hold faces of the photo that are not stored here yet. face_step.py decides when it changes.

Matching is scoped by event: the enrolled faces a photo is matched against, and the stored
faces a selfie is matched against, are those of one event. A rejection ("not me") keeps a
(user, photo) pair from ever being stored as a match again, whichever side matched it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, select, tuple_, update

from photoctl import db
from photoctl.faces import vector_cache
from photoctl.faces.base import EnrolledFace, FaceMatch, FaceRecord, StoredFace
from photoctl.models import Face, Match, Photo, Rejection, SelfieFace, User

faces_table = Face.__table__
matches_table = Match.__table__
photos_table = Photo.__table__
selfies_table = SelfieFace.__table__
rejections_table = Rejection.__table__
users_table = User.__table__

_IN_CHUNK = 500  # bound parameters per IN (...) list
_PENDING = ":pending"

# The statements every photo job runs, built once and run with parameters: building a statement
# and its cache key cost more CPU than running it on SQLite (scripts/bench_faces.py --part
# rekognition, where the workers' CPU per photo is what limits the calls per second).
_CHECKPOINT = select(photos_table.c.faces_engine).where(photos_table.c.id == bindparam("photo"))
_SET_CHECKPOINT = (
    update(photos_table)
    .where(photos_table.c.id == bindparam("photo"))
    .values(faces_engine=bindparam("checkpoint"))
)
_FACE_COLUMNS = (
    faces_table.c.id,
    faces_table.c.photo_id,
    faces_table.c.embedding,
    faces_table.c.external_id,
    faces_table.c.box_left,
    faces_table.c.box_top,
    faces_table.c.box_width,
    faces_table.c.box_height,
)
_PHOTO_FACES = (
    select(*_FACE_COLUMNS)
    .where(faces_table.c.photo_id == bindparam("photo"), faces_table.c.engine == bindparam("name"))
    .order_by(faces_table.c.face_index)
)
_ENROLLED = (
    select(selfies_table.c.user_id, selfies_table.c.embedding, selfies_table.c.external_id)
    .select_from(selfies_table.join(users_table, users_table.c.id == selfies_table.c.user_id))
    .where(
        selfies_table.c.engine == bindparam("name"),
        users_table.c.event_id == bindparam("event"),
        users_table.c.erased_at.is_(None),
    )
)
_MARK_FINDABLE = (
    update(matches_table)
    .where(matches_table.c.photo_id == bindparam("photo"), matches_table.c.findable_at.is_(None))
    .values(findable_at=bindparam("now"))
)


def pending_checkpoint(engine_name: str) -> str:
    """The checkpoint of a photo the engine may have indexed without its faces being stored."""
    return f"{engine_name}{_PENDING}"


def faces_checkpoint(conn: Connection, photo_id: int) -> str | None:
    return conn.execute(_CHECKPOINT, {"photo": photo_id}).scalar()


def set_faces_checkpoint(conn: Connection, photo_id: int, checkpoint: str | None) -> None:
    conn.execute(_SET_CHECKPOINT, {"photo": photo_id, "checkpoint": checkpoint})


def _stored_faces(conn: Connection, *conditions: Any) -> list[StoredFace]:
    rows = conn.execute(
        select(*_FACE_COLUMNS).where(*conditions).order_by(faces_table.c.face_index)
    )
    return _faces_of(rows)


def _faces_of(rows: Any) -> list[StoredFace]:
    return [
        StoredFace(
            r.id,
            r.photo_id,
            _bytes(r.embedding),
            r.external_id,
            (r.box_left, r.box_top, r.box_width, r.box_height),
        )
        for r in rows
    ]


def _bytes(value: bytes | memoryview | None) -> bytes | None:
    return None if value is None else bytes(value)


def _in_event(event_id: int) -> Any:
    """The condition "the face's photo belongs to this event"."""
    return exists().where(
        and_(photos_table.c.id == faces_table.c.photo_id, photos_table.c.event_id == event_id)
    )


def all_faces(conn: Connection, engine_name: str, event_id: int) -> list[StoredFace]:
    """Every stored face an engine found in the photos of one event."""
    return _stored_faces(conn, faces_table.c.engine == engine_name, _in_event(event_id))


def faces_by_external_id(
    conn: Connection, external_ids: Sequence[str], event_id: int
) -> list[StoredFace]:
    """The stored faces of one event's photos with these engine face ids (Rekognition)."""
    found: list[StoredFace] = []
    for start in range(0, len(external_ids), _IN_CHUNK):
        chunk = list(external_ids[start : start + _IN_CHUNK])
        found.extend(_stored_faces(conn, faces_table.c.external_id.in_(chunk), _in_event(event_id)))
    return found


def photo_faces(conn: Connection, photo_id: int, engine_name: str) -> list[StoredFace]:
    """The stored faces of one photo found by one engine."""
    return _faces_of(conn.execute(_PHOTO_FACES, {"photo": photo_id, "name": engine_name}))


def store_faces(
    conn: Connection,
    photo_id: int,
    engine_name: str,
    records: Sequence[FaceRecord],
    *,
    event_id: int,
) -> None:
    """Store what an engine found in a photo; faces stored already (a rerun) are kept.

    The event's face version is bumped first (vector_cache.bump: its lock keeps ids in order).
    """
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
        vector_cache.bump(conn, event_id, faces=True)
        conn.execute(db.insert_ignoring_conflicts(conn, faces_table), rows)


def forget_photo_faces(conn: Connection, photo_id: int) -> None:
    """Drop a photo's stored faces and matches: its file now holds other content.

    A pending checkpoint is kept, so that an engine with an index (Rekognition) still discards
    what an interrupted attempt indexed before indexing the new content.
    """
    checkpoint = faces_checkpoint(conn, photo_id)
    vector_cache.bump_photos_events(conn, [photo_id])
    conn.execute(delete(matches_table).where(matches_table.c.photo_id == photo_id))
    conn.execute(delete(faces_table).where(faces_table.c.photo_id == photo_id))
    if checkpoint is not None and not checkpoint.endswith(_PENDING):
        set_faces_checkpoint(conn, photo_id, None)


def enrolled_faces(conn: Connection, engine_name: str, event_id: int) -> list[EnrolledFace]:
    """The selfie faces of one event's users, as the engine stored them."""
    rows = conn.execute(_ENROLLED, {"name": engine_name, "event": event_id})
    return [EnrolledFace(r.user_id, _bytes(r.embedding), r.external_id) for r in rows]


def store_matches(
    conn: Connection,
    matches: Sequence[FaceMatch],
    now: float | None = None,
    *,
    source: str = "photo",
) -> list[int]:
    """Record matches once per (photo, user); returns the users that gained a photo.

    Matches from a photo are stored not yet findable (``findable_at`` NULL): the job's final
    transaction publishes them (``mark_findable``). Matches from an enrollment are findable at
    once. A match stored already (a rerun) is kept as it is; a rejected pair is never stored,
    nor a match of a user erased or deleted since the caller read who is enrolled.

    The users' rows are share-locked first (PostgreSQL; SQLite's write lock already serializes):
    "not me" (reject_match), erasure (participant_store.mark_erased) and deletion each lock the
    row before they write, so either they wait for this transaction and then remove what it
    stored, or it waits for them and then sees the rejection or the erasure.
    """
    now = time.time() if now is None else now
    best: dict[tuple[int, int], FaceMatch] = {}
    photo_of: dict[int, int] = {}
    face_ids = sorted({m.face_id for m in matches})
    for start in range(0, len(face_ids), _IN_CHUNK):
        chunk = face_ids[start : start + _IN_CHUNK]
        photo_of.update(
            conn.execute(
                select(faces_table.c.id, faces_table.c.photo_id).where(faces_table.c.id.in_(chunk))
            ).all()
        )
    for match in matches:
        key = (photo_of[match.face_id], match.user_id)
        if key not in best or match.similarity > best[key].similarity:
            best[key] = match
    live = users_taking_face_data(conn, sorted({user_id for _, user_id in best}))
    best = {key: match for key, match in best.items() if key[1] in live}
    rejected = rejected_pairs(conn, list(best))
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
        if (photo_id, user_id) not in rejected
    ]
    gained: list[int] = []
    for start in range(0, len(rows), _IN_CHUNK):
        inserted = conn.execute(
            db.insert_ignoring_conflicts(conn, matches_table).returning(matches_table.c.user_id),
            rows[start : start + _IN_CHUNK],
        )
        gained.extend(inserted.scalars())
    return sorted(set(gained))


def users_taking_face_data(conn: Connection, user_ids: Sequence[int]) -> set[int]:
    """The users among ``user_ids`` that still exist and are not erased, share-locked until the
    transaction ends: asked before storing a match (store_matches) or a selfie (users.py)."""
    live: set[int] = set()
    for chunk in db.in_chunks(user_ids, _IN_CHUNK):
        live.update(
            conn.execute(
                select(users_table.c.id)
                .where(users_table.c.id.in_(list(chunk)), users_table.c.erased_at.is_(None))
                .with_for_update(read=True)
            ).scalars()
        )
    return live


def rejected_pairs(conn: Connection, pairs: Sequence[tuple[int, int]]) -> set[tuple[int, int]]:
    """The (photo id, user id) pairs among ``pairs`` that the user rejected ("not me")."""
    found: set[tuple[int, int]] = set()
    for chunk in db.in_chunks(pairs, _IN_CHUNK // 2):
        found.update(
            (photo_id, user_id)
            for photo_id, user_id in conn.execute(
                select(rejections_table.c.photo_id, rejections_table.c.user_id).where(
                    tuple_(rejections_table.c.photo_id, rejections_table.c.user_id).in_(list(chunk))
                )
            )
        )
    return found


def reject_match(conn: Connection, user_id: int, photo_id: int, now: float) -> bool:
    """ "Not me": drop the user's match in the photo and remember the pair; False if there was
    no such match (then nothing is written)."""
    # The user's row first: a store_matches that read no rejection yet then commits before this
    # delete looks for the match (see store_matches).
    conn.execute(select(users_table.c.id).where(users_table.c.id == user_id).with_for_update())
    removed = conn.execute(
        delete(matches_table).where(
            matches_table.c.user_id == user_id, matches_table.c.photo_id == photo_id
        )
    ).rowcount
    if not removed:
        return False
    conn.execute(
        db.insert_ignoring_conflicts(conn, rejections_table),
        [{"user_id": user_id, "photo_id": photo_id, "created_at": now}],
    )
    return True


def mark_findable(conn: Connection, photo_id: int, now: float) -> None:
    """Publish a photo's matches: called in the job's final transaction, and only there."""
    conn.execute(_MARK_FINDABLE, {"photo": photo_id, "now": now})


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
    conn: Connection,
    engine_name: str,
    user_id: int,
    record: FaceRecord,
    now: float | None = None,
) -> tuple[EnrolledFace, list[str]]:
    """Store a user's new selfie face; returns it and the engine ids of the faces it replaced."""
    old = selfie_external_ids(conn, user_id)
    had = conn.execute(
        select(selfies_table.c.id).where(selfies_table.c.user_id == user_id).limit(1)
    ).first()
    if had is not None:
        # Every process drops this event's selfie vectors: the old one must match no more.
        vector_cache.bump_user_event(conn, user_id, selfies_deleted=True)
        conn.execute(delete(selfies_table).where(selfies_table.c.user_id == user_id))
    return add_selfie(conn, engine_name, user_id, record, now), old


def add_selfie(
    conn: Connection,
    engine_name: str,
    user_id: int,
    record: FaceRecord,
    now: float | None = None,
) -> EnrolledFace:
    """Store one more selfie face of a user (each is matched on its own: better recall)."""
    now = time.time() if now is None else now
    vector_cache.bump_user_event(conn, user_id)
    conn.execute(
        selfies_table.insert().values(
            user_id=user_id,
            engine=engine_name,
            embedding=record.embedding,
            external_id=record.external_id,
            created_at=now,
        )
    )
    return EnrolledFace(user_id, record.embedding, record.external_id)


def selfie_external_ids(conn: Connection, user_id: int, besides: Sequence[str] = ()) -> list[str]:
    """The engine ids of a user's selfie faces (those an engine with an index holds), but
    those in ``besides`` (read earlier: what was stored since)."""
    found = conn.execute(
        select(selfies_table.c.external_id).where(
            selfies_table.c.user_id == user_id, selfies_table.c.external_id.is_not(None)
        )
    ).scalars()
    return [external_id for external_id in found if external_id not in besides]


def photos_of_user(conn: Connection, user_id: int) -> list[tuple[int, float]]:
    """(photo id, similarity) of every photo the user was matched in."""
    return [
        (row.photo_id, row.similarity)
        for row in conn.execute(
            select(matches_table.c.photo_id, matches_table.c.similarity)
            .where(matches_table.c.user_id == user_id)
            .order_by(matches_table.c.photo_id)
        )
    ]


def delete_user_face_data(conn: Connection, user_id: int) -> dict[str, int]:
    """Delete a user's selfie faces, matches and rejections; returns how many of each."""
    vector_cache.bump_user_event(conn, user_id, selfies_deleted=True)
    return {
        "selfies": conn.execute(
            delete(selfies_table).where(selfies_table.c.user_id == user_id)
        ).rowcount,
        "matches": conn.execute(
            delete(matches_table).where(matches_table.c.user_id == user_id)
        ).rowcount,
        "rejections": conn.execute(
            delete(rejections_table).where(rejections_table.c.user_id == user_id)
        ).rowcount,
    }


def _event_users(event_id: int) -> Any:
    return select(users_table.c.id).where(users_table.c.event_id == event_id)


def _event_photos(event_id: int) -> Any:
    return select(photos_table.c.id).where(photos_table.c.event_id == event_id)


def event_indexed_count(conn: Connection, event_id: int) -> int:
    """How many faces and selfie faces of one event an engine with an index holds."""
    photo_faces = conn.execute(
        select(func.count()).where(
            faces_table.c.external_id.is_not(None),
            faces_table.c.photo_id.in_(_event_photos(event_id)),
        )
    ).scalar_one()
    selfies = conn.execute(
        select(func.count()).where(
            selfies_table.c.external_id.is_not(None),
            selfies_table.c.user_id.in_(_event_users(event_id)),
        )
    ).scalar_one()
    return int(photo_faces) + int(selfies)


def delete_event_face_data(conn: Connection, event_id: int) -> dict[str, int]:
    """Delete every face, embedding, selfie face, match and rejection of one event.

    Photos stay; their face checkpoints are cleared, so nothing claims their faces are stored.
    Returns how many rows of each kind went.
    """
    users, photos = _event_users(event_id), _event_photos(event_id)
    # Every process drops the event's vectors when it next reads this version.
    vector_cache.bump(conn, event_id, faces_deleted=True, selfies_deleted=True)
    counts = {
        "matches": conn.execute(
            delete(matches_table).where(
                matches_table.c.user_id.in_(users) | matches_table.c.photo_id.in_(photos)
            )
        ).rowcount,
        "rejections": conn.execute(
            delete(rejections_table).where(
                rejections_table.c.user_id.in_(users) | rejections_table.c.photo_id.in_(photos)
            )
        ).rowcount,
        "selfies": conn.execute(
            delete(selfies_table).where(selfies_table.c.user_id.in_(users))
        ).rowcount,
        "faces": conn.execute(
            delete(faces_table).where(faces_table.c.photo_id.in_(photos))
        ).rowcount,
    }
    conn.execute(
        update(photos_table)
        .where(photos_table.c.event_id == event_id, photos_table.c.faces_engine.is_not(None))
        .values(faces_engine=None)
    )
    return counts


def event_has_face_data(conn: Connection, event_id: int) -> bool:
    """Whether any face, selfie face or match of the event is stored."""
    users, photos = _event_users(event_id), _event_photos(event_id)
    for statement in (
        select(faces_table.c.id).where(faces_table.c.photo_id.in_(photos)).limit(1),
        select(selfies_table.c.id).where(selfies_table.c.user_id.in_(users)).limit(1),
        select(matches_table.c.photo_id).where(matches_table.c.user_id.in_(users)).limit(1),
    ):
        if conn.execute(statement).first() is not None:
            return True
    return False
