"""`photoctl users`: accounts, API tokens, selfies, and deleting a user's biometric data."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from photoctl import db
from photoctl.cli.common import (
    App,
    PhotoctlGroup,
    UsageProblem,
    json_option,
    pass_app,
    response_cache,
)
from photoctl.errors import SeveralFaces
from photoctl.wording import plural

if TYPE_CHECKING:
    from photoctl.faces.base import FaceEngine


@click.group(cls=PhotoctlGroup)
def users() -> None:
    """Manage users: accounts, API tokens, selfies."""


def _require_engine(app: App) -> FaceEngine:
    engine = app.face_engine()
    if engine is None:
        raise UsageProblem("enrolling needs a face engine; give --engine local or rekognition")
    return engine


@contextmanager
def _several_faces_hint() -> Iterator[None]:
    """A selfie with several faces: say how to go on (crop it, or --largest)."""
    try:
        yield
    except SeveralFaces as several:
        raise click.ClickException(
            f"{several}: crop it to the user's face, or give --largest to enroll the largest one"
        ) from None


_LARGEST = click.option(
    "--largest",
    is_flag=True,
    help="When the selfie shows several faces, enroll the largest (default: refuse it).",
)


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
    database = app.engine(create=True)
    if selfie is None:
        _, token = users_module.add_user(database, name, admin=admin, password=secret)
    else:
        with _several_faces_hint():
            _, token, count = users_module.add_user_with_selfie(
                database,
                _require_engine(app),
                app.settings,
                name,
                selfie,
                admin=admin,
                password=secret,
                largest=largest,
            )
        app.say(f"{name} enrolled: matched in {plural(count, 'photo')}")
    click.echo(token)


@users.command("enroll")
@click.argument("name")
@click.option(
    "--selfie",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A photo of the user's face alone (replaces the one enrolled before).",
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
    from photoctl import users as users_module

    with _several_faces_hint():
        count = users_module.enroll(
            app.engine(), _require_engine(app), app.settings, name, selfie, largest=largest
        )
    app.say(f"{name} enrolled: matched in {plural(count, 'photo')}")


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
            click.echo(f"{user.name}  {role}  {enrolled}  {plural(user.photos, 'photo')}")


@users.command("show")
@click.argument("name")
@json_option("One JSON object: the user and photos.")
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
    click.echo(f"{user.name}  {role}  {enrolled}  {plural(user.photos, 'photo')}")
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
    users_module.delete_user(
        engine, app.face_engine(), name, cache=response_cache(app, scoped=True)
    )
    app.say(f"{name} deleted")
    if db.is_postgresql(engine):
        click.echo(
            "PostgreSQL keeps the deleted rows' bytes on disk until the next VACUUM of their "
            "tables (autovacuum runs it; `VACUUM users, selfie_faces` does it now)",
            err=True,
        )
