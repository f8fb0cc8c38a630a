"""`photoctl ingest` and `photoctl work`: bringing photos in, and processing them.

Both are long-running and stop on SIGTERM at a safe point: ingest between files (and between
--watch scans), work by letting its workers finish or release the jobs in hand.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from photoctl import config as config_module
from photoctl import db, storage_identity
from photoctl.cli.common import App, json_option, pass_app, progress_bar, stop_request, watch_loop
from photoctl.errors import ConfigError
from photoctl.wording import plural

if TYPE_CHECKING:
    from sqlalchemy import Engine


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--album", help="Album name given to the new photos.")
@click.option(
    "--event",
    "event_slug",
    metavar="SLUG",
    help="Event the new photos belong to (see `photoctl events`); a closed event still takes "
    "photos, a purged one does not [default: the default event].",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Keep running and ingest new files as they settle; print only when something changed "
    "(Ctrl-C or SIGTERM stops).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Report what would be registered, and with the rekognition engine the calls and cost "
    "the new photos will need; change nothing.",
)
@click.option(
    "--ignore",
    "ignore",
    multiple=True,
    metavar="GLOB",
    help="Skip files and folders whose name matches GLOB (repeatable), besides ingest.ignore "
    "[default: @eaDir, #recycle, .thumbnails, $RECYCLE.BIN].",
)
@json_option("Print the summary as JSON on stdout.")
@pass_app
def ingest(
    app: App,
    paths: tuple[str, ...],
    album: str | None,
    event_slug: str | None,
    watch: bool,
    dry_run: bool,
    ignore: tuple[str, ...],
    as_json: bool,
) -> None:
    """Register every image under PATHS and enqueue one processing job per new photo.

    Same content twice is one photo, of the event it was first ingested for. Unchanged files
    are skipped without being read; files modified in the last ingest.settle_seconds are still
    being written: a one-shot run waits up to ingest.settle_wait_seconds for them, --watch takes
    them in a later scan. Exit code 1 if any file could not be ingested (each is named with its
    reason), 2 if a PATH or the event does not exist.

    \b
    Example:
      photoctl ingest ./event-2026 --album "Marathon 2026" --ignore 'Rejects'
      photoctl ingest ./finish-line --event marathon-2026
    """
    from photoctl.ingest import check_roots, ingest_paths

    check_roots(paths)
    # A dry run reports against the database if there is one, and creates nothing.
    engine = app.engine(create=True) if not dry_run else app.engine_if_exists()
    if engine is not None:
        storage_identity.ensure_same(app.settings, engine, record=not dry_run)
    event_id = _event_for_photos(engine, event_slug)
    location = db.database_location(app.settings)
    any_errors = False
    # A dry run waits as the real run would: right after a card is copied, its estimate would
    # otherwise count none of the files still being written.
    settle_wait = 0.0 if watch else app.settings.ingest.settle_wait_seconds
    seen_errors: set[tuple[str, str]] | None = None  # of the previous scan; None: first scan
    seen_unsettled = 0

    def scan(_round: int) -> None:
        nonlocal any_errors, seen_errors, seen_unsettled
        with progress_bar(app, "hashing", "files") as progress:
            report = ingest_paths(
                engine,
                app.settings,
                paths,
                album=album,
                event_id=event_id,
                dry_run=dry_run,
                progress=progress,
                ignore=ignore,
                settle_wait=settle_wait,
                should_stop=lambda: stop_request.requested,
            )
        any_errors = any_errors or bool(report.errors)
        errors = set(report.errors)
        # --watch: the same errors and the same files still being written, scan after
        # scan, are not news; new files, new errors and settled files are.
        changed = (
            seen_errors is None
            or report.new
            or report.duplicates
            or report.unsettled != seen_unsettled
            or errors != seen_errors
        )
        if changed:
            for name, reason in report.errors:
                if seen_errors is None or (name, reason) not in seen_errors:
                    click.echo(f"error: {name}: {reason}", err=True)
            if seen_errors is None and not report.found and not report.errors:
                app.warn(f"no images found under {', '.join(paths)}")
            costs = _dry_run_costs(app, engine, event_id) if dry_run else None
            estimate = costs(report.new) if costs else None
            if as_json:
                extra = {"rekognition": estimate.as_json()} if estimate else {}
                click.echo(json.dumps({**report.as_json(), **extra}))
            if not as_json or watch:
                prefix = "dry run: would ingest " if dry_run else "ingest: "
                app.say(f"{prefix}{report.summary()} (database {location})")
                if estimate:
                    app.say(f"dry run: {estimate.describe()}")
        seen_errors, seen_unsettled = errors, report.unsettled

    watch_loop(app.settings.ingest.watch_interval_seconds if watch else None, scan)
    if any_errors:
        sys.exit(1)


def _dry_run_costs(app: App, engine: Engine | None, event_id: int) -> Any:
    """With the rekognition engine: new photos -> their CallEstimate (ingest_estimate.py)."""
    if app.settings.faces.engine != "rekognition":
        return None
    from photoctl.ingest_estimate import estimate

    return lambda new_photos: estimate(engine, app.settings, event_id, new_photos)


def _event_for_photos(engine: Engine | None, slug: str | None) -> int:
    """The id of the event new photos go to; ConfigError (exit 2) for an unknown or purged one."""
    from photoctl import events
    from photoctl.models import DEFAULT_EVENT_ID

    if slug is None:
        return DEFAULT_EVENT_ID
    event = events.require_event(engine, slug) if engine is not None else None
    if event is None:
        raise events.UnknownEvent(slug)
    if event.purged_at is not None:
        raise ConfigError(
            f"event {slug!r} was purged on {event.face_data_deleted_on}: it takes no photos"
        )
    return event.id


@click.command()
@click.option(
    "-n",
    "--workers",
    type=click.IntRange(min=1),
    help="Worker processes [default: queue.workers, 3; env PHOTO_QUEUE_WORKERS].",
)
@click.option(
    "--until-empty",
    is_flag=True,
    help="Exit once nothing is queued, retrying or running (for cron).",
)
@click.option("--max-jobs", type=click.IntRange(min=1), help="Stop after claiming this many jobs.")
@click.option(
    "--max-seconds",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop (gracefully) after this many seconds.",
)
@click.option(
    "--engine",
    "engine_name",
    type=click.Choice(config_module.ENGINE_NAMES),
    help="Face engine [default: faces.engine].",
)
@json_option("Print the final report (done, failed, restarted, seconds) as JSON on stdout.")
@pass_app
def work(
    app: App,
    workers: int | None,
    until_empty: bool,
    max_jobs: int | None,
    max_seconds: float | None,
    engine_name: str | None,
    as_json: bool,
) -> None:
    """Run worker processes that process queued photos.

    SIGINT/SIGTERM: stop claiming, finish or release the jobs in hand, exit. A worker that
    dies is replaced and its jobs requeued. Exit code 1 if any job failed during this run.
    Progress: a bar on a terminal, otherwise a log line every log.progress_seconds; the lines
    about each photo only with -v (log.file keeps them). -q leaves warnings, errors and the
    final summary line (none when nothing ran).

    \b
    Examples:
      photoctl work -n 5                       # run until stopped
      photoctl work --until-empty --max-seconds 3000   # from cron
    """
    from photoctl.supervisor import WorkOptions, run_workers

    # Exits 2, creating nothing, when there is no database to work on, or when this machine's
    # storage is not the database's (its thumbnails would land where serve never looks).
    storage_identity.ensure_same(app.settings, app.engine())
    settings = app.settings
    if engine_name:
        settings = settings.replace("faces", engine=engine_name)
    options = WorkOptions(
        workers=workers or settings.queue.workers,
        until_empty=until_empty,
        max_jobs=max_jobs,
        max_seconds=max_seconds,
    )
    started = time.monotonic()
    with progress_bar(app, "work", "jobs") as bar:
        progress = (lambda p: bar(p.finished, p.finished + p.remaining)) if bar else None
        # Under a bar, two lines a job would scroll it away: workers keep warnings and errors
        # on the terminal (-v shows everything; log.file keeps its level either way).
        child_verbosity = -1 if bar and app.verbosity == 0 else app.verbosity
        report = run_workers(settings, options, child_verbosity, progress=progress)
    seconds = time.monotonic() - started
    if as_json:
        click.echo(
            json.dumps(
                {
                    "done": report.done,
                    "failed": report.failed,
                    "restarted": report.restarted,
                    "seconds": round(seconds, 3),
                }
            )
        )
    summary = (
        f"work: {plural(report.done, 'job')} done, {report.failed} failed, "
        f"{plural(report.restarted, 'worker')} restarted in {seconds:.1f} s"
    )
    # With -q too, once anything ran: a cron mail of `work -q` holds what the run did, and an
    # idle run (cron every minute) sends none.
    if app.verbosity >= 0 or report.done or report.failed or report.restarted:
        click.echo(summary, err=True)
    if report.failed:
        sys.exit(1)
