"""The operator's side of bib numbers: start lists, scans of processed photos, look-ups, figures.

Services (see db.py): each takes an Engine and owns its transactions. A start list's names are
stored for the organizer's own export and deleted at the event's purge; nothing here prints or
logs them.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine

from photoctl import db, event_store, queue
from photoctl.bibs import store
from photoctl.bibs.rules import BibRules, normalize_bib, parse_range
from photoctl.config import Settings
from photoctl.errors import ConfigError, PhotoctlError
from photoctl.event_store import Event
from photoctl.events import UnknownEvent
from photoctl.models import JobKind
from photoctl.wording import plural

# What a bib on a start list may look like: digits, or letters then digits (A123), short.
_BIB_FORM = re.compile(r"[A-Z]{0,4}\d{1,8}")
MAX_NAME = 200


class BadStartList(PhotoctlError):
    """Rows of a start list that cannot be taken, each named by its line; nothing was stored."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"{path}: {len(problems)} bad row{'s' if len(problems) != 1 else ''}, "
            "nothing imported (the start list is as it was)"
        )


def require_event(conn: Connection, slug: str) -> Event:
    event = event_store.event_by_slug(conn, slug)
    if event is None:
        raise UnknownEvent(slug)
    return event


def rules_for(conn: Connection, event: Event, settings: Settings) -> BibRules:
    """What counts as a bib in the event: its start list, else its range and pattern."""
    low, high = parse_range(event.bib_range) if event.bib_range else (1, 9999)
    return BibRules(
        start_list=store.start_list_bibs(conn, event.id),
        low=low,
        high=high,
        pattern=event.bib_pattern,
        min_confidence=settings.bibs.min_confidence,
    )


def parse_start_list(path: Path) -> list[tuple[str, str | None]]:
    """The runners of a CSV file: a `bib` column and an optional `name` column (header row,
    comma or semicolon separated, UTF-8). ConfigError for a file that is not such a CSV,
    BadStartList naming every bad row by its line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text (save the CSV as UTF-8)") from None
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from None
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = [cell.strip().lower() for cell in next(reader)]
    except StopIteration:
        raise ConfigError(f"{path} is empty: it needs a header row with a `bib` column") from None
    if "bib" not in header:
        raise ConfigError(f"{path} has no `bib` column in its header row (found: {first!r})")
    bib_at, name_at = header.index("bib"), header.index("name") if "name" in header else None
    runners: list[tuple[str, str | None]] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        raw = row[bib_at].strip() if bib_at < len(row) else ""
        bib = normalize_bib(raw) if raw else ""
        if not raw:
            problems.append(f"line {line}: no bib")
            continue
        if not _BIB_FORM.fullmatch(bib):
            # The cell is not echoed: with columns swapped it would be a runner's name.
            problems.append(f"line {line}: not a bib (digits, or letters then digits)")
            continue
        if bib in seen:
            problems.append(f"line {line}: bib {bib} is on line {seen[bib]} already")
            continue
        seen[bib] = line
        name = row[name_at].strip() if name_at is not None and name_at < len(row) else ""
        if len(name) > MAX_NAME:
            # Only the line is named, never the name: it is personal data.
            problems.append(f"line {line}: the name is longer than {MAX_NAME} characters")
            continue
        runners.append((bib, name or None))
    if problems:
        raise BadStartList(path, problems)
    if not runners:
        raise ConfigError(f"{path} holds no runner (only its header row)")
    return runners


@dataclass(frozen=True)
class ImportReport:
    slug: str
    runners: int
    named: int
    replaced: int  # runners of the start list before
    dropped: int  # bib reads of numbers not on the new list, deleted


def import_start_list(database: Engine, slug: str, path: Path) -> ImportReport:
    """Replace the event's start list with the CSV file's runners, all or nothing."""
    runners = parse_start_list(path)
    with db.write(database) as conn:
        event = require_event(conn, slug)
        before = store.start_list_bibs(conn, event.id)
        store.replace_start_list(conn, event.id, runners)
        listed = {bib for bib, _ in runners}
        dropped = store.drop_reads_except(conn, event.id, listed.__contains__)
    return ImportReport(
        slug,
        len(runners),
        sum(1 for _, name in runners if name),
        len(before) if before else 0,
        dropped,
    )


def scan(database: Engine, slug: str) -> int:
    """Queue a bib job for each processed photo of the event not read yet; returns how many."""
    with db.write(database) as conn:
        event = require_event(conn, slug)
        if not event.bibs:
            raise ConfigError(
                f"event {slug} does not read bibs: `photoctl events edit {slug} --bibs on` first"
            )
        photo_ids = store.photos_to_read(conn, event.id)
        queue.enqueue_jobs(conn, JobKind.READ_BIBS, list(photo_ids))
    return len(photo_ids)


def find(database: Engine, slug: str, bib: str) -> tuple[str, list[store.PhotoOfBib]]:
    """The bib as stored (no leading zeros, letters upper case) and its photos."""
    wanted = normalize_bib(bib.strip().lstrip("#"))
    with db.read(database) as conn:
        event = require_event(conn, slug)
        return wanted, store.photos_of_bib(conn, event.id, wanted)


def list_all(database: Engine, slug: str) -> dict[str, list[store.PhotoOfBib]]:
    with db.read(database) as conn:
        event = require_event(conn, slug)
        return store.all_bibs(conn, event.id)


def event_counts(database: Engine, slug: str) -> store.BibCounts:
    with db.read(database) as conn:
        event = require_event(conn, slug)
        return store.counts(conn, [event.id])


def describe(counts: store.BibCounts) -> str:
    """One line of bib figures, for `bibs stats`, `stats` and `events show`."""
    share = counts.runners_share
    runners = (
        f", {counts.runners_found} of {counts.start_list} start-list runners "
        f"({share:.0%}) in at least one photo"
        if share is not None
        else ""
    )
    return (
        f"{plural(counts.photos_read, 'photo')} read, {counts.photos_with_bibs} with bibs, "
        f"{plural(counts.distinct_bibs, 'distinct bib')}{runners}, "
        f"{counts.photos_unreadable} with numbers not read as bibs"
    )
