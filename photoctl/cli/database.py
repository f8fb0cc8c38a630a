"""`photoctl db copy`: moving an installation's database (SQLite to PostgreSQL, or back)."""

from __future__ import annotations

import json

import click

from photoctl.cli.common import App, PhotoctlGroup, json_option, pass_app, progress_bar


@click.group(cls=PhotoctlGroup)
def db() -> None:
    """The database itself: copy it into another one."""


@db.command("copy")
@click.option(
    "--to",
    "target_url",
    required=True,
    metavar="URL",
    help="The empty database to copy into, e.g. postgresql://user@host/photos.",
)
@json_option("Print the rows copied per table (and the target's database id) as JSON.")
@pass_app
def db_copy(app: App, target_url: str, as_json: bool) -> None:
    """Copy every row of this database into an empty one, ids kept, in one transaction.

    The target is migrated by the command; one that holds data is refused (exit 2), as is a
    copy while workers run on this database. This database is left as it is: afterwards,
    point every machine at the target (database.url or --database-url).

    \b
    Example:
      photoctl db copy --to postgresql://photos@db.example.org/photos
    """
    from photoctl.db_copy import copy_database

    with progress_bar(app, "copy", "rows") as progress:
        report = copy_database(app.settings, app.engine(), target_url, progress=progress)
    if as_json:
        click.echo(json.dumps(report.as_json()))
    app.say(
        f"db copy: {report.rows} rows of {len(report.tables)} tables copied from {report.source} "
        f"to {report.target} in {report.seconds:.1f} s, counts verified; the copy has its own "
        f"database id (a cold response cache). Point every machine at it: database.url = "
        f"{report.target}"
    )
    if report.changed_meanwhile:
        app.warn(
            "the source changed during the copy (" + ", ".join(report.changed_meanwhile) + "): "
            "stop serve and every worker, then copy again into an empty database"
        )
