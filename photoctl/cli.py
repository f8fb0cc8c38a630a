"""The `photoctl` command line: parse options, call one function, print, map errors to exit codes.

Exit codes: 0 success, 1 the command ran but some items failed (or a runtime error), 2 bad usage
or configuration. Machine-readable output goes to stdout; messages and progress to stderr, with
progress bars only when stderr is a terminal.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from dotenv import load_dotenv

from photoctl import config as config_module
from photoctl import db, queue
from photoctl.config import Settings
from photoctl.errors import ConfigError, NotFound, PhotoctlError
from photoctl.logs import setup_logging
from photoctl.models import JobState


class UsageProblem(click.ClickException):
    exit_code = 2


class PhotoctlGroup(click.Group):
    """Turns photoctl's own errors into clean messages and exit codes, for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as error:
            raise UsageProblem(str(error)) from None
        except NotFound as error:
            raise click.ClickException(str(error)) from None
        except PhotoctlError as error:
            raise click.ClickException(str(error)) from None


@dataclass
class App:
    """What every command gets: settings, verbosity, and a database engine made on demand."""

    settings: Settings
    verbosity: int
    _engine: Any = field(default=None, repr=False)
    _schema_ready: bool = field(default=False, repr=False)

    def engine(self):  # noqa: ANN201 - sqlalchemy.Engine, kept out of the CLI's imports
        """The engine, with the schema created or upgraded on first use."""
        engine = self.engine_unchecked()
        if not self._schema_ready:
            db.ensure_schema(engine)
            self._schema_ready = True
        return engine

    def engine_unchecked(self):  # noqa: ANN201
        if self._engine is None:
            self._engine = db.make_engine(self.settings)
        return self._engine

    def face_engine(self):  # noqa: ANN201 - FaceEngine | None
        from photoctl import faces

        return faces.make_engine(self.settings.faces.engine, self.settings, self.engine())

    def show_progress(self) -> bool:
        return self.verbosity >= 0 and sys.stderr.isatty()


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
    settings = _load_settings(ctx, {"faces.engine": engine_name})
    verbosity = -1 if quiet else verbose
    setup_logging(settings, verbosity)
    ctx.obj = App(settings=settings, verbosity=verbosity)


def main() -> None:
    """Console entry point. A .env in the working directory fills unset variables."""
    load_dotenv(Path.cwd() / ".env", override=False)
    try:
        cli.main(prog_name="photoctl", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except Exception as error:  # noqa: BLE001 - the last line of defence: no traceback by default
        log = logging.getLogger("photoctl")
        log.debug("unexpected error", exc_info=True)
        click.echo(
            f"Error: unexpected {type(error).__name__}: {error} (run with -v for the traceback)",
            err=True,
        )
        sys.exit(1)


# -- ingest ---------------------------------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--album", help="Album name given to the new photos.")
@click.option(
    "--watch", is_flag=True, help="Keep running and ingest new files as they settle (Ctrl-C stops)."
)
@click.option("--dry-run", is_flag=True, help="Report what would be registered; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@pass_app
def ingest(
    app: App, paths: tuple[str, ...], album: str | None, watch: bool, dry_run: bool, as_json: bool
) -> None:
    """Register every image under PATHS and enqueue one processing job per new photo.

    Same content twice is one photo. Unchanged files are skipped without being read; files
    modified in the last ingest.settle_seconds are left for the next run. Exit code 1 if any
    file could not be ingested (each is named with its reason).

    \b
    Example:
      photoctl ingest ./event-2026 --album "Marathon 2026"
    """
    from photoctl.ingest import ingest_paths

    engine = app.engine()
    any_errors = False
    while True:
        with _progress_bar(app, "hashing", "files") as progress:
            report = ingest_paths(
                engine, app.settings, paths, album=album, dry_run=dry_run, progress=progress
            )
        any_errors = any_errors or bool(report.errors)
        for name, reason in report.errors:
            click.echo(f"error: {name}: {reason}", err=True)
        if as_json:
            click.echo(json.dumps(report.as_json()))
        if not as_json or watch:
            prefix = "dry run: would ingest " if dry_run else "ingest: "
            click.echo(prefix + report.summary(), err=True)
        if not watch:
            break
        try:
            time.sleep(app.settings.ingest.watch_interval_seconds)
        except KeyboardInterrupt:
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
        self.bar.n = done
        self.bar.refresh()

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
@pass_app
def work(
    app: App,
    workers: int | None,
    until_empty: bool,
    max_jobs: int | None,
    max_seconds: float | None,
    engine_name: str | None,
) -> None:
    """Run worker processes that process queued photos.

    SIGINT/SIGTERM: stop claiming, finish or release the jobs in hand, exit. A worker that
    dies is replaced and its jobs requeued. Exit code 1 if any job failed during this run.

    \b
    Examples:
      photoctl work -n 5                       # run until stopped
      photoctl work --until-empty --max-seconds 3000   # from cron
    """
    from photoctl.worker import WorkOptions, run_workers

    settings = app.settings
    if engine_name:
        settings = settings.replace("faces", engine=engine_name)
    options = WorkOptions(
        workers=workers or settings.queue.workers,
        until_empty=until_empty,
        max_jobs=max_jobs,
        max_seconds=max_seconds,
        engine=settings.faces.engine,
    )
    report = run_workers(settings, options, app.verbosity)
    click.echo(
        f"work: {report.done} jobs done, {report.failed} failed, "
        f"{report.restarted} workers restarted",
        err=True,
    )
    if report.failed:
        sys.exit(1)


# -- stats ----------------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the stats object as JSON.")
@click.option(
    "--watch",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Print again every SECONDS until interrupted.",
)
@pass_app
def stats(app: App, as_json: bool, watch: float | None) -> None:
    """Queue, photo and cache figures (the same object as GET /api/admin/queue/stats)."""
    from photoctl import stats as stats_module

    engine = app.engine()
    while True:
        with db.read(engine) as conn:
            figures = stats_module.collect(conn, app.settings, cache_stats=_cache(app).stats())
        click.echo(json.dumps(figures) if as_json else stats_module.render(figures))
        if watch is None:
            return
        try:
            time.sleep(watch)
        except KeyboardInterrupt:
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
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
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
@pass_app
def jobs_show(app: App, job_id: str) -> None:
    """Everything about one job (an id or a unique prefix of one)."""
    with db.read(app.engine()) as conn:
        job = queue.get_job(conn, job_id)
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
@pass_app
def jobs_retry(app: App, job_ids: tuple[str, ...], failed: bool) -> None:
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
    click.echo(f"{count} jobs queued again", err=True)


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
@pass_app
def jobs_prune(app: App, older_than: float, include_failed: bool) -> None:
    """Delete finished jobs older than a duration (done ones; failed ones only if asked)."""
    with db.write(app.engine()) as conn:
        count = queue.prune_jobs(conn, older_than, include_failed=include_failed)
    click.echo(f"{count} jobs pruned", err=True)


# -- config and doctor ----------------------------------------------------------------------


@cli.group(cls=PhotoctlGroup)
def config() -> None:
    """Show the effective configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print as a JSON object.")
@pass_app
def config_show(app: App, as_json: bool) -> None:
    """Every key with its effective value and where that value came from."""
    from photoctl.faces.local_engine import explain_sizes

    rows = config_module.describe(app.settings)
    faces = app.settings.faces
    notes = {
        "faces.min_face_percent": explain_sizes(
            faces.detector, faces.min_face_percent, faces.detect_px
        )
    }
    if as_json:
        shown = {key: {"value": value, "source": source} for key, value, source in rows}
        for key, note in notes.items():
            shown[key]["note"] = note
        click.echo(json.dumps(shown))
        return
    for key, value, source in rows:
        click.echo(f"{key} = {value}" + (f"    ({source})" if source else ""))
        if key in notes:
            click.echo(f"    # {notes[key]}")


@config.command("example")
def config_example() -> None:
    """Print an example config.ini with every key, its default and its meaning."""
    click.echo(config_module.example_ini(), nl=False)


@cli.command()
@pass_app
def doctor(app: App) -> None:
    """Check the database, the schema and the storage root; say how to fix what is wrong."""
    from photoctl.doctor import run_checks

    problems = 0
    for check in run_checks(app.settings, app.engine_unchecked()):
        mark = "ok  " if check.ok else "FAIL"
        click.echo(f"[{mark}] {check.name}: {check.detail}")
        problems += not check.ok
    if problems:
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


@users.command("add")
@click.argument("name")
@click.option(
    "--selfie",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Enroll this selfie at once (existing photos are matched).",
)
@click.option("--admin", is_flag=True, help="May use the admin routes.")
@click.option("--password", is_flag=True, help="Prompt for a password (for /api/login).")
@pass_app
def users_add(app: App, name: str, selfie: Path | None, admin: bool, password: bool) -> None:
    """Create a user and print their new API token alone on stdout.

    \b
    Example:
      TOKEN=$(photoctl users add alice --selfie alice.jpg)
    """
    from photoctl import users as users_module

    secret = None
    if password:
        secret = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    _, token = users_module.add_user(app.engine(), name, admin=admin, password=secret)
    if selfie is not None:
        try:
            count = users_module.enroll(
                app.engine(), _require_engine(app), app.settings, name, selfie
            )
        except PhotoctlError:
            users_module.delete_user(app.engine(), None, name)
            raise
        click.echo(f"{name} enrolled: matched in {count} photos", err=True)
    click.echo(token)


@users.command("enroll")
@click.argument("name")
@click.option(
    "--selfie", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@pass_app
def users_enroll(app: App, name: str, selfie: Path) -> None:
    """Enroll or replace a user's selfie; their existing photos are matched at once.

    \b
    Example:
      photoctl users enroll bob --selfie bob.jpg
    """
    from photoctl import users as users_module

    count = users_module.enroll(app.engine(), _require_engine(app), app.settings, name, selfie)
    click.echo(f"{name} enrolled: matched in {count} photos", err=True)


@users.command("token")
@click.argument("name")
@pass_app
def users_token(app: App, name: str) -> None:
    """Replace a user's API token; prints the new one alone on stdout."""
    from photoctl import users as users_module

    click.echo(users_module.rotate_token(app.engine(), name))


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
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


@users.command("delete")
@click.argument("name")
@pass_app
def users_delete(app: App, name: str) -> None:
    """Delete a user with all their biometric data, in the face engine's index too."""
    from photoctl import users as users_module

    users_module.delete_user(app.engine(), app.face_engine(), name)
    click.echo(f"{name} deleted", err=True)


# -- cache ----------------------------------------------------------------------------------


def _cache(app: App):  # noqa: ANN202
    from photoctl.cache import ResponseCache

    return ResponseCache(app.settings)


@cli.group(cls=PhotoctlGroup)
def cache() -> None:
    """The response cache shared by every local serve process."""


@cache.command("clear")
@pass_app
def cache_clear(app: App) -> None:
    """Empty the response cache (every serve process on this machine sees it at once)."""
    removed = _cache(app).clear()
    click.echo(f"cache cleared ({removed} entries)", err=True)


@cache.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
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
    _listen_without_nagle()
    uvicorn.run(
        "photoctl.api.app:app_from_env",
        factory=True,
        host=host or settings.serve.host,
        port=port or settings.serve.port,
        workers=workers or settings.serve.workers,
        log_level="warning" if app.verbosity < 0 else "info",
        access_log=app.verbosity > 0,
    )
