"""What every photoctl command shares: the App it is handed, the global options (given before
or after the command), the one --json option, error to exit-code mapping, the SIGTERM stop
request with the watch loop that honours it, progress bars.

Command modules import from here, never from the package itself: `photoctl.cli` imports them
all to assemble the group, so anything they took from it would close an import circle.
"""

from __future__ import annotations

import dataclasses
import functools
import select
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from photoctl import config as config_module
from photoctl import db, file_access
from photoctl.config import Settings
from photoctl.errors import ConfigError, NoDatabase, NotFound, PhotoctlError, TransientError
from photoctl.logs import setup_logging

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from tqdm import tqdm

    from photoctl.cache import ResponseCache
    from photoctl.faces.base import FaceEngine


class UsageProblem(click.ClickException):
    exit_code = 2


class Stopped(BaseException):  # not ...Error: a request, like KeyboardInterrupt, not a failure
    """SIGTERM or a closed stdout: end the command quietly with exit code 0.

    A BaseException, so no `except Exception` on the way swallows it, and click (which turns a
    broken pipe into exit 1) lets it through.
    """


class StopRequest:
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
    def deferred(self) -> Iterator[StopRequest]:
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


stop_request = StopRequest()


def watch_loop(interval: float | None, one_round: Callable[[int], None]) -> None:
    """Run ``one_round(0)``, then, with an ``interval``, ``one_round(1)``, ``one_round(2)``, …
    every ``interval`` seconds until SIGTERM or Ctrl-C asks to stop (the command then exits 0).

    Rounds run with SIGTERM deferred: it only sets ``stop_request.requested``, which a long
    round polls to cut itself short, so a stop never lands in the middle of a transaction.
    """
    with stop_request.deferred():
        number = 0
        while True:
            one_round(number)
            if interval is None or stop_request.wait(interval):
                return
            number += 1


class PhotoctlGroup(click.Group):
    """Turns photoctl's own errors into clean messages and exit codes, for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            if stdout_is_gone():
                raise Stopped from None  # the reader went away (`| head`): nothing left to do
            raise
        except ConfigError as error:
            raise UsageProblem(str(error)) from None
        except NotFound as error:
            raise click.ClickException(str(error)) from None
        except TransientError as error:
            # SQLite's "attempt to write a readonly database": say which directory and why.
            reason = _unwritable_database(ctx)
            raise (UsageProblem(reason) if reason else click.ClickException(str(error))) from None
        except PhotoctlError as error:
            raise click.ClickException(str(error)) from None
        except OSError as error:
            # A directory the user may not write (or a read-only mount): a setup problem.
            reason = file_access.denied(error)
            if reason is None:
                raise
            raise UsageProblem(reason) from None


def _unwritable_database(ctx: click.Context) -> str | None:
    """Why this user cannot write the SQLite database, if that is the trouble."""
    app = ctx.find_object(App)
    path = db.sqlite_path(app.loaded) if app and app.loaded else None
    problem = file_access.write_problem(path) if path else None
    return f"database: {problem}" if problem else None


def stdout_is_gone() -> bool:
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


@dataclass(frozen=True)
class GlobalOptions:
    """The root's options, wherever they were typed: before the command, after it, or both."""

    config_file: str | None = None
    data_dir: str | None = None
    database_url: str | None = None
    engine_name: str | None = None
    verbose: int = 0
    quiet: bool = False

    @property
    def verbosity(self) -> int:
        return -1 if self.quiet else self.verbose

    def then(self, later: dict[str, Any]) -> GlobalOptions:
        """These options followed by ``later`` ones on the command line: a later value wins,
        as when an option is repeated, and -v counts add up."""
        given = {name: value for name, value in later.items() if value is not None}
        if "verbose" in given:
            given["verbose"] += self.verbose
        if "quiet" in given:
            given["quiet"] = given["quiet"] or self.quiet
        return dataclasses.replace(self, **given)


def _global_option_specs(*, root: bool) -> list[click.Option]:
    """The global options, as the root declares them (with their environment variables) or as
    every other command repeats them (no variables, no defaults: only what was typed there)."""

    def env(name: str) -> dict[str, Any]:
        return {"envvar": name, "show_envvar": True} if root else {}

    return [
        click.Option(
            ["--config", "config_file"],
            type=click.Path(dir_okay=False),
            help="ini file (default: ./config.ini, then <data dir>/config.ini).",
            **env("PHOTOCTL_CONFIG"),
        ),
        click.Option(
            ["--data-dir", "data_dir"],
            type=click.Path(file_okay=False),
            help="Where the SQLite database, storage and cache live [default: ./photoctl-data].",
            **env("PHOTOCTL_DATA_DIR"),
        ),
        click.Option(
            ["--database-url", "database_url"],
            help="SQLAlchemy URL, e.g. postgresql://user@host/db [default: SQLite in the data "
            "dir].",
            **env("PHOTOCTL_DATABASE_URL"),
        ),
        click.Option(
            ["--engine", "engine_name"],
            type=click.Choice(config_module.ENGINE_NAMES),
            help="Face engine for every command [default: faces.engine, local].",
        ),
        click.Option(["-v", "--verbose", "verbose"], count=True, help="Debug logging."),
        click.Option(
            ["-q", "--quiet", "quiet"],
            is_flag=True,
            default=False if root else None,  # elsewhere: None, not typed
            help="Warnings and errors only; no progress bars.",
        ),
    ]


def root_options() -> list[click.Option]:
    """The root group's global options (its `params`)."""
    return _global_option_specs(root=True)


_GLOBAL = "global_"  # the prefix of the repeated options' parameter names on other commands


def _repeat_global_options(command: click.Command) -> None:
    """Give ``command`` and every command below it the global options too, so that
    `photoctl events purge --expired -q` means `photoctl -q events purge --expired`.

    Each repeated option keeps the root's spelling; one a command already has (work's own
    --engine) stays the command's. Its callback merges what was typed there into the App
    before it runs, so commands never see these parameters.
    """
    if getattr(command, "_photoctl_globals", False):
        return
    command._photoctl_globals = True  # type: ignore[attr-defined]
    taken = {name for param in command.params for name in param.opts + param.secondary_opts}
    added = []
    for option in _global_option_specs(root=False):
        if taken.isdisjoint(option.opts):
            option.name = f"{_GLOBAL}{option.name}"
            command.params.append(option)
            added.append(option.name)
    original = command.callback

    @functools.wraps(original or (lambda: None))
    def callback(*args: Any, **kwargs: Any) -> Any:
        typed = {name[len(_GLOBAL) :]: kwargs.pop(name) for name in added}
        typed["verbose"] = typed.get("verbose") or None  # a count of 0: not typed
        if any(value is not None for value in typed.values()):
            app = click.get_current_context().find_object(App)
            if app is not None:
                app.reconfigure(app.options.then(typed))
        return original(*args, **kwargs) if original else None

    command.callback = callback
    if isinstance(command, click.Group):
        for child in command.commands.values():
            _repeat_global_options(child)


class PhotoctlRoot(PhotoctlGroup):
    """The root group: every command added to it takes the global options after its name too."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        _repeat_global_options(cmd)
        super().add_command(cmd, name)


def load_settings(options: GlobalOptions) -> Settings:
    return config_module.load(
        config_file=options.config_file,
        data_dir=options.data_dir,
        overrides={"database.url": options.database_url, "faces.engine": options.engine_name},
    )


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
    options: GlobalOptions = field(default_factory=GlobalOptions)

    @classmethod
    def configure(cls, options: GlobalOptions) -> App:
        """Settings and logging from the global options."""
        app = cls(loaded=None, verbosity=0)
        app.reconfigure(options)
        return app

    def reconfigure(self, options: GlobalOptions) -> None:
        """Load the settings again and set logging up again, for options typed after a command
        (before it opened anything: its callback has not run yet)."""
        try:
            settings, problem = load_settings(options), None
        except ConfigError as error:
            settings, problem = None, error
        setup_logging(settings or Settings(), options.verbosity)
        self.loaded, self.config_error = settings, problem
        self.verbosity, self.options, self._engine = options.verbosity, options, None

    @property
    def settings(self) -> Settings:
        if self.loaded is None:
            raise self.config_error or ConfigError("no settings")
        return self.loaded

    def engine(self, *, create: bool = False) -> Engine:
        """The engine, with the schema upgraded on first use.

        Only commands that bring data in pass ``create=True``; every other one exits 2 on a
        database that does not exist, creating nothing.
        """
        if self._engine is None:
            self._engine = db.open_database(self.settings, create=create)
        return self._engine

    def engine_if_exists(self) -> Engine | None:
        """The engine if the database exists, else None (and nothing is created)."""
        try:
            return self.engine()
        except NoDatabase:
            return None

    def engine_unchecked(self) -> Engine:
        if self._engine is None:
            self._engine = db.make_engine(self.settings, create=False)
        return self._engine

    def face_engine(self) -> FaceEngine | None:
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


def response_cache(app: App, *, scoped: bool = False) -> ResponseCache:
    """The response cache; ``scoped`` to this database's entries (needs the database)."""
    from photoctl.cache import ResponseCache

    engine = app.engine()  # the cache belongs to a database: none there, nothing to create
    return ResponseCache(app.settings, db.database_id(engine) if scoped else None)


class progress_bar:  # lower case: used like a function, `with progress_bar(app, ...) as bar`
    """A tqdm bar on a terminal, nothing otherwise; used as the core's progress callback."""

    def __init__(self, app: App, description: str, unit: str) -> None:
        self.enabled = app.show_progress()
        self.description, self.unit = description, unit
        self.bar: tqdm | None = None

    def __enter__(self) -> Callable[[int, int], None] | None:
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
