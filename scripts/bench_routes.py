"""CPU per request of serve's read routes, in-process: the ASGI app driven directly.

No HTTP server, no client, no other process: each request is one call of the app (its
middleware, routing, dependencies, thread pool hand-offs, cache and database), so the CPU time
of this process per request is the route's own cost, and it holds on a machine busy with other
work far better than a latency does. Set-up: a fresh SQLite data dir, 200 photos processed
with the `none` face engine, one participant of the default event matched to 100 of them (full
48-photo gallery pages) and one user matched to the other 100 (/api/my-photos lists 50).

To compare two versions, run it with each on PYTHONPATH, back to back (this script imports
photoctl from wherever Python finds it):

    .venv/bin/python scripts/bench_routes.py
    PYTHONPATH=/path/to/old/checkout .venv/bin/python scripts/bench_routes.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import select

from photoctl import config, db, events, participant_store, users
from photoctl.api.app import create_app
from photoctl.ingest import ingest_paths
from photoctl.models import Face, Match, Photo
from photoctl.worker import drain_in_process

SETTLED_AGE_SECONDS = 3600


def _photos(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    past = time.time() - SETTLED_AGE_SECONDS
    for index in range(count):
        path = folder / f"photo_{index:03d}.jpg"
        Image.new("RGB", (320, 240), (index % 256, 90, 160)).save(path, "JPEG")
        os.utime(path, (past, past))


def _match(database: Any, photo_ids: list[int], user_id: int) -> None:
    now = time.time()
    with db.write(database) as conn:
        for photo_id in photo_ids:
            face_id = conn.execute(
                Face.__table__.insert()
                .values(
                    photo_id=photo_id, engine="local", face_index=0, box_left=0.4, box_top=0.2,
                    box_width=0.2, box_height=0.3, score=0.99, embedding=bytes(128 * 4),
                )
                .returning(Face.__table__.c.id)
            ).scalar_one()  # fmt: skip
            conn.execute(
                Match.__table__.insert().values(
                    photo_id=photo_id, user_id=user_id, face_id=face_id, similarity=93.5,
                    matched_at=now, source="photo", findable_at=now,
                )
            )  # fmt: skip


def _person(database: Any, event: events.Event, name: str) -> tuple[int, str, str]:
    """A user of the event with an API token and a gallery token: (id, api, gallery)."""
    api, gallery = users.new_token(), users.new_token()
    with db.write(database) as conn:
        person = participant_store.insert_participant(
            conn, event_id=event.id, name=name, token_hash=users.hash_token(api),
            gallery_token_hash=users.hash_token(gallery), consent_version=event.consent_version,
            now=time.time(),
        )  # fmt: skip
    return person, api, gallery


async def _call(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    status = 0

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    await app(scope, receive, send)
    return status


async def _measure(app: Any, routes: dict, requests: int, rounds: int) -> dict[str, float]:
    best: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        for name, (path, headers) in routes.items():
            if await _call(app, path, headers) != 200:
                raise SystemExit(f"{name} did not answer 200")
        for _ in range(rounds):
            for name, (path, headers) in routes.items():
                began = time.process_time()
                for _ in range(requests):
                    await _call(app, path, headers)
                cost = (time.process_time() - began) / requests * 1000
                best[name] = min(best.get(name, cost), cost)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per route and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the best is printed)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="photoctl-bench-routes-"))
    try:
        settings = config.load(
            data_dir=str(tmp / "data"),
            environ={},
            overrides={"database.url": f"sqlite:///{tmp / 'data' / 'photoctl.db'}"},
        )
        database = db.make_engine(settings)
        db.ensure_schema(database)
        event = events.get_event(database, "default")
        assert event is not None
        _photos(tmp / "photos", 200)
        ingest_paths(database, settings, [str(tmp / "photos")], event_id=event.id)
        drain_in_process(settings, "none")
        with db.read(database) as conn:
            photo_ids = sorted(conn.execute(select(Photo.id)).scalars())
        participant, _, gallery = _person(database, event, "p-bench")
        user, api, _ = _person(database, event, "u-bench")
        _match(database, photo_ids[:100], participant)
        _match(database, photo_ids[100:], user)
        database.dispose()
        routes = {
            "/api/my-photos": ("/api/my-photos", [(b"authorization", f"Bearer {api}".encode())]),
            "/g/<token>": (f"/g/{gallery}", []),
            "/api/g/<token>": (f"/api/g/{gallery}", []),
            "/healthz": ("/healthz", []),
        }
        costs = asyncio.run(_measure(create_app(settings), routes, args.requests, args.rounds))
        for name, cost in costs.items():
            print(f"{name:16s} {cost:6.2f} ms CPU per request (best of {args.rounds} x "
                  f"{args.requests})")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
