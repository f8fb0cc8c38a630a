"""`photoctl events`: create, list, show, edit, close, purge, qr (the audit log: cli/audit.py).

Unknown slugs and bad options exit 2; `events purge` exits 1 when the purge of some event
failed (the others still ran), so cron mails about it, and 0 when there was nothing to do.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from photoctl.cli.common import App, UsageProblem, json_option, pass_app, response_cache
from photoctl.errors import PhotoctlError
from photoctl.wording import plural

if TYPE_CHECKING:
    from photoctl.events import Event, EventSummary

_GENERATE = "\0generate"  # --access-code given without a value
# The counts of a purge (face_store.delete_event_face_data), as words: singular, plural.
_PURGED = {
    "matches": ("match", "matches"),
    "rejections": ('"not me"', '"not me"s'),
    "selfies": ("selfie", "selfies"),
    "faces": ("face", "faces"),
    "participants_erased": ("participant erased", "participants erased"),
    "participant_bibs": ("bib link", "bib links"),
    "start_list_names": ("start-list name", "start-list names"),
}


def _bib_options(creating: bool) -> Any:
    """--bib-range, --bib-pattern, --bib-search (and --bibs on create, --bibs on|off on edit)."""

    def decorate(command: Any) -> Any:
        options = [
            click.option(
                "--bib-search",
                type=click.Choice(["public", "code", "off"]),
                help="Who may look photos up by bib number on the event page: anyone who knows "
                "a bib (public), only with the access code (code), nobody (off)"
                + (" [default: public]." if creating else "."),
            ),
            click.option(
                "--bib-pattern",
                metavar="REGEX",
                help="Bibs with letters, e.g. '[A-Z][0-9]{1,4}' for A123 (without a start "
                "list; plain numbers are always allowed)"
                + ("." if creating else "; '' removes it."),
            ),
            click.option(
                "--bib-range",
                metavar="FIRST-LAST",
                help="Without a start list, only numbers in this range are bibs [default: "
                "1-9999]" + ("." if creating else "; '' removes it."),
            ),
        ]
        if creating:
            options.append(
                click.option(
                    "--bibs",
                    is_flag=True,
                    help="Read bib numbers in the event's photos (`photoctl bibs import` "
                    "loads a start list).",
                )
            )
        else:
            options.append(
                click.option(
                    "--bibs",
                    type=click.Choice(["on", "off"]),
                    help="Read bib numbers in the event's photos from now on (`photoctl bibs "
                    "scan SLUG` reads the photos processed already).",
                )
            )
        for option in options:
            command = option(command)
        return command

    return decorate


def bib_figures(app: App, event: Event) -> str:
    from photoctl.bibs import service

    return service.describe(service.event_counts(app.engine(), event.slug))


def _bib_counts(app: App, event: Event) -> dict[str, Any]:
    from photoctl.bibs import service

    return service.event_counts(app.engine(), event.slug).as_json()


def _bibs_line(event: Event) -> str:
    if not event.bibs:
        return "bibs: off"
    bounds = event.bib_range or "1-9999"
    if event.bib_pattern:
        bounds += f" or {event.bib_pattern}"
    return f"bibs: on (without a start list: {bounds}); search by bib: {event.bib_search}"


def _day(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.datetime.fromtimestamp(value, datetime.UTC).strftime("%Y-%m-%d")


def _enrollment(event: Event) -> str:
    """Whether the event page enrolls participants, and how to change it."""
    if event.purged_at is not None or event.closed_at is not None:
        return f"self-enrollment: closed (the event is {event.state})"
    if not event.self_enrollment:
        return (
            "self-enrollment: off (the event page takes no enrollments; "
            f"open it with `photoctl events edit {event.slug} --self-enrollment on`)"
        )
    code = " and the access code" if event.requires_access_code else ""
    return f"self-enrollment: on (anyone with the page's address{code} can enroll)"


def _retention(event: Event) -> str:
    if event.purged_at is not None:
        why = "by hand" if event.purged_by_organizer else "at the end of its retention"
        return f"face data deleted on {event.face_data_deleted_on}, {why}"
    ends = event.retention_ends_at
    if ends is None:
        days = plural(event.retention_days, "day")
        return f"face data kept until {days} after the event is closed"
    return f"face data kept until {_day(ends)}"


@click.group()
def events() -> None:
    """Events: their photos, participants' self-enrollment, consent and retention.

    \b
    Example:
      photoctl events create marathon-2026 --title "City Marathon 2026" \\
          --date 2026-05-03 --retention-days 60 --access-code
      photoctl events qr marathon-2026 --out poster.png
      photoctl ingest ./finish-line --event marathon-2026
      photoctl events purge --expired          # from cron, daily
    """


@events.command("create")
@click.argument("slug")
@click.option("--title", required=True, help="The event's name as participants see it.")
@click.option(
    "--date",
    "date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The event's day (YYYY-MM-DD); retention counts from it. Without a date, retention "
    "counts from the day the event is closed.",
)
@click.option(
    "--retention-days",
    type=click.IntRange(min=1),
    help="Days face data is kept after the event [default: events.default_retention_days, 365].",
)
@click.option(
    "--consent-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="UTF-8 text participants agree to [default: a short statement of what is stored "
    "and for how long].",
)
@click.option(
    "--access-code",
    is_flag=False,
    flag_value=_GENERATE,
    default=None,
    metavar="[CODE]",
    help="Ask for a code to enroll (print it on badges or bibs). Alone, a random code is "
    "made and printed once on stdout; with CODE, that code is used. Only its hash is stored.",
)
@_bib_options(creating=True)
@json_option("Print the event (and a generated access code) as JSON on stdout.")
@pass_app
def events_create(
    app: App,
    slug: str,
    title: str,
    date: datetime.datetime | None,
    retention_days: int | None,
    consent_file: Path | None,
    access_code: str | None,
    bibs: bool,
    bib_range: str | None,
    bib_pattern: str | None,
    bib_search: str | None,
    as_json: bool,
) -> None:
    """Create an event; its page is <serve.public_url>/e/SLUG.

    SLUG is part of that address: 1 to 64 of a-z, 0-9 and '-'. An access code makes enrolling
    someone else's face from a photo harder (the code is needed), not impossible (anyone with
    the code can enroll any face).

    \b
    Example:
      photoctl events create marathon-2026 --title "City Marathon 2026" \\
          --date 2026-05-03 --retention-days 60 --access-code
    """
    from photoctl import events as events_module

    consent = consent_file.read_text(encoding="utf-8") if consent_file else None
    generated = access_code == _GENERATE
    code = events_module.new_access_code() if generated else access_code
    event = events_module.create_event(
        app.engine(create=True),
        slug,
        title=title,
        date=date.date().isoformat() if date else None,
        retention_days=retention_days or app.settings.events.default_retention_days,
        consent_text=consent,
        access_code=code,
        bibs=bibs,
        bib_range=bib_range,
        bib_pattern=bib_pattern,
        bib_search=bib_search or "public",
    )
    _print_event(app, event, code if generated else None, as_json, " created")


def _print_event(
    app: App, event: Event, generated_code: str | None, as_json: bool, what: str
) -> None:
    """The event (JSON on stdout with --json), and a generated access code, shown this once."""
    if as_json:
        answer = event.as_json()
        if generated_code:
            answer["access_code"] = generated_code
        click.echo(json.dumps(answer))
    elif generated_code:
        click.echo(generated_code)
    if generated_code:
        app.say("the access code above is shown only this once: note it now")
    app.say(f"event {event.slug}{what}: {event.title}; {_retention(event)}")


def _summary_line(summary: EventSummary) -> str:
    event = summary.event
    return (
        f"{event.slug}  {event.state}  {event.date or '-'}  {plural(summary.photos, 'photo')}  "
        f"{plural(summary.participants, 'participant')}  {event.title}"
    )


@events.command("list")
@json_option("One JSON object per line.")
@pass_app
def events_list(app: App, as_json: bool) -> None:
    """Every event: slug, state (open, closed, purged), date, photos, participants, title."""
    from photoctl import events as events_module

    for summary in events_module.list_events(app.engine()):
        click.echo(json.dumps(summary.as_json()) if as_json else _summary_line(summary))


@events.command("show")
@click.argument("slug")
@json_option("One JSON object, with the consent text.")
@pass_app
def events_show(app: App, slug: str, as_json: bool) -> None:
    """One event: state, retention, counts, face-service calls and their estimated cost today
    and in all, its page's address and its consent text."""
    from photoctl import db, usage
    from photoctl import events as events_module
    from photoctl.stats import render_event_calls

    events_module.require_event(app.engine(), slug)
    with db.read(app.engine()) as conn:
        calls = usage.event_summary(conn, slug, app.settings.rekognition)
    summary = next(s for s in events_module.list_events(app.engine()) if s.event.slug == slug)
    event = summary.event
    try:
        url: str | None = events_module.page_url(app.settings.serve.public_url, slug)
    except PhotoctlError:
        url = None
    if as_json:
        click.echo(
            json.dumps(
                {
                    **summary.as_json(),
                    "page_url": url,
                    "takes_enrollments": event.takes_enrollments,
                    "rekognition": calls,
                    "bib_figures": _bib_counts(app, event),
                    "consent_text": event.consent_text,
                }
            )
        )
        return
    click.echo(_summary_line(summary))
    click.echo(f"  {_retention(event)}")
    click.echo(f"  {_enrollment(event)}")
    click.echo(f"  access code: {'required' if event.requires_access_code else 'none'}")
    click.echo(f"  {_bibs_line(event)}")
    if event.bibs:
        click.echo(f"  bibs read: {bib_figures(app, event)}")
    click.echo(f"  page: {url or '(set serve.public_url to know it)'}")
    if any(calls["total"][outcome] for outcome in ("accepted", "throttled", "failed")):
        click.echo(f"  rekognition: {render_event_calls(calls)}")
    click.echo(f"  consent version: {event.consent_version[:12]}")
    click.echo("  consent text:")
    for line in event.consent_text.splitlines():
        click.echo(f"    {line}")


@events.command("edit")
@click.argument("slug")
@click.option("--title", help="A new name for the event.")
@click.option(
    "--date", "date", type=click.DateTime(formats=["%Y-%m-%d"]), help="A new day (YYYY-MM-DD)."
)
@click.option("--no-date", is_flag=True, help="Remove the date (retention then counts from close).")
@click.option("--retention-days", type=click.IntRange(min=1), help="A new retention.")
@click.option(
    "--consent-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A new consent text (a new version: earlier participants keep theirs).",
)
@click.option(
    "--access-code",
    is_flag=False,
    flag_value=_GENERATE,
    default=None,
    metavar="[CODE]",
    help="Ask for a new code: alone, a random one printed once on stdout; or CODE.",
)
@click.option("--no-access-code", is_flag=True, help="Enroll without a code from now on.")
@click.option(
    "--self-enrollment",
    type=click.Choice(["on", "off"]),
    help="Whether the event page (/e/SLUG) takes enrollments. The default event's is off "
    "until turned on here: it would match anyone's selfie against every photo ingested "
    "without --event.",
)
@_bib_options(creating=False)
@json_option("Print the event (and a generated access code) as JSON on stdout.")
@pass_app
def events_edit(
    app: App,
    slug: str,
    title: str | None,
    date: datetime.datetime | None,
    no_date: bool,
    retention_days: int | None,
    consent_file: Path | None,
    access_code: str | None,
    no_access_code: bool,
    self_enrollment: str | None,
    bibs: str | None,
    bib_range: str | None,
    bib_pattern: str | None,
    bib_search: str | None,
    as_json: bool,
) -> None:
    """Change an event's title, date, retention, consent text, access code or whether its
    page takes enrollments.

    Shortening the retention takes effect at the next `events purge --expired`.

    \b
    Examples:
      photoctl events edit marathon-2026 --retention-days 30 --no-access-code
      photoctl events edit default --self-enrollment on --access-code
    """
    from photoctl import events as events_module

    if date and no_date or access_code and no_access_code:
        raise UsageProblem("--date/--no-date and --access-code/--no-access-code exclude each other")
    changes: dict[str, Any] = {}
    if date or no_date:
        changes["date"] = date.date().isoformat() if date else None
    generated = access_code == _GENERATE
    code = events_module.new_access_code() if generated else access_code
    if code or no_access_code:
        changes["access_code"] = code
    event = events_module.edit_event(
        app.engine(),
        slug,
        title=title,
        retention_days=retention_days,
        consent_text=consent_file.read_text(encoding="utf-8") if consent_file else None,
        self_enrollment=None if self_enrollment is None else self_enrollment == "on",
        bibs=None if bibs is None else bibs == "on",
        bib_range=bib_range,
        bib_pattern=bib_pattern,
        bib_search=bib_search,
        **changes,
    )
    _print_event(app, event, code if generated else None, as_json, "")
    if bibs == "on":
        app.say(
            f"bibs are read in photos processed from now on; `photoctl bibs scan {slug}` "
            "queues those processed before"
        )
    if self_enrollment == "on" and events_module.is_default(event):
        app.warn(
            "the default event's page now enrolls anyone who reaches serve and matches them "
            "against every photo ingested without --event"
            + ("" if event.requires_access_code else "; consider --access-code")
        )


@events.command("close")
@click.argument("slug")
@json_option("Print the event as JSON on stdout.")
@pass_app
def events_close(app: App, slug: str, as_json: bool) -> None:
    """Stop enrollment: the event page takes no new participants.

    Photos are still taken in (`ingest --event`) and matched with the participants enrolled.
    For an event without a date, retention counts from now.
    """
    from photoctl import events as events_module

    event = events_module.close_event(app.engine(), slug)
    if as_json:
        click.echo(json.dumps(event.as_json()))
    app.say(f"event {slug} closed on {_day(event.closed_at)}; {_retention(event)}")


@events.command("purge")
@click.argument("slug", required=False)
@click.option(
    "--expired", is_flag=True, help="Purge every event past its retention (for a daily cron)."
)
@click.option("--dry-run", is_flag=True, help="Only say which events would be purged.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation (SLUG only).")
@json_option("One JSON object per purged event, with counts.")
@pass_app
def events_purge(
    app: App, slug: str | None, expired: bool, dry_run: bool, yes: bool, as_json: bool
) -> None:
    """Delete an event's face data: every face, embedding, selfie, match and "not me" of it,
    and its Rekognition collection (DeleteCollection). Photos stay; participants' gallery
    links then say when their face data was deleted. Running it again is harmless. A purged
    event takes no face data any more: no enrollment, and photos still ingested for it (or, for
    the default event, uploaded) get thumbnails but no faces.

    SLUG asks on a terminal and, without one, is refused unless --yes is given. --expired
    never asks: it purges what the events' retention promised, as cron runs it.

    Exit codes: 0 done (or nothing to do), 1 some purge failed (run it again), 2 bad usage.

    \b
    Examples:
      photoctl events purge marathon-2026
      photoctl events purge --expired -q       # crontab: 0 3 * * *
    """
    from photoctl import events as events_module

    if bool(slug) == expired:
        raise UsageProblem("give either SLUG or --expired")
    database = app.engine()
    face_engine = app.face_engine()
    if slug:
        targets = [events_module.require_event(database, slug)]
        if not yes and not dry_run:
            _confirm_purge(slug)
    else:
        targets = events_module.expired_events(database, face_engine=face_engine)
    if dry_run:
        for event in targets:
            click.echo(json.dumps(event.as_json()) if as_json else event.slug)
        app.say(f"dry run: {plural(len(targets), 'event')} would be purged")
        return
    if not targets:
        app.say("nothing to purge")
        return
    cache = response_cache(app, scoped=True)
    failed = 0
    for event in targets:
        try:
            report = events_module.purge_event(database, face_engine, event.slug)
        except PhotoctlError as error:
            if slug:
                raise
            failed += 1
            click.echo(f"error: purge of {event.slug}: {error}", err=True)
            continue
        cache.forget_users(report.user_ids)
        if as_json:
            click.echo(json.dumps(report.as_json()))
        counts = ", ".join(
            plural(value, *_PURGED.get(name, (name, name))) for name, value in report.counts.items()
        )
        where = "; its collection deleted" if report.collection_deleted else ""
        app.say(f"purged {event.slug}: {counts}{where}")
    if failed:
        sys.exit(1)


def _confirm_purge(slug: str) -> None:
    """Ask on a terminal; without one (a script, cron, a pipe), refuse: purging one event by
    name is never a routine job, and nobody is there to have meant it."""
    if not sys.stdin.isatty():
        raise UsageProblem(
            f"not purging event {slug!r} without a terminal to confirm on: add --yes "
            "(`photoctl events purge --expired` needs none)"
        )
    question = f"Delete every face, selfie and match of event {slug!r}?"
    if not click.confirm(question, default=False, err=True):
        click.echo(f"{slug} not purged", err=True)
        sys.exit(1)


@events.command("qr")
@click.argument("slug")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="File to write; the format follows its suffix: .png, .pdf or .svg (an A4 poster; "
    "PNG and PDF at 300 dpi). With --code-only also .eps.",
)
@click.option(
    "--code-line",
    metavar="TEXT",
    help="Where participants find the access code, for an event that asks for one "
    "[default: it is printed on their bib or badge].",
)
@click.option(
    "--code-only", is_flag=True, help="Only the QR code, no poster (for a design of your own)."
)
@click.option(
    "--scale",
    type=click.IntRange(min=1),
    default=12,
    show_default=True,
    help="Pixels per module (--code-only).",
)
@json_option("Print {url, file} as JSON on stdout.")
@pass_app
def events_qr(
    app: App,
    slug: str,
    out: Path,
    code_line: str | None,
    code_only: bool,
    scale: int,
    as_json: bool,
) -> None:
    """Write the poster of the event page, <serve.public_url>/e/SLUG, to print and put up.

    The poster has the event's title and date, what to do, the QR code, the address in text,
    where the access code is (when the event asks for one) and when face data is deleted.
    Needs serve.public_url (PHOTOCTL_SERVE_PUBLIC_URL): the address phones reach serve at.
    Prints the URL it encodes.

    \b
    Examples:
      photoctl events qr marathon-2026 --out poster.pdf
      photoctl events qr marathon-2026 --out poster.png --code-line "The code is on your bib."
      photoctl events qr marathon-2026 --out code.svg --code-only
    """
    from photoctl import events as events_module
    from photoctl import poster

    event = events_module.require_event(app.engine(), slug)
    url = events_module.page_url(app.settings.serve.public_url, slug)
    try:
        if code_only:
            poster.write_code(url, out, scale)
        else:
            line = (code_line or poster.DEFAULT_CODE_LINE) if event.requires_access_code else None
            sheet = poster.Poster(event.title, event.date, url, line, event.retention_words)
            poster.write_poster(sheet, out)
    except OSError as error:
        raise UsageProblem(f"cannot write {out}: {error.strerror or error}") from None
    click.echo(json.dumps({"url": url, "file": str(out)}) if as_json else url)
    what = "QR code" if code_only else "poster"
    app.say(f"{what} of {url} written to {out}")
