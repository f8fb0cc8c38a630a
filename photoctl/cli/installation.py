"""`photoctl init`, `photoctl config` and `photoctl doctor`: setting an installation up, and
checking it. `config example` and `doctor` work even when config.ini does not load."""

from __future__ import annotations

import json
import sys

import click

from photoctl import config as config_module
from photoctl import db
from photoctl.cli.common import App, PhotoctlGroup, json_option, pass_app
from photoctl.errors import ConfigError, NoDatabase, TransientError


@click.command()
@click.option(
    "--move-storage",
    is_flag=True,
    help="Record this process's storage (storage.root, storage.endpoint_url) as the one the "
    "database's files are in, replacing the recorded one: after moving the files there.",
)
@pass_app
def init(app: App, move_storage: bool) -> None:
    """Create the data dir and the database at the latest schema; running it again is harmless.

    Only init, ingest and users add create a database: every other command exits 2 on one that
    does not exist, so a cron line run from the wrong directory fails instead of starting afresh.
    The database records its storage: ingest, work and serve refuse another one (exit 2).

    \b
    Example:
      photoctl --data-dir /srv/photoctl init
      photoctl init --move-storage      # after moving the files to this storage
    """
    from photoctl import storage_identity

    settings = app.settings
    existed = app.engine_if_exists() is not None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = app.engine(create=True)
    if move_storage:
        before, storage = storage_identity.move(settings, engine)
        if before not in (None, storage):
            app.say(f"init: storage moved from {before} to {storage}")
        looked, missing = storage_identity.missing_from_store(settings, engine)
        if missing:
            app.warn(
                f"{missing} of the {looked} newest thumbnails are not in {storage}: copy the "
                "files there (rsync -a, aws s3 sync), or their images answer 404"
            )
    else:
        storage = storage_identity.ensure_same(settings, engine)
    state = "already there" if existed else "created"
    app.say(
        f"init: database {state} at {db.database_location(settings)} "
        f"(schema {db.current_revision(engine)}); data dir {settings.data_dir}; "
        f"storage {storage}"
    )


@click.group(cls=PhotoctlGroup)
def config() -> None:
    """Show the effective configuration."""


@config.command("show")
@json_option("Print as a JSON object.")
@pass_app
def config_show(app: App, as_json: bool) -> None:
    """Every key with its effective value and where that value came from."""
    from photoctl.faces.local import explain_sizes

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


@click.command()
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
