"""Matching from the vectors a process holds finds exactly what the exact search over freshly
read rows found, before and after faces and selfies are added, replaced, erased and purged.

The reference is the search the local engine made before issue 23, kept here verbatim: every
stored face (or selfie) read for each selfie (or photo), one ``np.linalg.norm`` of the
differences. Embeddings are random people with random variation, so that many distances fall
near the threshold (0.6), where a rounding difference would show.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from sqlalchemy import Engine, insert

from photoctl import db, events, face_store, participants
from photoctl.face_step import StoredFaces
from photoctl.faces import vector_cache
from photoctl.faces.base import EnrolledFace, FaceMatch, FaceRecord, StoredFace
from photoctl.faces.local import LocalEngine, _similarity
from photoctl.faces.local_model import embedding_from_bytes
from photoctl.models import Photo, User

THRESHOLD = 0.6
rng = np.random.default_rng(23)


def _person() -> np.ndarray:
    centre = rng.normal(0, 1, 128).astype(np.float32)
    return centre / np.linalg.norm(centre) * 0.9


def _near(centre: np.ndarray, spread: float) -> bytes:
    # Distances from the centre ~ spread * sqrt(128) * 0.05: 0.3 to 0.9 for spreads 0.5 to 1.5.
    vector = centre + rng.normal(0, 0.05 * spread, 128).astype(np.float32)
    return vector.astype("<f4").tobytes()


def _old_match_selfie(selfie: EnrolledFace, stored: list[StoredFace]) -> set[tuple[int, float]]:
    faces = [f for f in stored if f.embedding]
    if not faces or not selfie.embedding:
        return set()
    matrix = np.frombuffer(b"".join(f.embedding for f in faces if f.embedding), dtype="<f4")
    distances = np.linalg.norm(
        matrix.reshape(-1, 128) - embedding_from_bytes(selfie.embedding), axis=1
    )
    return {
        (faces[i].id, _similarity(float(distances[i])))
        for i in np.flatnonzero(distances <= THRESHOLD)
    }


def _as_set(matches: list[FaceMatch]) -> set[tuple[int, int, float]]:
    return {(m.face_id, m.user_id, m.similarity) for m in matches}


def _add_photos(engine: Engine, event_id: int, people: list[np.ndarray], count: int) -> None:
    now = time.time()
    with db.write(engine) as conn:
        for _ in range(count):
            photo_id = conn.execute(
                insert(Photo.__table__)
                .values(
                    content_hash=rng.bytes(16).hex(),
                    source_path=b"/x.jpg",
                    filename="x.jpg",
                    size_bytes=1,
                    ingested_at=now,
                    event_id=event_id,
                )
                .returning(Photo.__table__.c.id)
            ).scalar_one()
            records = [
                FaceRecord(
                    (0.1, 0.1, 0.1, 0.1),
                    0.9,
                    _near(people[int(rng.integers(len(people)))], float(rng.uniform(0.5, 1.5))),
                )
                for _ in range(int(rng.integers(1, 5)))
            ]
            face_store.store_faces(conn, photo_id, "local", records, event_id=event_id)


def _add_participant(engine: Engine, event_id: int, embedding: bytes) -> int:
    with db.write(engine) as conn:
        user_id = conn.execute(
            insert(User.__table__)
            .values(
                name=f"p-{rng.bytes(6).hex()}",
                token_hash=rng.bytes(16).hex(),
                gallery_token_hash=rng.bytes(16).hex(),
                created_at=time.time(),
                event_id=event_id,
            )
            .returning(User.__table__.c.id)
        ).scalar_one()
        face_store.add_selfie(conn, "local", user_id, FaceRecord((0, 0, 1, 1), 1.0, embedding))
    return user_id


def _compare(engine: Engine, event_id: int, people: list[np.ndarray]) -> int:
    """Both searches, both ways; returns how many matches they agreed on."""
    local = LocalEngine(match_threshold=THRESHOLD)
    agreed = 0
    with db.read(engine) as conn:
        stored = face_store.all_faces(conn, "local", event_id)
        enrolled = face_store.enrolled_faces(conn, "local", event_id)
    for person in people[:10]:
        selfie = EnrolledFace(10**9, _near(person, 1.0), None)
        old = _old_match_selfie(selfie, stored)
        new = local.match_selfie(selfie, StoredFaces(engine, event_id))
        assert {(m.face_id, m.similarity) for m in new} == old
        assert len(new) == len(old)
        agreed += len(old)
    cached = vector_cache.selfie_vectors(engine, event_id, "local")
    for start in range(0, len(stored), 7):
        photo_faces = stored[start : start + 7]
        old_matches = _as_set(local.match_faces(photo_faces, enrolled))
        assert _as_set(local.match_enrolled(photo_faces, cached)) == old_matches
        agreed += len(old_matches)
    return agreed


def test_cached_matching_finds_what_the_exact_search_finds_through_writes_and_deletions(
    engine: Engine,
) -> None:
    vector_cache.forget_all()
    event = events.create_event(engine, "city", title="City", date=None, retention_days=30)
    people = [_person() for _ in range(40)]
    _add_photos(engine, event.id, people, 150)
    participant_ids = [
        _add_participant(engine, event.id, _near(people[i % 40], float(rng.uniform(0.5, 1.5))))
        for i in range(60)
    ]
    assert _compare(engine, event.id, people) > 50  # enough matches to mean something

    # Rows added after the first load: only those are read (by id), the answers stay exact.
    _add_photos(engine, event.id, people, 40)
    late = [_add_participant(engine, event.id, _near(people[i], 0.8)) for i in range(10)]
    _compare(engine, event.id, people)

    # Erased and replaced selfies are never matched again; a purge leaves nothing to match.
    participants.erase_participant(engine, None, None, participant_ids[0])  # type: ignore[arg-type]
    with db.write(engine) as conn:
        face_store.replace_selfie(
            conn, "local", late[0], FaceRecord((0, 0, 1, 1), 1.0, _near(people[5], 0.7))
        )
    _compare(engine, event.id, people)
    cached = vector_cache.selfie_vectors(engine, event.id, "local")
    users = {int(u) for _, part_users, _, _ in cached.parts for u in part_users}
    assert participant_ids[0] not in users and late[0] in users
    assert len(cached) == 69

    with db.write(engine) as conn:
        face_store.delete_event_face_data(conn, event.id)
    assert len(vector_cache.face_vectors(engine, event.id, "local")) == 0
    assert len(vector_cache.selfie_vectors(engine, event.id, "local")) == 0
    _compare(engine, event.id, people)


def test_a_new_process_and_a_warm_one_hold_the_same_vectors(engine: Engine) -> None:
    """A process that loaded early and followed every write holds what a cold load reads."""
    vector_cache.forget_all()
    event = events.create_event(engine, "warm", title="Warm", date=None, retention_days=30)
    people = [_person() for _ in range(5)]
    for _ in range(5):
        _add_photos(engine, event.id, people, 10)
        vector_cache.face_vectors(engine, event.id, "local")
    warm = vector_cache.face_vectors(engine, event.id, "local")
    vector_cache.forget_all()
    cold = vector_cache.face_vectors(engine, event.id, "local")

    def rows(vectors: vector_cache.Vectors) -> dict[int, bytes]:
        return {
            int(i): row.tobytes()
            for ids, _, matrix, _ in vectors.parts
            for i, row in zip(ids, matrix, strict=True)
        }

    assert rows(warm) == rows(cold)
    assert len(rows(cold)) == len(cold)


@pytest.mark.parametrize("rows", [1, vector_cache.BLOCK_ROWS + 3])
def test_vectors_past_a_block_are_searched_like_the_rest(rows: int) -> None:
    """Appends fill blocks and open new ones; a search covers every block."""
    entry = vector_cache._EventVectors()
    data = rng.normal(0, 0.05, (rows, 128)).astype(np.float32)
    ids = np.arange(1, rows + 1)
    half = rows // 2
    entry.append(ids[:half], ids[:half], data[:half])
    entry.append(ids[half:], ids[half:], data[half:])
    view = entry.view()
    query = data[-1]
    found = {i for i, _, _ in view.within(query, 0.3)}
    exact = set(np.flatnonzero(np.linalg.norm(data - query, axis=1) <= 0.3) + 1)
    assert found == exact and rows in found
    assert view.nearest(query[None, :], 0.3)[0] == (rows, 0.0)
