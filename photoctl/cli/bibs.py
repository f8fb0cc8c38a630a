"""`photoctl bibs`: import a start list, scan processed photos, find, list, stats.

Exit codes: 2 for an unknown event, a file that is not a start list or an event that reads no
bibs; 1 when rows of a start list are bad (each named by its line; nothing imported).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from photoctl.cli.common import App, json_option, pass_app
from photoctl.wording import plural


@click.group()
def bibs() -> None:
    """Bib numbers read in an event's photos (events create --bibs switches it on).

    \b
    Example:
      photoctl bibs import city-10k start-list.csv
      photoctl bibs find city-10k 1234 --json
      photoctl bibs stats city-10k
    """


@bibs.command("import")
@click.argument("slug")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def bibs_import(app: App, slug: str, file: Path) -> None:
    """Load the event's start list from a CSV file (UTF-8, comma or semicolon separated) with
    a `bib` column and an optional `name` column; importing again replaces it.

    With a start list, only its numbers are bibs. Names are kept for the organizer only (never
    shown on a page, never logged) and deleted when the event is purged.

    \b
    Example:
      photoctl bibs import city-10k start-list.csv
    """
    from photoctl.bibs import service

    try:
        report = service.import_start_list(app.engine(), slug, file)
    except service.BadStartList as bad:
        for problem in bad.problems[:50]:
            click.echo(f"{file}: {problem}", err=True)
        if len(bad.problems) > 50:
            click.echo(f"{file}: … and {len(bad.problems) - 50} more", err=True)
        raise
    replaced = f" (replacing {plural(report.replaced, 'runner')})" if report.replaced else ""
    app.say(
        f"start list of {slug}: {plural(report.runners, 'runner')}, "
        f"{report.named} with a name{replaced}"
        + (
            f"; {plural(report.dropped, 'read')} of numbers not on it deleted"
            if report.dropped
            else ""
        )
    )


@bibs.command("scan")
@click.argument("slug")
@pass_app
def bibs_scan(app: App, slug: str) -> None:
    """Queue the reading of bibs in the event's processed photos not read yet (`photoctl work`
    reads them, with progress). Photos processed after bibs were switched on are read by
    their own job already.

    \b
    Example:
      photoctl bibs scan city-10k
      photoctl work --until-empty
    """
    from photoctl.bibs import service

    queued = service.scan(app.engine(), slug)
    app.say(
        f"{plural(queued, 'photo')} of {slug} queued for bib reading; `photoctl work` reads them"
    )


@bibs.command("find")
@click.argument("slug")
@click.argument("number")
@json_option('{"bib", "photos": [{"id", "filename", "confidence", "box"}]} on stdout.')
@pass_app
def bibs_find(app: App, slug: str, number: str, as_json: bool) -> None:
    """The photos of the event where bib NUMBER was read."""
    from photoctl.bibs import service

    bib, photos = service.find(app.engine(), slug, number)
    if as_json:
        click.echo(json.dumps({"bib": bib, "photos": [photo.as_json() for photo in photos]}))
        return
    for photo in photos:
        click.echo(f"{photo.id}  {photo.filename}  {photo.confidence:.2f}")
    app.say(f"bib {bib}: {plural(len(photos), 'photo')}")


@bibs.command("list")
@click.argument("slug")
@json_option('{"bibs": [{"bib", "photos": [{"id", "filename"}]}]} on stdout.')
@pass_app
def bibs_list(app: App, slug: str, as_json: bool) -> None:
    """Every bib read in the event with its photos (an export: --json)."""
    from photoctl.bibs import service

    found = service.list_all(app.engine(), slug)
    if as_json:
        answer = {
            "bibs": [
                {"bib": bib, "photos": [{"id": p.id, "filename": p.filename} for p in photos]}
                for bib, photos in sorted(found.items(), key=lambda item: _order(item[0]))
            ]
        }
        click.echo(json.dumps(answer))
        return
    for bib, photos in sorted(found.items(), key=lambda item: _order(item[0])):
        click.echo(f"{bib}  {' '.join(str(p.id) for p in photos)}")
    app.say(f"{plural(len(found), 'bib')} read in {slug}")


def _order(bib: str) -> tuple[str, int]:
    """Numbers in numeric order (9 before 10), bibs with letters by their letters first."""
    letters = bib.rstrip("0123456789")
    digits = bib[len(letters) :]
    return letters, int(digits) if digits else 0


@bibs.command("stats")
@click.argument("slug")
@json_option()
@pass_app
def bibs_stats(app: App, slug: str, as_json: bool) -> None:
    """Photos read, distinct bibs found, the share of start-list runners with at least one
    photo, and photos with numbers that were not read as bibs."""
    from photoctl.bibs import service

    counts = service.event_counts(app.engine(), slug)
    if as_json:
        click.echo(json.dumps(counts.as_json()))
    else:
        click.echo(service.describe(counts))
