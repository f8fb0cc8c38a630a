"""The `photoctl` command line: parse options, call one function, print, map errors to exit codes.

Exit codes: 0 success, 1 the command ran but some items failed (or a runtime error), 2 bad usage
or configuration. Machine-readable output goes to stdout; messages and progress to stderr, with
progress bars only when stderr is a terminal; -q leaves warnings and errors only. SIGTERM and a
closed stdout (`photoctl jobs list | head -1`) end a command quietly with 0: long-running loops
stop at their next safe point, anything else unwinds (transactions roll back).

The package is the root group and the entry point; `common` holds what every command shares,
and each command family has its own module (`processing`: ingest, work; `monitoring`: stats,
jobs; `accounts`: users; `installation`: init, config, doctor; `serving`: cache, serve;
`events`: events, audit; `database`: db copy).
Commands only parse, call one function in the core, and print.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
from dotenv import load_dotenv

from photoctl import config as config_module
from photoctl.cli import (
    accounts,
    database,
    events,
    installation,
    monitoring,
    processing,
    serving,
)
from photoctl.cli.common import (
    App,
    PhotoctlGroup,
    Stopped,
    UsageProblem,
    json_option,
    pass_app,
    stop_request,
)
from photoctl.config import Settings
from photoctl.errors import ConfigError
from photoctl.logs import setup_logging

__all__ = ["App", "Stopped", "UsageProblem", "cli", "json_option", "main", "pass_app"]


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


# Registered here, not by decorators in each module, so the whole command set reads in one place.
cli.add_command(installation.init)
cli.add_command(installation.config)
cli.add_command(installation.doctor)
cli.add_command(processing.ingest)
cli.add_command(processing.work)
cli.add_command(monitoring.stats)
cli.add_command(monitoring.jobs)
cli.add_command(accounts.users)
cli.add_command(serving.cache)
cli.add_command(serving.serve)
cli.add_command(events.events)
cli.add_command(events.audit)
cli.add_command(database.db)


def main() -> None:
    """Console entry point. A .env in the working directory fills unset variables."""
    load_dotenv(Path.cwd() / ".env", override=False)
    signal.signal(signal.SIGTERM, stop_request.on_signal)
    code = _run()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
    sys.exit(code)


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
    except Exception as error:  # the last line of defence: no traceback by default
        log = logging.getLogger("photoctl")
        log.debug("unexpected error", exc_info=True)
        click.echo(
            f"Error: unexpected {type(error).__name__}: {error} (run with -v for the traceback)",
            err=True,
        )
        return 1
    return outcome if isinstance(outcome, int) else 0
