"""Each event's embeddings held in memory where they are searched, kept current by a version.

Serve matches a new selfie against every face of its event, and each worker matches a new
photo's faces against every enrolled selfie of its event. Reading those rows for every selfie
or photo cost seconds at a million faces (issue 23), so each process keeps, per event, a float32
matrix of the faces (serve) or of the selfies (workers), loaded once and then kept current:

- **The version** is one ``photoctl_meta`` row per event (``faces_version:<event id>``,
  "writes faces-generation selfies-generation"). Every transaction that writes the event's faces
  or selfies bumps it (``bump``) *before* its inserts, in that transaction: the row lock it takes
  serializes the event's writers on PostgreSQL (SQLite's write lock already does), so their ids
  commit in increasing order and "rows with id > the last one loaded" never skips a row
  committed late. A deletion (purge, erasure, a deleted user, a replaced selfie, a photo whose
  content changed) bumps a generation as well.
- **A reader** (``face_vectors``, ``selfie_vectors``) reads the version and, in the same
  transaction, the rows it lacks: none when it is unchanged, only rows with a larger id when
  only ``writes`` moved, everything again when a generation moved (a deleted vector is never
  searched after the deletion's commit is seen). The search itself is exact: a matrix product
  picks candidates with a margin, and their distances are computed as the engine always did
  (``np.linalg.norm`` of the difference), so the matches are the same to the last bit.

Memory: 512 bytes a vector plus 12 (id, norm) -- about 0.5 GB per million faces in each serve
process, for the events whose selfies it enrolled since it started.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Connection, Engine, bindparam, select, update

from photoctl import db
from photoctl.errors import PhotoctlError
from photoctl.models import Face, Meta, Photo, SelfieFace, User

DIMENSIONS = 128
_ROW_BYTES = DIMENSIONS * 4
BLOCK_ROWS = 65536  # rows per block: appending never copies what is loaded already
_FETCH_ROWS = 20000
# Candidates are picked on squared distances from a matrix product, whose float32 rounding is
# ~1e-6 here; the exact distances of every candidate then decide, as the engine's old path did.
_MARGIN = 1e-3

log = logging.getLogger(__name__)
meta_table = Meta.__table__
faces_table = Face.__table__
photos_table = Photo.__table__
selfies_table = SelfieFace.__table__
users_table = User.__table__


@dataclass(frozen=True)
class Version:
    """Writes and generations of an event's faces and of its selfies, counted apart: a worker's
    selfies need no reading when only faces were written (every photo writes some)."""

    faces_writes: int = 0
    selfies_writes: int = 0
    faces_generation: int = 0
    selfies_generation: int = 0

    def encode(self) -> str:
        return (
            f"{self.faces_writes} {self.selfies_writes} "
            f"{self.faces_generation} {self.selfies_generation}"
        )

    @classmethod
    def decode(cls, value: str | None) -> Version:
        if not value:
            return cls()
        faces, selfies, faces_generation, selfies_generation = (int(p) for p in value.split())
        return cls(faces, selfies, faces_generation, selfies_generation)

    def of(self, kind: str) -> tuple[int, int]:
        """(writes, generation) of "faces" or "selfies"."""
        if kind == "faces":
            return self.faces_writes, self.faces_generation
        return self.selfies_writes, self.selfies_generation


def version_key(event_id: int) -> str:
    return f"faces_version:{event_id}"


_READ_VERSION = select(meta_table.c.value).where(meta_table.c.key == bindparam("key"))


def read_version(conn: Connection, event_id: int) -> Version:
    return Version.decode(conn.execute(_READ_VERSION, {"key": version_key(event_id)}).scalar())


def bump(
    conn: Connection,
    event_id: int,
    *,
    faces: bool = False,
    selfies: bool = False,
    faces_deleted: bool = False,
    selfies_deleted: bool = False,
) -> None:
    """Record a write of the event's faces or selfies, in the writer's transaction, before its
    inserts (the row lock held from here to the commit keeps the event's ids committing in
    order); a deletion also moves its generation, which makes every process load anew."""
    key = version_key(event_id)
    conn.execute(
        db.insert_ignoring_conflicts(conn, meta_table), [{"key": key, "value": Version().encode()}]
    )
    value = conn.execute(
        select(meta_table.c.value).where(meta_table.c.key == key).with_for_update()
    ).scalar()
    old = Version.decode(value)
    new = Version(
        old.faces_writes + int(faces or faces_deleted),
        old.selfies_writes + int(selfies or selfies_deleted),
        old.faces_generation + int(faces_deleted),
        old.selfies_generation + int(selfies_deleted),
    )
    conn.execute(update(meta_table).where(meta_table.c.key == key).values(value=new.encode()))


def bump_photos_events(conn: Connection, photo_ids: Sequence[int]) -> None:
    """A deletion of these photos' faces: bump the faces generation of each of their events."""
    events: set[int] = set()
    for chunk in db.in_chunks(photo_ids, 500):
        events.update(
            conn.execute(
                select(photos_table.c.event_id).where(photos_table.c.id.in_(list(chunk)))
            ).scalars()
        )
    for event_id in sorted(events):
        bump(conn, event_id, faces_deleted=True)


def bump_user_event(conn: Connection, user_id: int, *, selfies_deleted: bool = False) -> None:
    event_id = conn.execute(
        select(users_table.c.event_id).where(users_table.c.id == user_id)
    ).scalar()
    if event_id is not None:
        bump(conn, event_id, selfies=True, selfies_deleted=selfies_deleted)


# -- the matrices ----------------------------------------------------------------------------


@dataclass
class _Block:
    ids: np.ndarray  # int64 row ids (faces.id or selfie_faces.id)
    users: np.ndarray  # int64 user ids (selfies; zeros for faces)
    rows: np.ndarray  # float32 (BLOCK_ROWS, 128)
    norms: np.ndarray  # float32 squared norms
    filled: int = 0


@dataclass(frozen=True)
class Vectors:
    """A consistent view of one event's vectors: blocks of (ids, users, rows, squared norms)."""

    parts: tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], ...] = ()
    external: dict[str, int] = field(default_factory=dict)  # selfie FaceId -> user id

    def __len__(self) -> int:
        return sum(len(ids) for ids, _, _, _ in self.parts)

    def within(self, query: np.ndarray, threshold: float) -> Iterator[tuple[int, int, float]]:
        """(row id, user id, distance) of every vector within ``threshold`` of ``query``,
        the distance computed exactly as ``np.linalg.norm(rows - query, axis=1)``."""
        query = np.asarray(query, dtype=np.float32)
        limit = (threshold + _MARGIN) ** 2
        query_norm = float(query @ query)
        for ids, users, rows, norms in self.parts:
            approximate = norms - 2.0 * _products(rows, query) + query_norm
            candidates = np.flatnonzero(approximate <= limit)
            if not len(candidates):
                continue
            distances = np.linalg.norm(rows[candidates] - query, axis=1)
            for index, distance in zip(candidates, distances, strict=True):
                if distance <= threshold:
                    yield int(ids[index]), int(users[index]), float(distance)

    def nearest(self, queries: np.ndarray, threshold: float) -> list[tuple[int, float] | None]:
        """For each query row: (user id, distance) of its nearest vector if within
        ``threshold``, else None; the nearest as ``np.argmin`` of the exact distances finds it
        (the first of equal ones, in the order the vectors were loaded)."""
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, DIMENSIONS)
        found: list[tuple[int, float] | None] = [None] * len(queries)
        if not self.parts or not len(queries):
            return found
        for q, query in enumerate(queries):
            # One matrix-vector product per face (see _products).
            query_norm = float(query @ query)
            approximate = [
                norms - 2.0 * _products(rows, query) + query_norm
                for _, _, rows, norms in self.parts
            ]
            best = min(float(block.min()) for block in approximate if len(block))
            if best > (threshold + _MARGIN) ** 2:
                continue
            winner: tuple[float, int] | None = None
            for (_, users, rows, _), block in zip(self.parts, approximate, strict=True):
                candidates = np.flatnonzero(block <= best + _MARGIN)
                if not len(candidates):
                    continue
                distances = np.linalg.norm(rows[candidates] - query, axis=1)
                at = int(np.argmin(distances))
                if winner is None or distances[at] < winner[0]:
                    winner = (float(distances[at]), int(users[candidates[at]]))
            if winner is not None and winner[0] <= threshold:
                found[q] = (winner[1], winner[0])
        return found


def _products(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """rows @ query, by numpy's own loop: OpenBLAS serializes concurrent callers on its thread
    pool (4 threads searching a million faces at once: 6.9 searches/s with it, 23 without),
    and one call is as fast either way, the product being bound by reading the matrix."""
    return np.einsum("ij,j->i", rows, query)


class _EventVectors:
    """What one process holds of one event's faces or selfies (guarded by its lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state: tuple[int, int] | None = None  # (writes, generation) loaded
        self.last_id = 0
        self.blocks: list[_Block] = []
        self.external: dict[str, int] = {}

    def reset(self) -> None:
        self.last_id = 0
        self.blocks = []  # a new list: views handed out before keep their old blocks
        self.external = {}

    def append(self, ids: np.ndarray, users: np.ndarray, rows: np.ndarray) -> None:
        if len(ids):
            self.last_id = max(self.last_id, int(ids.max()))
        start = 0
        while start < len(ids):
            if not self.blocks or self.blocks[-1].filled == len(self.blocks[-1].ids):
                # Small events get small blocks (a worker holds the selfies of every event it
                # sees); from BLOCK_ROWS on they are all that size.
                held = sum(b.filled for b in self.blocks)
                rows_wanted = min(BLOCK_ROWS, max(1024, held, len(ids) - start))
                self.blocks.append(
                    _Block(
                        np.zeros(rows_wanted, np.int64),
                        np.zeros(rows_wanted, np.int64),
                        np.empty((rows_wanted, DIMENSIONS), np.float32),
                        np.zeros(rows_wanted, np.float32),
                    )
                )
            block = self.blocks[-1]
            take = min(len(block.ids) - block.filled, len(ids) - start)
            at, end = block.filled, block.filled + take
            block.ids[at:end] = ids[start : start + take]
            block.users[at:end] = users[start : start + take]
            block.rows[at:end] = rows[start : start + take]
            chunk = block.rows[at:end]
            block.norms[at:end] = np.einsum("ij,ij->i", chunk, chunk)
            # Filled last: a view taken meanwhile by another thread never sees a partial row.
            block.filled = end
            start += take

    def view(self) -> Vectors:
        return Vectors(
            tuple(
                (b.ids[: b.filled], b.users[: b.filled], b.rows[: b.filled], b.norms[: b.filled])
                for b in self.blocks
                if b.filled
            ),
            self.external,
        )

    @property
    def nbytes(self) -> int:
        return sum(
            b.ids.nbytes + b.users.nbytes + b.rows.nbytes + b.norms.nbytes for b in self.blocks
        )


_held: weakref.WeakKeyDictionary[Engine, dict[tuple[str, int, str], _EventVectors]] = (
    weakref.WeakKeyDictionary()
)
_held_lock = threading.Lock()


# How often a process holding vectors checks whether another process deleted some of them.
SWEEP_SECONDS = 5.0


def _entry(database: Engine, kind: str, event_id: int, engine_name: str) -> _EventVectors:
    with _held_lock:
        if database not in _held:
            _held[database] = {}
            threading.Thread(
                target=_sweep, args=(weakref.ref(database),), daemon=True, name="vector-sweep"
            ).start()
        return _held[database].setdefault((kind, event_id, engine_name), _EventVectors())


def _sweep(database_ref: weakref.ref[Engine]) -> None:
    """Drop, within SWEEP_SECONDS, the vectors of an event whose faces or selfies another
    process deleted (a purge, an erasure), even if this process never searches that event
    again: a search would reload them anyway, but their bytes should not stay in memory."""
    while True:
        time.sleep(SWEEP_SECONDS)
        database = database_ref()
        if database is None:
            return
        with _held_lock:
            entries = list(_held.get(database, {}).items())
        if entries:
            try:
                drop_deleted(database, entries)
            except PhotoctlError as error:  # the database away: checked again next time
                log.debug("vector sweep: %s", error)
        del database


def drop_deleted(
    database: Engine, entries: Sequence[tuple[tuple[str, int, str], _EventVectors]]
) -> None:
    events = sorted({event_id for (_, event_id, _), _ in entries})
    with db.read(database) as conn:
        versions = {event_id: read_version(conn, event_id) for event_id in events}
    for (kind, event_id, _), entry in entries:
        with entry.lock:
            if entry.state is not None and entry.state[1] != versions[event_id].of(kind)[1]:
                entry.reset()
                entry.state = None


def held_bytes() -> int:
    """Bytes of vectors this process holds, every database and event together."""
    with _held_lock:
        entries = [e for per in _held.values() for e in per.values()]
    return sum(e.nbytes for e in entries)


def forget_all() -> None:
    """Drop every matrix this process holds (tests and benchmarks measure cold loads)."""
    with _held_lock:
        _held.clear()


def face_vectors(database: Engine, event_id: int, engine_name: str) -> Vectors:
    """The event's stored faces (one engine's embeddings), current as of this call."""
    return _current(database, "faces", event_id, engine_name)


def selfie_vectors(database: Engine, event_id: int, engine_name: str) -> Vectors:
    """The enrolled selfie faces of the event's users not erased, current as of this call."""
    return _current(database, "selfies", event_id, engine_name)


def _current(database: Engine, kind: str, event_id: int, engine_name: str) -> Vectors:
    entry = _entry(database, kind, event_id, engine_name)
    with entry.lock, db.read(database) as conn:
        state = read_version(conn, event_id).of(kind)
        if entry.state is None or entry.state[1] != state[1]:
            entry.reset()  # never loaded, or something was deleted: everything again
        if entry.state != state:
            (_load_faces if kind == "faces" else _load_selfies)(conn, entry, event_id, engine_name)
        entry.state = state
        return entry.view()


_FACES_SQL = (
    "SELECT f.id, f.embedding FROM faces f WHERE f.engine = {engine} {newer}"
    "AND f.embedding IS NOT NULL AND EXISTS (SELECT 1 FROM photos p WHERE p.id = f.photo_id "
    "AND p.event_id = {event})"
)


def _load_faces(conn: Connection, entry: _EventVectors, event_id: int, engine_name: str) -> None:
    # A full load has no ORDER BY: PostgreSQL would sort a million rows (an external merge sort
    # on disk) for nothing; the ids travel with the rows. It is read on the driver's own cursor
    # (server-side on PostgreSQL, which would otherwise hold the whole answer in memory first):
    # plain tuples in batches, no row objects. The rows added since (a few) are read in id
    # order, in pages: the primary key's range, where PostgreSQL otherwise joined every photo
    # of the event to find none (0.5 s at 170,000 photos).
    raw = conn.connection.dbapi_connection
    assert raw is not None
    postgres = db.is_postgresql(conn)
    names = ("%(engine)s", "%(last)s", "%(event)s") if postgres else (":engine", ":last", ":event")
    newer = f"AND f.id > {names[1]} " if entry.last_id else ""  # a full load: no id range
    sql = _FACES_SQL.format(engine=names[0], newer=newer, event=names[2])
    if entry.last_id:
        while True:
            cursor = raw.cursor()
            try:
                cursor.execute(
                    f"{sql} ORDER BY f.id LIMIT {_FETCH_ROWS}",
                    {"engine": engine_name, "last": entry.last_id, "event": event_id},
                )
                rows = cursor.fetchall()
            finally:
                cursor.close()
            _append_rows(entry, rows)
            if len(rows) < _FETCH_ROWS:
                return
    cursor = raw.cursor(name="photoctl_face_vectors") if postgres else raw.cursor()
    try:
        cursor.execute(sql, {"engine": engine_name, "last": entry.last_id, "event": event_id})
        while rows := cursor.fetchmany(_FETCH_ROWS):
            _append_rows(entry, rows)
    finally:
        cursor.close()


def _append_rows(entry: _EventVectors, rows: Sequence[tuple[int, bytes]]) -> None:
    if rows:
        ids, blobs = zip(*rows, strict=True)
        ids_array = np.fromiter(ids, np.int64, len(ids))
        _append_blobs(entry, ids_array, np.zeros(len(ids), np.int64), list(blobs))


def _load_selfies(conn: Connection, entry: _EventVectors, event_id: int, engine_name: str) -> None:
    # Rows added since the last load are read in id order, in pages (see _load_faces).
    while True:
        statement = (
            select(
                selfies_table.c.id,
                selfies_table.c.user_id,
                selfies_table.c.embedding,
                selfies_table.c.external_id,
            )
            .select_from(
                selfies_table.join(users_table, users_table.c.id == selfies_table.c.user_id)
            )
            .where(
                selfies_table.c.engine == engine_name,
                users_table.c.event_id == event_id,
                users_table.c.erased_at.is_(None),
            )
        )
        incremental = entry.last_id > 0
        if incremental:
            statement = (
                statement.where(selfies_table.c.id > entry.last_id)
                .order_by(selfies_table.c.id)
                .limit(_FETCH_ROWS)
            )
        # A full load has no id range: PostgreSQL combined "id > 0" with each user's selfies,
        # a pass over the whole primary key per participant.
        result = conn.execute(statement)
        external = dict(entry.external)  # a new dict: views handed out keep theirs
        read = 0
        while rows := result.fetchmany(_FETCH_ROWS):
            read += len(rows)
            with_vectors = [r for r in rows if r[2] is not None]
            for r in rows:
                if r[3] is not None:
                    external[r[3]] = r[1]
                entry.last_id = max(entry.last_id, r[0])
            if with_vectors:
                _append_blobs(
                    entry,
                    np.fromiter((r[0] for r in with_vectors), np.int64, len(with_vectors)),
                    np.fromiter((r[1] for r in with_vectors), np.int64, len(with_vectors)),
                    [r[2] for r in with_vectors],
                )
        entry.external = external
        if not incremental or read < _FETCH_ROWS:
            return


def _append_blobs(
    entry: _EventVectors, ids: np.ndarray, users: np.ndarray, blobs: list[bytes]
) -> None:
    joined = b"".join(blobs)
    if len(joined) == len(blobs) * _ROW_BYTES:
        entry.append(ids, users, np.frombuffer(joined, dtype="<f4").reshape(-1, DIMENSIONS))
        return
    # Some row is not a 128-number embedding (never written by photoctl): skip it alone.
    keep = [i for i, blob in enumerate(blobs) if len(blob) == _ROW_BYTES]
    rows = np.frombuffer(b"".join(blobs[i] for i in keep), dtype="<f4").reshape(-1, DIMENSIONS)
    entry.append(ids[keep], users[keep], rows)
