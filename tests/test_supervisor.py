"""The supervisor called from code: it takes the face engine from the settings, and it gives
back the signal handlers it borrowed."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from photoctl import db
from photoctl.ingest import ingest_paths
from photoctl.models import Face
from photoctl.supervisor import WorkOptions, run_workers, stop_signals_handled
from testkit.photos import settle

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
