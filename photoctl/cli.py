"""The `photoctl` command line: parse options, call one function, print, map errors to exit codes.

Exit codes: 0 success, 1 the command ran but some items failed (or a runtime error), 2 bad usage
or configuration. Machine-readable output goes to stdout; messages and progress to stderr, with
progress bars only when stderr is a terminal; -q leaves warnings and errors only. SIGTERM and a
closed stdout (`photoctl jobs list | head -1`) end a command quietly with 0: long-running loops
stop at their next safe point, anything else unwinds (transactions roll back).
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from dotenv import load_dotenv

from photoctl import config as config_module
from photoctl import db, queue
from photoctl.config import Settings
from photoctl.errors import ConfigError, NoDatabase, NotFound, PhotoctlError, TransientError
from photoctl.logs import setup_logging
from photoctl.models import JobState


class UsageProblem(click.ClickException):
    exit_code = 2


class Stopped(BaseException):  # noqa: N818 - a request, like KeyboardInterrupt, not a failure
    """SIGTERM or a closed stdout: end the command quietly with exit code 0.

    A BaseException, so no `except Exception` on the way swallows it, and click (which turns a
    broken pipe into exit 1) lets it through.
    """


class _StopRequest:
    """SIGTERM as a request. Inside `deferred()` it only sets a flag that the command's loop
    checks at its next safe point; anywhere else it raises Stopped at once."""

    def __init__(self) -> None:
        self.requested = False
        self._deferring = 0

    def on_signal(self, signum: int, _frame: object) -> None:
        self.requested = True
        if not self._deferring:
            raise Stopped

    @contextmanager
    def deferred(self) -> Iterator[_StopRequest]:
        self._deferring += 1
        try:
            yield self
        finally:
            self._deferring -= 1

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as a stop was asked (SIGTERM or Ctrl-C)."""
        deadline = time.monotonic() + seconds
        try:
            while not self.requested and time.monotonic() < deadline:
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        except KeyboardInterrupt:
            self.requested = True
        return self.requested


_stop = _StopRequest()


class PhotoctlGroup(click.Group):
    """Turns photoctl's own errors into clean messages and exit codes, for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            if _stdout_is_gone():
                raise Stopped from None  # the reader went away (`| head`): nothing left to do
            raise
        except ConfigError as error:
            raise UsageProblem(str(error)) from None
        except NotFound as error:
            raise click.ClickException(str(error)) from None
        except PhotoctlError as error:
            raise click.ClickException(str(error)) from None


@dataclass
class App:
    """What every command gets: settings, verbosity, and a database engine made on demand.

    Settings that fail to load are kept as their error and raised on first use, so the commands
    that can work without them (`config example`, `doctor`) still run with a broken config.ini.
    """

    loaded: Settings | None
    verbosity: int
    config_error: ConfigError | None = None
    _engine: Any = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self.loaded is None:
            raise self.config_error or ConfigError("no settings")
        return self.loaded

    def engine(self, *, create: bool = False):  # noqa: ANN201 - sqlalchemy.Engine
        """The engine, with the schema upgraded on first use.

        Only commands that bring data in pass ``create=True``; every other one exits 2 on a
        database that does not exist, creating nothing.
        """
        if self._engine is None:
            self._engine = db.open_database(self.settings, create=create)
        return self._engine

    def engine_if_exists(self):  # noqa: ANN201 - sqlalchemy.Engine | None
        """The engine if the database exists, else None (and nothing is created)."""
        try:
            return self.engine()
        except NoDatabase:
            return None

    def engine_unchecked(self):  # noqa: ANN201
        if self._engine is None:
            self._engine = db.make_engine(self.settings, create=False)
        return self._engine

    def face_engine(self):  # noqa: ANN201 - FaceEngine | None
        from photoctl import faces

        return faces.make_engine(self.settings.faces.engine, self.settings, self.engine())

    def show_progress(self) -> bool:
        return self.verbosity >= 0 and sys.stderr.isatty()

    def say(self, message: str) -> None:
        """A summary or note for the operator on stderr; -q silences it (not warnings)."""
        if self.verbosity >= 0:
            click.echo(message, err=True)

    def warn(self, message: str) -> None:
        click.echo(f"warning: {message}", err=True)


def json_option(help_text: str = "Print the result as JSON on stdout.") -> Callable:
    """The one --json flag of every command that has one (parameter name: as_json)."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


pass_app = click.make_pass_decorator(App)


def _load_settings(ctx: click.Context, overrides: dict[str, Any]) -> Settings:
    root = ctx.find_root()
    return config_module.load(
        config_file=root.params.get("config_file"),
        data_dir=root.params.get("data_dir"),
        overrides={"database.url": root.params.get("database_url"), **overrides},
    )


@click.group(cls=PhotoctlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="ini file (default: ./config.ini, then <data dir>/config.ini).",
    envvar="PHOTOCTL_CONFIG",
    show_envvar=True,
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Where the SQLite database, storage and cache live [default: ./photoctl-data].",
    envvar="PHOTOCTL_DATA_DIR",
    show_envvar=True,
)
@click.option(
    "--database-url",
    help="SQLAlchemy URL, e.g. postgresql://user@host/db [default: SQLite in the data dir].",
    envvar="PHOTOCTL_DATABASE_URL",
    show_envvar=True,
)
@click.option(
    "--engine",
    "engine_name",
    type=click.Choice(config_module.ENGINE_NAMES),
    help="Face engine for every command [default: faces.engine, local].",
)
@click.option("-v", "--verbose", count=True, help="Debug logging.")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only; no progress bars.")
@click.version_option(package_name="photoctl")
@click.pass_context
def cli(
    ctx: click.Context,
    config_file: str | None,
    data_dir: str | None,
    database_url: str | None,
    engine_name: str | None,
    verbose: int,
    quiet: bool,
) -> None:
    """photoctl: ingest event photos, process them in the background, serve them.

    \b
    Typical use:
      photoctl ingest ./event-photos
      photoctl work -n 5 --until-empty
      photoctl stats
    """
    verbosity = -1 if quiet else verbose
    try:
        settings, problem = _load_settings(ctx, {"faces.engine": engine_name}), None
    except ConfigError as error:
        settings, problem = None, error
    setup_logging(settings or Settings(), verbosity)
    ctx.obj = App(loaded=settings, verbosity=verbosity, config_error=problem)


def main() -> None:
    """Console entry point. A .env in the working directory fills unset variables."""
    load_dotenv(Path.cwd() / ".env", override=False)
    signal.signal(signal.SIGTERM, _stop.on_signal)
    code = _run()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
    sys.exit(code)


def _stdout_is_gone() -> bool:
    """Whether stdout's reader went away (and not some socket of the command's)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):
        return False
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)  # POLLERR: a pipe whose reader closed
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _drop_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _run() -> int | str | None:
    try:
        outcome = cli.main(prog_name="photoctl", standalone_mode=False)
    except SystemExit as exiting:
        return exiting.code
    except (Stopped, BrokenPipeError):
        return 0  # a stdout that is gone is dropped by main's last flush
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.exceptions.Exit as done:
        return done.exit_code
    except Exception as error:  # noqa: BLE001 - the last line of defence: no traceback by default
        log = logging.getLogger("photoctl")
        log.debug("unexpected error", exc_info=True)
        click.echo(
            f"Error: unexpected {type(error).__name__}: {error} (run with -v for the traceback)",
            err=True,
        )
        return 1
    return outcome if isinstance(outcome, int) else 0


# -- init -----------------------------------------------------------------------------------


@cli.command()
@pass_app
def init(app: App) -> None:
    """Create the data dir and the database at the latest schema; running it again is harmless.

    Only init, ingest and users add create a database: every other command exits 2 on one that
    does not exist, so a cron line run from the wrong directory fails instead of starting afresh.

    \b
    Example:
      photoctl --data-dir /srv/photoctl init
    """
    settings = app.settings
    existed = app.engine_if_exists() is not None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = app.engine(create=True)
    state = "already there" if existed else "created"
    click.echo(
        f"init: database {state} at {db.database_location(settings)} "
        f"(schema {db.current_revision(engine)}); data dir {settings.data_dir}",
        err=True,
    )


# -- ingest ---------------------------------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--album", help="Album name given to the new photos.")
@click.option(
    "--watch",
    is_flag=True,
    help="Keep running and ingest new files as they settle; print only when something changed "
    "(Ctrl-C or SIGTERM stops).",
)
@click.option("--dry-run", is_flag=True, help="Report what would be registered; change nothing.")
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
    watch: bool,
    dry_run: bool,
    ignore: tuple[str, ...],
    as_json: bool,
) -> None:
    """Register every image under PATHS and enqueue one processing job per new photo.

    Same content twice is one photo. Unchanged files are skipped without being read; files
    modified in the last ingest.settle_seconds are still being written: a one-shot run waits up
    to ingest.settle_wait_seconds for them, --watch takes them in a later scan. Exit code 1 if
    any file could not be ingested (each is named with its reason), 2 if a PATH does not exist.

    \b
    Example:
      photoctl ingest ./event-2026 --album "Marathon 2026" --ignore 'Rejects'
    """
    from photoctl.ingest import check_roots, ingest_paths

    check_roots(paths)
    # A dry run reports against the database if there is one, and creates nothing.
    engine = app.engine(create=True) if not dry_run else app.engine_if_exists()
    location = db.database_location(app.settings)
    any_errors = False
    settle_wait = 0.0 if watch or dry_run else app.settings.ingest.settle_wait_seconds
    seen_errors: set[tuple[str, str]] | None = None  # of the previous scan; None: first scan
    seen_unsettled = 0
    with _stop.deferred():
        while True:
            with _progress_bar(app, "hashing", "files") as progress:
                report = ingest_paths(
                    engine,
                    app.settings,
                    paths,
                    album=album,
                    dry_run=dry_run,
                    progress=progress,
                    ignore=ignore,
                    settle_wait=settle_wait,
                    should_stop=lambda: _stop.requested,
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
                if as_json:
                    click.echo(json.dumps(report.as_json()))
                if not as_json or watch:
                    prefix = "dry run: would ingest " if dry_run else "ingest: "
                    app.say(f"{prefix}{report.summary()} (database {location})")
            seen_errors, seen_unsettled = errors, report.unsettled
            if not watch or _stop.wait(app.settings.ingest.watch_interval_seconds):
                break
    if any_errors:
        sys.exit(1)


class _progress_bar:
    """A tqdm bar on a terminal, nothing otherwise; used as the core's progress callback."""

    def __init__(self, app: App, description: str, unit: str) -> None:
        self.enabled = app.show_progress()
        self.description, self.unit = description, unit
        self.bar = None

    def __enter__(self):  # noqa: ANN204
        return self.update if self.enabled else None

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.description, unit=self.unit, leave=False)
        self.bar.total = total
        self.bar.update(done - self.bar.n)  # through update(), so tqdm measures the rate

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.close()


# -- work -----------------------------------------------------------------------------------


@cli.command()
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
    Progress: a bar on a terminal (job lines then only in log.file, or with -v), otherwise a
    log line every log.progress_seconds.

    \b
    Examples:
      photoctl work -n 5                       # run until stopped
      photoctl work --until-empty --max-seconds 3000   # from cron
    """
    from photoctl.supervisor import WorkOptions, run_workers

    app.engine()  # exits 2, creating nothing, when there is no database to work on
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
    with _progress_bar(app, "work", "jobs") as bar:
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
    app.say(
        f"work: {report.done} jobs done, {report.failed} failed, "
        f"{report.restarted} workers restarted in {seconds:.1f} s"
    )
    if report.failed:
        sys.exit(1)


# -- stats ----------------------------------------------------------------------------------


@cli.command()
@json_option("Print the stats object as JSON (one line per --watch round, with a timestamp).")
@click.option(
    "--watch",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Print again every SECONDS until interrupted (Ctrl-C or SIGTERM: exit 0).",
)
@pass_app
def stats(app: App, as_json: bool, watch: float | None) -> None:
    """Queue, photo, cache and time-to-findable figures (as GET /api/admin/queue/stats)."""
    from photoctl import stats as stats_module

    engine = app.engine()
    with _stop.deferred():
        while True:
            with db.read(engine) as conn:
                figures = stats_module.collect(conn, app.settings, cache_stats=_cache(app).stats())
            click.echo(json.dumps(figures) if as_json else stats_module.render(figures))
            if watch is None or _stop.wait(watch):
                return
            if not as_json:
                click.echo("")


# -- jobs -----------------------------------------------------------------------------------


@cli.group(cls=PhotoctlGroup)
def jobs() -> None:
    """Inspect and act on jobs."""


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


@jobs.command("list")
@click.option("--state", type=click.Choice([s.value for s in JobState]), help="Only this state.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option("One JSON object per line.")
@pass_app
def jobs_list(app: App, state: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first.

    \b
    Example:
      photoctl jobs list --state failed
    """
    with db.read(app.engine()) as conn:
        rows = queue.list_jobs(conn, state, limit)
    for job in rows:
        if as_json:
            click.echo(json.dumps(job.__dict__))
        else:
            error = f"  {job.last_error}" if job.last_error else ""
            click.echo(
                f"{job.id}  {job.state:<8}  attempts {job.attempts}  "
                f"{job.filename or job.kind}{error}"
            )


@jobs.command("show")
@click.argument("job_id")
@json_option("Print the job as one JSON object (times as epoch seconds).")
@pass_app
def jobs_show(app: App, job_id: str, as_json: bool) -> None:
    """Everything about one job (an id or a unique prefix of one)."""
    with db.read(app.engine()) as conn:
        job = queue.get_job(conn, job_id)
    if as_json:
        click.echo(json.dumps(job.__dict__))
        return
    for label, value in [
        ("id", job.id),
        ("kind", job.kind),
        ("photo", job.photo_id),
        ("file", job.filename),
        ("state", job.state),
        ("attempts", job.attempts),
        ("created", _when(job.created_at)),
        ("run at", _when(job.run_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
        ("lease until", _when(job.lease_expires_at)),
        ("worker", job.worker_id or "-"),
        ("last error", job.last_error or "-"),
    ]:
        click.echo(f"{label + ':':<13}{value}")


@jobs.command("retry")
@click.argument("job_ids", nargs=-1)
@click.option("--failed", is_flag=True, help="Retry every failed job.")
@json_option('Print {"queued_again": N} on stdout.')
@pass_app
def jobs_retry(app: App, job_ids: tuple[str, ...], failed: bool, as_json: bool) -> None:
    """Queue failed (or done) jobs again with fresh attempts.

    \b
    Examples:
      photoctl jobs retry --failed
      photoctl jobs retry 8f3a1c2d
    """
    if not job_ids and not failed:
        raise UsageProblem("give job ids or --failed")
    with db.write(app.engine()) as conn:
        ids = [queue.resolve_job_id(conn, job_id) for job_id in job_ids]
        count = queue.retry_jobs(conn, ids, failed=failed)
    if as_json:
        click.echo(json.dumps({"queued_again": count}))
    app.say(f"{count} jobs queued again")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        match = _DURATION.match(str(value))
        if not match:
            self.fail(f"{value!r} is not a duration like 90s, 30m, 12h or 7d", param, ctx)
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@jobs.command("prune")
@click.option(
    "--older-than",
    type=Duration(),
    required=True,
    help="Age of finished jobs to delete, e.g. 7d, 12h.",
)
@click.option(
    "--include-failed", is_flag=True, help="Delete failed jobs too (their reasons are lost)."
)
@json_option('Print {"pruned": N} on stdout.')
@pass_app
def jobs_prune(app: App, older_than: float, include_failed: bool, as_json: bool) -> None:
    """Delete finished jobs older than a duration (done ones; failed ones only if asked)."""
    with db.write(app.engine()) as conn:
        count = queue.prune_jobs(conn, older_than, include_failed=include_failed)
    if as_json:
        click.echo(json.dumps({"pruned": count}))
    app.say(f"{count} jobs pruned")


# -- config and doctor ----------------------------------------------------------------------


@cli.group(cls=PhotoctlGroup)
def config() -> None:
    """Show the effective configuration."""


@config.command("show")
@json_option("Print as a JSON object.")
@pass_app
def config_show(app: App, as_json: bool) -> None:
    """Every key with its effective value and where that value came from."""
    rows = config_module.describe(app.settings)
    if as_json:
        click.echo(
            json.dumps({key: {"value": value, "source": source} for key, value, source in rows})
        )
        return
    for key, value, source in rows:
        click.echo(f"{key} = {value}" + (f"    ({source})" if source else ""))


@config.command("example")
def config_example() -> None:
    """Print an example config.ini with every key, its default and its meaning."""
    click.echo(config_module.example_ini(), nl=False)


@cli.command()
@json_option('Print {"ok": bool, "checks": [{"name", "ok", "detail"}, ...]} on stdout.')
@pass_app
def doctor(app: App, as_json: bool) -> None:
    """Check the configuration, the database, the schema and the storage root; say how to fix
    what is wrong. Exit code 1 if any check fails, 2 if there is no database at all."""
    from photoctl.doctor import config_failure, run_checks

    try:
        settings = app.settings
        checks = None
    except ConfigError as error:
        # The other checks need the settings: a broken file is the one thing to fix first.
        checks = [config_failure(error)]
    if checks is None:
        engine = app.engine_unchecked()
        try:
            if not db.database_exists(settings, engine):
                raise NoDatabase(db.database_location(settings))
        except TransientError:
            pass  # unreachable: the database check says so, with what to do
        checks = run_checks(settings, engine)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": all(check.ok for check in checks),
                    "checks": [
                        {"name": check.name, "ok": check.ok, "detail": check.detail}
                        for check in checks
                    ],
                }
            )
        )
    else:
        for check in checks:
            mark = "ok  " if check.ok else "FAIL"
            click.echo(f"[{mark}] {check.name}: {check.detail}")
    if not all(check.ok for check in checks):
        sys.exit(1)


# -- users ----------------------------------------------------------------------------------


@cli.group(cls=PhotoctlGroup)
def users() -> None:
    """Manage users: accounts, API tokens, selfies."""


def _require_engine(app: App):  # noqa: ANN202
    engine = app.face_engine()
    if engine is None:
        raise UsageProblem("enrolling needs a face engine; give --engine local or rekognition")
    return engine


_LARGEST = click.option(
    "--largest",
    is_flag=True,
    help="When the selfie shows several faces, enroll the largest (default: refuse it).",
)


def _enroll(app: App, name: str, selfie: Path, largest: bool) -> int:
    from photoctl import users as users_module
    from photoctl.errors import SeveralFaces

    try:
        return users_module.enroll(
            app.engine(), _require_engine(app), app.settings, name, selfie, largest=largest
        )
    except SeveralFaces as several:
        raise click.ClickException(
            f"{several}: crop it to the user's face, or give --largest to enroll the largest one"
        ) from None


@users.command("add")
@click.argument("name")
@click.option(
    "--selfie",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Enroll this selfie at once (existing photos are matched).",
)
@_LARGEST
@click.option("--admin", is_flag=True, help="May use the admin routes.")
@click.option("--password", is_flag=True, help="Prompt for a password (for /api/login).")
@pass_app
def users_add(
    app: App, name: str, selfie: Path | None, largest: bool, admin: bool, password: bool
) -> None:
    """Create a user and print their new API token alone on stdout.

    \b
    Example:
      TOKEN=$(photoctl users add alice --selfie alice.jpg)
    """
    from photoctl import users as users_module

    secret = None
    if password:
        secret = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    _, token = users_module.add_user(app.engine(create=True), name, admin=admin, password=secret)
    if selfie is not None:
        try:
            count = _enroll(app, name, selfie, largest)
        except (PhotoctlError, click.ClickException):
            users_module.delete_user(app.engine(), None, name)
            raise
        app.say(f"{name} enrolled: matched in {count} photos")
    click.echo(token)


@users.command("enroll")
@click.argument("name")
@click.option(
    "--selfie", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@_LARGEST
@pass_app
def users_enroll(app: App, name: str, selfie: Path, largest: bool) -> None:
    """Enroll or replace a user's selfie; their existing photos are matched at once.

    A selfie showing several faces is refused unless --largest says to take the largest.

    \b
    Example:
      photoctl users enroll bob --selfie bob.jpg
    """
    count = _enroll(app, name, selfie, largest)
    app.say(f"{name} enrolled: matched in {count} photos")


@users.command("token")
@click.argument("name")
@pass_app
def users_token(app: App, name: str) -> None:
    """Replace a user's API token; prints the new one alone on stdout."""
    from photoctl import users as users_module

    click.echo(users_module.rotate_token(app.engine(), name))


@users.command("list")
@json_option("One JSON object per line.")
@pass_app
def users_list(app: App, as_json: bool) -> None:
    """Users with their role, enrollment and number of matched photos."""
    from photoctl import users as users_module

    for user in users_module.list_users(app.engine()):
        if as_json:
            click.echo(json.dumps(user.__dict__))
        else:
            role = "admin" if user.is_admin else "user"
            enrolled = "enrolled" if user.enrolled else "not enrolled"
            click.echo(f"{user.name}  {role}  {enrolled}  {user.photos} photos")


@users.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the user and photos.")
@pass_app
def users_show(app: App, name: str, as_json: bool) -> None:
    """A user's role and enrollment, and every photo they are matched in (newest first).

    \b
    Example:
      photoctl users show alice
    """
    from photoctl import users as users_module

    user, photos = users_module.show_user(app.engine(), name)
    if as_json:
        click.echo(json.dumps({**user.__dict__, "matched": [p.__dict__ for p in photos]}))
        return
    role = "admin" if user.is_admin else "user"
    enrolled = "enrolled" if user.enrolled else "not enrolled"
    click.echo(f"{user.name}  {role}  {enrolled}  {user.photos} photos")
    for photo in photos:
        album = f"  album {photo.album}" if photo.album else ""
        click.echo(f"  {photo.id}  {photo.filename}  {photo.similarity:.1f}%{album}")


@users.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def users_delete(app: App, name: str, yes: bool) -> None:
    """Delete a user with all their biometric data, in the face engine's index too.

    On a terminal it asks first (--yes does not); from scripts and cron, where stdin is not a
    terminal, it deletes without asking, as it always did.
    """
    from photoctl import users as users_module

    engine = app.engine()
    users_module.user_id_by_name(engine, name)  # an unknown name fails before the question
    if not yes and sys.stdin.isatty():
        question = f"Delete user {name!r} with their selfie and matches?"
        if not click.confirm(question, default=False, err=True):
            click.echo(f"{name} not deleted", err=True)
            sys.exit(1)
    users_module.delete_user(engine, app.face_engine(), name, cache=_cache(app, scoped=True))
    app.say(f"{name} deleted")
    if db.is_postgresql(engine):
        click.echo(
            "PostgreSQL keeps the deleted rows' bytes on disk until the next VACUUM of their "
            "tables (autovacuum runs it; `VACUUM users, selfie_faces` does it now)",
            err=True,
        )


# -- cache ----------------------------------------------------------------------------------


def _cache(app: App, *, scoped: bool = False):  # noqa: ANN202
    """The response cache; ``scoped`` to this database's entries (needs the database)."""
    from photoctl.cache import ResponseCache

    engine = app.engine()  # the cache belongs to a database: none there, nothing to create
    return ResponseCache(app.settings, db.database_id(engine) if scoped else None)


@cli.group(cls=PhotoctlGroup)
def cache() -> None:
    """The response cache shared by every local serve process."""


@cache.command("clear")
@pass_app
def cache_clear(app: App) -> None:
    """Empty the response cache (every serve process on this machine sees it at once)."""
    removed = _cache(app).clear()
    app.say(f"cache cleared ({removed} entries)")


@cache.command("stats")
@json_option("Print as JSON.")
@pass_app
def cache_stats(app: App, as_json: bool) -> None:
    """Entries, hits, misses and hit rate of the response cache."""
    figures = _cache(app).stats()
    if as_json:
        click.echo(json.dumps(figures))
    else:
        click.echo(
            f"{figures['size']} entries, {figures['hits']} hits, "
            f"{figures['misses']} misses, hit rate {figures['hit_rate']:.1%}"
        )


# -- serve ----------------------------------------------------------------------------------


def _listen_without_nagle() -> None:
    """TCP_NODELAY on the socket uvicorn binds itself for --workers N (N > 1).

    uvicorn creates that listener with proto 0, and asyncio sets TCP_NODELAY only on accepted
    sockets whose proto is IPPROTO_TCP (uvicorn issue #3149): every keep-alive response after
    the first then waits ~40 ms for the client's delayed ACK (44 ms per request measured with
    scripts/bench_serve.py --serve-workers 2). Accepted sockets inherit TCP_NODELAY from the
    listener, so it is set there. --workers 1 is not affected (asyncio binds that listener).
    """
    import socket

    from uvicorn.config import Config

    bind_socket = Config.bind_socket
    if getattr(bind_socket, "photoctl_nodelay", False):
        return

    def bind_without_nagle(self: Config) -> socket.socket:
        sock = bind_socket(self)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    bind_without_nagle.photoctl_nodelay = True
    Config.bind_socket = bind_without_nagle


def _check_can_listen(host: str, port: int) -> None:
    """UsageProblem (one line, exit 2) if host:port cannot be bound, e.g. already in use.

    uvicorn would log the bind error with its own prefix and exit 1; binding once here, the way
    uvicorn binds (SO_REUSEADDR), turns it into photoctl's one `Error:` line.
    """
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise UsageProblem(f"cannot listen on {host}:{port}: {error.strerror}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            reason = (error.strerror or str(error)).lower()
            raise UsageProblem(
                f"cannot listen on {host}:{port}: {reason} (give another --port or serve.port)"
            ) from None


@cli.command()
@click.option("--host", help="Address to listen on [default: serve.host, 127.0.0.1].")
@click.option("--port", type=click.IntRange(1, 65535), help="Port [default: serve.port, 8000].")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="uvicorn worker processes [default: serve.workers, 1].",
)
@pass_app
def serve(app: App, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the HTTP API (OpenAPI docs at /docs).

    \b
    Example:
      photoctl serve --port 8000 --workers 2
    """
    import os

    import uvicorn

    settings = app.settings
    app.engine()  # create or upgrade the schema once, before the workers start
    # uvicorn's worker processes build the app from the environment: hand them our settings.
    os.environ["PHOTOCTL_DATA_DIR"] = str(settings.data_dir)
    os.environ["PHOTOCTL_DATABASE_URL"] = settings.database_url
    os.environ["PHOTOCTL_FACES_ENGINE"] = settings.faces.engine
    if settings.config_file:
        os.environ["PHOTOCTL_CONFIG"] = str(settings.config_file.resolve())
    host, port = host or settings.serve.host, port or settings.serve.port
    _check_can_listen(host, port)
    _listen_without_nagle()
    uvicorn.run(
        "photoctl.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers or settings.serve.workers,
        log_level="warning" if app.verbosity < 0 else "info",
        access_log=app.verbosity > 0,
    )
