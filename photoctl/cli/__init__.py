"""The `photoctl` command line: parse options, call one function, print, map errors to exit codes.

Exit codes: 0 success, 1 the command ran but some items failed (or a runtime error), 2 bad usage
or configuration. Machine-readable output goes to stdout; messages and progress to stderr, with
progress bars only when stderr is a terminal; -q leaves warnings and errors only. SIGTERM and a
closed stdout (`photoctl jobs list | head -1`) end a command quietly with 0: long-running loops
stop at their next safe point, anything else unwinds (transactions roll back).

The package is the root group and the entry point; `common` holds what every command shares,
and each command family has its own module (`processing`: ingest, work; `monitoring`: stats,
jobs; `accounts`: users; `installation`: init, config, doctor; `serving`: cache, serve;
`events`: events; `audit`: audit; `database`: db copy).
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

from photoctl.cli import (
    accounts,
    audit,
    bibs,
    database,
    events,
    installation,
    monitoring,
    processing,
    serving,
)
from photoctl.cli.common import (
    App,
    GlobalOptions,
    PhotoctlRoot,
    Stopped,
    UsageProblem,
    json_option,
    pass_app,
    root_options,
    stop_request,
)

__all__ = ["App", "Stopped", "UsageProblem", "cli", "json_option", "main", "pass_app"]


@click.group(
    cls=PhotoctlRoot,
    params=root_options(),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="photoctl")
@click.pass_context
def cli(ctx: click.Context, **options: Any) -> None:
    """photoctl: ingest event photos, process them in the background, serve them.

    The options below may also follow the command (`photoctl events purge --expired -q`).

    \b
    Typical use:
      photoctl ingest ./event-photos
      photoctl work -n 5 --until-empty
      photoctl stats
    """
    ctx.obj = App.configure(GlobalOptions(**options))


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
cli.add_command(audit.audit)
cli.add_command(bibs.bibs)
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
