"""`photoctl audit`: the events' append-only audit log, as lines or JSON."""

from __future__ import annotations

import datetime
import json

import click

from photoctl.cli.common import App, json_option, pass_app


def _moment(value: float) -> str:
    return datetime.datetime.fromtimestamp(value, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@click.command()
@click.option("--event", "slug", help="Only this event's entries [default: every event].")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N entries.")
@json_option("One JSON object per entry, per line.")
@pass_app
def audit(app: App, slug: str | None, limit: int | None, as_json: bool) -> None:
    """The audit log, oldest first: consent, enrollments, matches made, "not me", erasures,
    purges, events created and closed. It holds counts and versions, never faces, tokens,
    images or addresses, and nothing ever changes or deletes an entry.

    \b
    Example:
      photoctl audit --event marathon-2026 --json
    """
    from photoctl import events as events_module

    database = app.engine()
    slugs = {s.event.id: s.event.slug for s in events_module.list_events(database)}
    for entry in events_module.event_audit(database, slug, limit):
        if as_json:
            click.echo(json.dumps({**entry.as_json(), "event": slugs.get(entry.event_id)}))
            continue
        who = entry.actor
        if entry.participant_id is not None:
            whose = f"participant {entry.participant_id}"
            who = whose if who == "participant" else f"{who} ({whose})"
        elif "worker" in entry.detail:
            who = f"worker {entry.detail['worker']}"
        # Versions are 64 hex digits: their first 12 tell them apart on a terminal (--json has
        # them whole).
        detail = " ".join(
            f"{key}={str(value)[:12]}" for key, value in entry.detail.items() if key != "worker"
        )
        click.echo(
            f"{_moment(entry.at)}  {slugs.get(entry.event_id, entry.event_id)}  "
            f"{entry.action}  {who}  {detail}".rstrip()
        )
