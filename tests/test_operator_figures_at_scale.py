"""`stats`, `jobs list` and `events show` read indexes, not every job; a gallery's "still
processing" figure never makes a request wait for a count, but an event's first.

The plans are asked of each database (EXPLAIN), so the test holds on a loaded machine: at a
million jobs a scan cost 1.2-1.5 s where these cost milliseconds (scripts/bench_scale.py).
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine, text

from photoctl import db
from photoctl.api.processing_figures import ProcessingFigures
from tests.support.cli import photoctl_env, run_photoctl


def _plan(engine: Engine, sql: str) -> str:
    with db.read(engine) as conn:
        if db.is_postgresql(conn):
            conn.execute(text("SET LOCAL enable_seqscan = off"))  # an empty table: ask for real
            rows = conn.execute(text(f"EXPLAIN {sql}")).scalars()
        else:
            rows = (row[3] for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
        return "\n".join(rows)


def test_the_operators_figures_read_indexes(engine: Engine) -> None:
    newest = _plan(engine, "SELECT id FROM jobs ORDER BY created_at DESC, id LIMIT 50")
    assert "ix_jobs_created_at" in newest
    by_state = _plan(
        engine,
        "SELECT id FROM jobs WHERE state = 'failed' ORDER BY created_at DESC, id LIMIT 50",
    )
    assert "ix_jobs_state_created_at" in by_state
    oldest = _plan(engine, "SELECT min(created_at) FROM jobs WHERE state = 'queued'")
    assert "ix_jobs_state_created_at" in oldest
    photos = _plan(
        engine,
        "SELECT state, count(*) FROM jobs WHERE kind = 'process_photo' GROUP BY state",
    )
    assert "ix_jobs_kind_state" in photos
    refused = _plan(engine, "SELECT count(*) FROM photos WHERE faces_error IS NOT NULL")
    assert "ix_photos_faces_error" in refused


def test_the_commands_answer_with_their_figures(tmp_path, db_url: str) -> None:
    env = photoctl_env(tmp_path, db_url)
    for args in (["stats", "--json"], ["jobs", "list"], ["events", "show", "default"]):
        done = run_photoctl(args, env)
        assert done.returncode == 0, done.stderr


def test_a_gallery_waits_for_no_count_but_its_events_first() -> None:
    counted: list[int] = []
    release = threading.Event()

    def slow_count(event_id: int) -> int:
        counted.append(event_id)
        if len(counted) > 1:
            release.wait(5)  # a recount during a big backlog
        return 100 + len(counted)

    figures = ProcessingFigures(slow_count)
    figures.refresh_seconds = 0.05
    assert figures.of(7) == 101  # the event's first figure is counted in the request
    time.sleep(0.1)
    started = time.perf_counter()
    answers = [figures.of(7) for _ in range(50)]
    assert time.perf_counter() - started < 0.5  # none waited for the recount under way
    assert set(answers) == {101} and len(counted) == 2  # one recount at a time
    release.set()
    deadline = time.monotonic() + 5
    while figures.of(7) != 102 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert figures.of(7) == 102
