"""The supervisor called from code: it takes the face engine from the settings, it gives back
the signal handlers it borrowed, and with --until-empty it starts no worker for an idle queue."""

from __future__ import annotations

import logging
import shutil
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from photoctl import db
from photoctl.ingest import ingest_paths
from photoctl.models import Face, Job, JobState, Worker
from photoctl.supervisor import WorkOptions, run_workers, stop_signals_handled
from testkit.photos import settle, write_photo

DATA = Path(__file__).parent / "data"


def test_run_workers_from_code_finds_faces_with_the_configured_engine(
    settings,
    engine,
    tmp_path: Path,
) -> None:
    """faces.engine defaults to `local`: a run started from code (not the CLI) uses it too.

    WorkOptions had an engine of its own that defaulted to `none`, so such a run processed
    every photo without looking for faces.
    """
    assert settings.faces.engine == "local"
    folder = tmp_path / "event"
    folder.mkdir()
    shutil.copy(DATA / "biden.jpg", folder / "biden.jpg")
    settle(folder / "biden.jpg")
    ingest_paths(engine, settings, [str(folder)])
    report = run_workers(settings, WorkOptions(workers=1, until_empty=True))
    assert (report.done, report.failed, report.restarted) == (1, 0, 0)
    with db.read(engine) as conn:
        assert conn.execute(select(func.count()).select_from(Face)).scalar_one() == 1


def test_stop_signal_handlers_are_restored_even_when_the_run_fails() -> None:
    def flag(signum: int, _frame: object) -> None:
        pass

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(RuntimeError), stop_signals_handled(flag):
        assert signal.getsignal(signal.SIGINT) is flag
        assert signal.getsignal(signal.SIGTERM) is flag
        raise RuntimeError("the supervisor failed")
    assert {sig: signal.getsignal(sig) for sig in before} == before


def count(engine, model) -> int:
    with db.read(engine) as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def test_until_empty_on_an_idle_queue_starts_no_worker_and_no_face_engine(
    settings, engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Cron runs `work --until-empty` every few minutes; on an idle queue it costs one query,
    not a forkserver, a dlib model load (faces.engine is `local`) or a call to the service."""
    caplog.set_level(logging.INFO, logger="photoctl")
    report = run_workers(settings, WorkOptions(workers=3, until_empty=True))
    assert (report.done, report.failed, report.restarted) == (0, 0, 0)
    assert count(engine, Worker) == 0
    said = [r for r in caplog.records if getattr(r, "event", None) == "nothing_to_do"]
    assert said and "no worker started" in said[0].getMessage()
    assert not [r for r in caplog.records if "Face engine" in r.getMessage()]


def test_until_empty_waits_for_a_job_that_retries_later(settings, engine, tmp_path) -> None:
    """A job waiting to retry is unfinished: the run starts its workers and waits for it."""
    folder = tmp_path / "event"
    write_photo(folder / "a.jpg", seed=1)
    ingest_paths(engine, settings, [str(folder)])
    with db.write(engine) as conn:
        conn.execute(update(Job).values(state=JobState.RETRYING, run_at=time.time() + 1.0))
    none = settings.replace("faces", engine="none")
    report = run_workers(none, WorkOptions(workers=1, until_empty=True))
    assert (report.done, report.failed) == (1, 0)
    assert count(engine, Worker) == 1
