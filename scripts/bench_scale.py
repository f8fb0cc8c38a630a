"""Scale benchmark (issue 23): a big-city marathon's sizes, built in bulk, on both databases.

For each database (a SQLite file; a scratch PostgreSQL database next to --postgres-url, dropped
afterwards) it builds rows shaped like processed photos (a photo row with its thumbnail,
preview, size, camera and face checkpoint; its done `process_photo` job; ~3 faces a photo with
512-byte float32 embeddings and boxes; participants with a selfie face each) with COPY on
PostgreSQL and executemany on SQLite, and prints each curve, size -> figure, measured in this
process (the interpreter's own start is not counted):

- enrollment at F faces in the event: the real `users.enroll_selfie` (a tiny JPEG decoded, a
  fixed embedding as the selfie's face, the selfie stored, matched, matches stored), p50/p95
  warm, the first (cold) one apart; 4 concurrent enrollments per second; the exact search read
  row by row as before issue 23 at the smallest size, for the ratio;
- serve's memory per million faces: the vectors held, and the process's RSS growth;
- per-photo matching at P participants: the event's selfies as a worker holds them (version
  read included) and the local engine's match of a 3-face photo, p50/p95; the old read-every-
  selfie path beside it;
- `stats`, `jobs list`, `events show` at J jobs (the functions the commands call);
- a gallery's "still processing" figure and page query with Q photos queued, p99.

    .venv/bin/python scripts/bench_scale.py              # ~2-4 minutes
    .venv/bin/python scripts/bench_scale.py --smallest   # seconds (the test runs this)
    .venv/bin/python scripts/bench_scale.py --faces 100000,500000,1000000 --jobs 1000000

The machine may be shared: the load average is printed with each section; read the figures as
a curve from one run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from _bench import load_average
from PIL import Image
from sqlalchemy import Engine, Table, text
from sqlalchemy.engine import make_url

from photoctl import db, events, face_store, participants, queue, stats, usage, users
from photoctl.api.processing_figures import ProcessingFigures
from photoctl.config import Settings
from photoctl.face_step import StoredFaces
from photoctl.faces import vector_cache
from photoctl.faces.base import EnrolledFace, FaceRecord
from photoctl.faces.local import LocalEngine
from photoctl.faces.local_model import embedding_from_bytes
from photoctl.models import Face, Job, JobKind, JobState, Photo, SelfieFace, User

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
FACES_PER_PHOTO = 3
rng = np.random.default_rng(23)


# -- building ---------------------------------------------------------------------------------


def _embeddings(count: int) -> np.ndarray:
    """Random unit-ish vectors: far apart (no match) unless built near a selfie."""
    vectors = rng.normal(0, 1, (count, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype("<f4")


def bulk_insert(engine: Engine, table: Table, rows: Sequence[dict]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    with db.write(engine) as conn:
        if db.is_postgresql(conn):
            raw = conn.connection.dbapi_connection
            assert raw is not None
            with raw.cursor() as cursor:  # type: ignore[attr-defined]
                names = ", ".join(columns)
                with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row([row[c] for c in columns])
        else:
            for start in range(0, len(rows), 20000):
                conn.execute(table.insert(), list(rows[start : start + 20000]))
    if db.is_postgresql(engine):
        # What autovacuum does after such a load: the planner's row counts, made now.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"ANALYZE {table.name}"))


def add_photos(
    engine: Engine, event_id: int, count: int, *, state: str = JobState.DONE, faces: int = 0
) -> list[int]:
    """COUNT processed photos (or waiting ones) with their jobs and FACES faces in all."""
    now = time.time()
    tag = uuid.uuid4().hex[:8]
    photos = [
        {
            "content_hash": f"{tag}{i:056x}",
            "source_path": f"/srv/marathon/card{i // 1000}/IMG_{i:06d}.JPG".encode(),
            "filename": f"IMG_{i:06d}.JPG",
            "album": "Finish line",
            "size_bytes": 6_500_000,
            "width": 6000,
            "height": 4000,
            "taken_at": "2026-05-03T10:12:00",
            "camera": "Canon EOS R6",
            "thumb_path": f"thumbs/{tag[:2]}/{tag}{i}.jpg" if state == JobState.DONE else None,
            "preview_path": f"previews/{tag[:2]}/{tag}{i}.jpg" if state == JobState.DONE else None,
            "ingested_at": now - 3600,
            "processed_at": now - 60 if state == JobState.DONE else None,
            "faces_engine": "local" if state == JobState.DONE else None,
            "event_id": event_id,
        }
        for i in range(count)
    ]
    bulk_insert(engine, Photo.__table__, photos)
    with db.read(engine) as conn:
        ids = [
            row[0]
            for row in conn.execute(
                text("SELECT id FROM photos WHERE content_hash LIKE :tag"), {"tag": f"{tag}%"}
            )
        ]
    done = state == JobState.DONE
    spread = 3 * 3600 / max(1, len(ids))
    jobs = [
        {
            "id": uuid.uuid4().hex,
            "kind": JobKind.PROCESS_PHOTO.value,
            "photo_id": photo_id,
            "state": str(state),
            "attempts": 1 if done else 0,
            "run_at": now - 3600,
            "lease_expires_at": None,
            "worker_id": "bench-host:1:w0" if done else None,
            "last_error": None,
            # Spread over the last three hours, as a day of processing leaves them.
            "created_at": now - 3 * 3600 + i * spread,
            "started_at": now - 3 * 3600 + (i + 0.5) * spread if done else None,
            "finished_at": now - 3 * 3600 + (i + 0.9) * spread if done else None,
        }
        for i, photo_id in enumerate(ids)
    ]
    bulk_insert(engine, Job.__table__, jobs)
    if faces:
        vectors = _embeddings(faces)
        rows = [
            {
                "photo_id": ids[(i // FACES_PER_PHOTO) % len(ids)],
                "engine": "local",
                "face_index": i % FACES_PER_PHOTO
                + FACES_PER_PHOTO * (i // (FACES_PER_PHOTO * len(ids))),
                "box_left": 0.4,
                "box_top": 0.2,
                "box_width": 0.05,
                "box_height": 0.07,
                "score": 0.93,
                "embedding": vectors[i].tobytes(),
                "external_id": None,
            }
            for i in range(faces)
        ]
        bulk_insert(engine, Face.__table__, rows)
    with db.write(engine) as conn:
        vector_cache.bump(conn, event_id, faces=True)  # as the workers' writes would have
    return ids


def add_participants(engine: Engine, event_id: int, count: int) -> list[int]:
    now = time.time()
    tag = uuid.uuid4().hex[:8]
    bulk_insert(
        engine,
        User.__table__,
        [
            {
                "name": f"p-{tag}-{i}",
                "is_admin": False,
                "token_hash": f"{tag}{i:056x}",
                "gallery_token_hash": f"g{tag}{i:055x}",
                "created_at": now,
                "event_id": event_id,
            }
            for i in range(count)
        ],
    )
    with db.read(engine) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                text("SELECT id FROM users WHERE name LIKE :tag"), {"tag": f"p-{tag}-%"}
            )
        ]
    vectors = _embeddings(len(ids))
    bulk_insert(
        engine,
        SelfieFace.__table__,
        [
            {
                "user_id": user_id,
                "engine": "local",
                "embedding": vectors[i].tobytes(),
                "external_id": None,
                "created_at": now,
            }
            for i, user_id in enumerate(ids)
        ],
    )
    with db.write(engine) as conn:
        vector_cache.bump(conn, event_id, selfies=True)
    return ids


# -- measuring --------------------------------------------------------------------------------


def timed(function: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def pct(times: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1000, q))


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class SelfieEngine(LocalEngine):
    """The local engine with the selfie's face given (no dlib): enrollment's own costs only."""

    embedding: bytes = b""

    def index_selfie(self, user_id, image, *, allow_several=True):  # type: ignore[override]
        return FaceRecord((0.3, 0.2, 0.4, 0.5), 0.99, self.embedding)


def enrollment_curve(engine: Engine, settings: Settings, sizes: list[int], work: Path) -> None:
    print(f"\nenrollment (load average {load_average()})")
    print(
        f"  {'faces':>9} {'cold ms':>9} {'p50 ms':>8} {'p95 ms':>8} {'4 at once/s':>12} "
        f"{'held MB/M':>10} {'RSS MB/M':>9} {'old p50 ms':>10}"
    )
    selfie = work / "selfie.jpg"
    Image.new("RGB", (320, 240), (128, 100, 90)).save(selfie)
    event = events.create_event(
        engine, f"enroll-{uuid.uuid4().hex[:6]}", title="Enroll", date=None, retention_days=30
    )
    have = 0
    for size in sizes:
        add_photos(engine, event.id, max(1, (size - have) // FACES_PER_PHOTO), faces=size - have)
        have = size
        people = add_participants(engine, event.id, 60)
        cold, held, grown, warm, per_second, old = _enrollments(
            engine, settings, event.id, people, selfie, old_too=size == sizes[0]
        )
        faces_held = size
        print(
            f"  {size:>9,} {cold * 1000:9.0f} {pct(warm, 50):8.1f} {pct(warm, 95):8.1f} "
            f"{per_second:12.1f} {held / faces_held * 1e6 / 2**20:10.0f} "
            f"{grown / faces_held * 1e6:9.0f} {old:>10}"
        )
        vector_cache.forget_all()


def _enrollments(
    engine: Engine,
    settings: Settings,
    event_id: int,
    people: list[int],
    selfie: Path,
    *,
    old_too: bool,
) -> tuple[float, int, float, list[float], float, str]:
    """(cold s, bytes held, RSS growth MB, warm times, enrollments/s with 4 at once, old ms)."""
    local = SelfieEngine(match_threshold=0.6)
    vector_cache.forget_all()
    before = rss_mb()
    local.embedding = _embeddings(1)[0].tobytes()

    def enroll(user_id: int) -> None:
        users.enroll_selfie(engine, local, settings, user_id, selfie, largest=False)

    cold = timed(lambda: enroll(people[0]), 1)[0]
    held = vector_cache.held_bytes()
    grown = rss_mb() - before
    warm = [timed(lambda u=u: enroll(u), 1)[0] for u in people[1:21]]
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(enroll, people[21:41]))
    per_second = 20 / (time.perf_counter() - started)
    old = ""
    if old_too:
        query = EnrolledFace(0, local.embedding, None)
        old_times = timed(lambda: _old_match_selfie(engine, event_id, query), 3)
        old = f"{pct(old_times, 50):.0f}"
    return cold, held, grown, warm, per_second, old


def _old_match_selfie(engine: Engine, event_id: int, selfie: EnrolledFace) -> int:
    """The search before issue 23: every face of the event read, one object a row."""
    lookup = StoredFaces(engine, event_id)
    faces = [f for f in lookup.all_faces("local") if f.embedding]
    matrix = np.frombuffer(b"".join(f.embedding for f in faces if f.embedding), dtype="<f4")
    assert selfie.embedding is not None
    distances = np.linalg.norm(
        matrix.reshape(-1, 128) - embedding_from_bytes(selfie.embedding), axis=1
    )
    return int((distances <= 0.6).sum())


def matching_curve(engine: Engine, sizes: list[int]) -> None:
    print(f"\nper-photo matching, 3 faces a photo (load average {load_average()})")
    print(f"  {'participants':>12} {'cold ms':>9} {'p50 ms':>8} {'p95 ms':>8} {'old p50 ms':>10}")
    event = events.create_event(
        engine, f"match-{uuid.uuid4().hex[:6]}", title="Match", date=None, retention_days=30
    )
    photo = add_photos(engine, event.id, 1, faces=FACES_PER_PHOTO)[0]
    with db.read(engine) as conn:
        faces = face_store.photo_faces(conn, photo, "local")
    local = LocalEngine(match_threshold=0.6)
    have = 0
    for size in sizes:
        add_participants(engine, event.id, size - have)
        have = size
        vector_cache.forget_all()

        def new() -> None:
            local.match_enrolled(faces, vector_cache.selfie_vectors(engine, event.id, "local"))

        def old() -> None:
            with db.read(engine) as conn:
                enrolled = face_store.enrolled_faces(conn, "local", event.id)
            local.match_faces(faces, enrolled)

        cold = timed(new, 1)[0]
        warm = timed(new, 40)
        old_times = timed(old, 3 if size <= 10_000 else 1)
        print(
            f"  {size:>12,} {cold * 1000:9.0f} {pct(warm, 50):8.2f} {pct(warm, 95):8.2f} "
            f"{pct(old_times, 50):10.0f}"
        )


def operator_curve(engine: Engine, settings: Settings, sizes: list[int]) -> None:
    print(f"\noperator commands, in-process (load average {load_average()})")
    print(f"  {'jobs':>9} {'stats ms':>9} {'jobs list ms':>13} {'events show ms':>15}")
    event = events.create_event(
        engine, f"ops-{uuid.uuid4().hex[:6]}", title="Ops", date=None, retention_days=30
    )
    have = 0
    for size in sizes:
        add_photos(engine, event.id, size - have)
        have = size

        def run_stats() -> None:
            with db.read(engine) as conn:
                stats.collect(conn, settings)

        def run_jobs_list() -> None:
            with db.read(engine) as conn:
                queue.list_jobs(conn)

        def run_events_show() -> None:
            with db.read(engine) as conn:
                usage.event_summary(conn, event.slug, settings.rekognition)
            events.list_events(engine)

        figures = [pct(timed(f, 3), 50) for f in (run_stats, run_jobs_list, run_events_show)]
        print(f"  {size:>9,} {figures[0]:9.0f} {figures[1]:13.0f} {figures[2]:15.0f}")


def gallery_curve(engine: Engine, sizes: list[int]) -> None:
    print(f"\ngallery during a backlog (load average {load_average()})")
    print(
        f"  {'queued':>9} {'count p50 ms':>14} {'poll p50 ms':>10} {'poll p99 ms':>10} "
        f"{'poll max':>9} {'page p99 ms':>12}"
    )
    event = events.create_event(
        engine, f"gal-{uuid.uuid4().hex[:6]}", title="Gallery", date=None, retention_days=30
    )
    done = add_photos(engine, event.id, 500, faces=500)
    user = add_participants(engine, event.id, 1)[0]
    with db.write(engine) as conn:
        face_ids = [
            r[0]
            for r in conn.execute(
                text("SELECT id FROM faces WHERE photo_id >= :p"), {"p": min(done)}
            )
        ][:500]
        from photoctl.faces.base import FaceMatch

        face_store.store_matches(
            conn, [FaceMatch(f, user, 80.0) for f in face_ids], source="selfie"
        )
    have = 0
    for size in sizes:
        add_photos(engine, event.id, size - have, state=JobState.QUEUED)
        have = size
        counting = timed(lambda: participants.processing_count(engine, event.id), 5)
        # What a gallery request pays: serve's figure, recounted off the request path (here
        # every 0.5 s instead of 5, so that recounts run during the polls).
        figures = ProcessingFigures(lambda e: participants.processing_count(engine, e))
        figures.refresh_seconds = 0.5
        polls = []
        for _ in range(300):
            started = time.perf_counter()
            figures.of(event.id)
            polls.append(time.perf_counter() - started)
            time.sleep(0.01)
        page = timed(lambda: participants.participant_photos(engine, user, 60, None), 100)
        print(
            f"  {size:>9,} {pct(counting, 50):14.1f} {pct(polls, 50):10.3f} {pct(polls, 99):10.3f} "
            f"{max(polls) * 1000:9.1f} {pct(page, 99):12.2f}"
        )


# -- databases --------------------------------------------------------------------------------


@contextlib.contextmanager
def database(kind: str, work: Path, admin_url: str) -> Iterator[tuple[Engine, Settings]]:
    if kind == "sqlite":
        url = f"sqlite:///{work / f'scale-{uuid.uuid4().hex[:8]}.db'}"
        drop: Callable[[], None] = lambda: None  # noqa: E731
    else:
        import psycopg

        name = f"photoctl_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        libpq = make_url(admin_url).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)

        def drop() -> None:
            with psycopg.connect(libpq, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    settings = Settings(data_dir=work).replace("database", url=url)
    engine = db.make_engine(settings, url)
    try:
        db.ensure_schema(engine)
        yield engine, settings
    finally:
        engine.dispose()
        drop()


def postgres_reachable(url: str) -> bool:
    import psycopg

    try:
        libpq = make_url(url).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(libpq, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def sizes(text_value: str) -> list[int]:
    return [int(part) for part in text_value.split(",") if part]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=sizes, default=sizes("100000,250000"))
    parser.add_argument("--participants", type=sizes, default=sizes("1000,10000,100000"))
    parser.add_argument("--jobs", type=sizes, default=sizes("100000,300000"))
    parser.add_argument("--queued", type=sizes, default=sizes("50000,200000"))
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--smallest", action="store_true", help="tiny sizes: runs in seconds")
    args = parser.parse_args(argv)
    if args.smallest:
        args.faces, args.participants = [3000, 6000], [100, 1000]
        args.jobs, args.queued = [2000], [2000]
    for kind in args.databases.split(","):
        if kind == "postgresql" and not postgres_reachable(args.postgres_url):
            print(f"\n== postgresql: skipped, no server at {args.postgres_url}")
            continue
        print(f"\n== {kind} (load average {load_average()})")
        with tempfile.TemporaryDirectory() as temporary:
            work = Path(temporary)
            with database(kind, work, args.postgres_url) as (engine, settings):
                started = time.perf_counter()
                enrollment_curve(engine, settings, args.faces, work)
                matching_curve(engine, args.participants)
                operator_curve(engine, settings, args.jobs)
                gallery_curve(engine, args.queued)
                print(f"  ({time.perf_counter() - started:.0f} s for {kind}, building included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
