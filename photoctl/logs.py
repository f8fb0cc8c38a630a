"""Logging: human lines on stderr and, where ``log.file`` is set, one rotating file for all.

The file handler is concurrent-log-handler's, which locks around each write and rotation, so
every worker process and every serve process can append to the same file safely. Operator-facing
lines keep the shapes the service always had ("[PhotoWorker-0] Processing job …").

With ``log.format = json`` the file holds one JSON object per line instead (python-json-logger):
the time, pid, level, logger and message, plus the fields a line was logged with
(``extra=``): ``event`` names what happened (job_started, job_completed, job_failed,
job_retrying, worker_died, shutdown) and ``worker``, ``worker_id``, ``job``, ``photo`` say to
what. Programs
(and the crash tests) read those fields rather than parse the human text, which may change.

-q and -v are about the terminal: -q leaves warnings and errors on stderr, while the shared file
keeps ``log.level`` (a quiet cron job still leaves its record); -v makes both debug.

A worker's two lines per photo (job_started, job_completed) are DEBUG lines for stderr: a cron
mail of `work` holds its start, progress lines and summary, not one line per photo (-v or
``log.level = debug`` shows them). The shared file keeps them at INFO: its job events are the
record programs read. A job that fails or whose photo was refused logs a warning or an error,
shown at every level.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from photoctl.config import Settings

_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def level_for(settings: Settings, verbosity: int) -> int:
    """-v means debug, -q means warnings only; otherwise log.level."""
    if verbosity > 0:
        return logging.DEBUG
    if verbosity < 0:
        return logging.WARNING
    return getattr(logging, settings.log.level.upper())


def file_level_for(settings: Settings, verbosity: int) -> int:
    """The shared log file's level: -v means debug; -q does not lower the record."""
    return level_for(settings, max(verbosity, 0))


def job_fields(
    event: str, worker: str, worker_id: str, job_id: str, photo_id: int | None
) -> dict[str, Any]:
    """The structured fields (``extra=``) of a worker's line about a job."""
    # worker_id is host:supervisor pid:index:random, as in the jobs and workers tables.
    return {
        "event": event,
        "worker": worker,
        "worker_id": worker_id,
        "job": job_id,
        "photo": photo_id,
    }


PER_PHOTO_EVENTS = frozenset({"job_started", "job_completed"})


def _not_per_photo(record: logging.LogRecord) -> bool:
    """Leaves out a worker's routine line about one photo (see the module docstring)."""
    routine = record.levelno < logging.WARNING
    return not (routine and getattr(record, "event", None) in PER_PHOTO_EVENTS)


def _file_formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(
            "{asctime}{process}{levelname}{name}{message}",
            style="{",
            rename_fields={
                "asctime": "time",
                "process": "pid",
                "levelname": "level",
                "name": "logger",
            },
        )
    return logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s")


def setup_logging(settings: Settings, verbosity: int = 0) -> None:
    """Configure the root logger for this process (call once per process, children too)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    level = level_for(settings, verbosity)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(level)
    stderr.setFormatter(logging.Formatter(_FORMAT))
    if level > logging.DEBUG:
        stderr.addFilter(_not_per_photo)
    root.addHandler(stderr)
    if settings.log.file:
        level = min(level, file_level_for(settings, verbosity))
        from concurrent_log_handler import ConcurrentRotatingFileHandler

        path = Path(settings.log.file)
        path.parent.mkdir(parents=True, exist_ok=True)
        shared = ConcurrentRotatingFileHandler(
            str(path),
            maxBytes=settings.log.max_bytes,
            backupCount=settings.log.backup_count,
            encoding="utf-8",
        )
        shared.setLevel(file_level_for(settings, verbosity))
        shared.setFormatter(_file_formatter(settings.log.format))
        root.addHandler(shared)
    root.setLevel(level)
    # Library chatter is only interesting when debugging.
    for noisy in ("alembic", "sqlalchemy", "PIL", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
