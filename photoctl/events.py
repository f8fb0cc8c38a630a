"""Events: create, list, close and purge them; what the event pages and `photoctl events` use.

A service (see db.py): functions take an Engine and own their transactions. Photos and
participants belong to one event, and matching never crosses events (face_step.py, users.py).

Retention: an event's face data is due for purge ``retention_days`` after its date, or, for an
event without a date, after it was closed; an open event without a date (such as the default
one, which holds everything from before events existed) keeps it until it is closed or purged by
hand. A purge deletes every face, embedding, selfie face, match and rejection of the event, and
its Rekognition collection, leaves the photos, marks its participants erased, and is audited.
It can run again at any time (cron) and then only cleans what appeared since.

Access codes are short and meant to be printed on a badge or bib; they are stored hashed as
passwords are (salted scrypt, users.hash_password) with spaces, dashes and case removed: a code
is short enough that a fast unsalted hash taken from the database would give it away. Codes
stored before that as a SHA-256 hash still open enrollment, and are hashed again with scrypt
the first time they do. They make enrolling someone else's face from a photo harder, not
impossible: anyone holding the code can still enroll any face.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from photoctl import audit, db, event_store, face_store, participant_store, users
from photoctl.bibs import lookup
from photoctl.bibs import store as bib_store
from photoctl.bibs.rules import BibRules, parse_range
from photoctl.bibs.rules import allowed as allowed_bib
from photoctl.errors import ConfigError, PhotoctlError
from photoctl.event_store import Event, retention_words
from photoctl.faces.base import FaceEngine
from photoctl.models import DEFAULT_EVENT_SLUG, AuditAction
from photoctl.wording import plural

log = logging.getLogger(__name__)

__all__ = [
    "Event",
    "EventSummary",
    "PurgeReport",
    "UnknownEvent",
    "access_code_matches",
    "close_event",
    "create_event",
    "default_consent_text",
    "edit_event",
    "event_audit",
    "expired_events",
    "get_event",
    "get_event_by_id",
    "list_events",
    "purge_event",
    "require_event",
]

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
# No 0/O, 1/I/L: read off a badge and typed on a phone.
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


class UnknownEvent(ConfigError):
    """No event has this slug (a usage error: exit 2)."""

    def __init__(self, slug: str) -> None:
        super().__init__(f"no event {slug!r} (photoctl events list shows them)")
        self.slug = slug


def default_consent_text(title: str, retention_days: int, date: str | None) -> str:
    """What is stored and for how long, in plain words, for an event without --consent-file.

    When it is deleted is said as the event page says it (event_store.retention_words): an
    event without a date keeps face data until some days after it closes, not after a day.
    """
    return (
        f"To find your photos of {title}, your selfie is turned into a face template (numbers "
        "describing your face) and compared with the faces in this event's photos. We keep the "
        "face template, the list of photos you were found in, the time you agreed and the "
        "version of this text; the selfie image itself is not kept. You can delete your face "
        "data at any time from your gallery page; otherwise it is deleted "
        f"{retention_words(retention_days, date)}. The photos themselves are not deleted."
    )


def _is_default_consent(event: Event) -> bool:
    """Whether the event's consent text is the default one, of this or the earlier wording
    (which said "N days after the event" with or without a date)."""
    earlier = default_consent_text(event.title, event.retention_days, None).replace(
        retention_words(event.retention_days, None), f"{event.retention_days} days after the event"
    )
    return event.consent_text in (
        default_consent_text(event.title, event.retention_days, event.date),
        earlier,
    )


def consent_version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def normalize_access_code(code: str) -> str:
    return re.sub(r"[\s-]+", "", code).upper()


def hash_access_code(code: str) -> str:
    return users.hash_password(normalize_access_code(code))


def new_access_code() -> str:
    """Eight characters (about 40 bits) as XXXX-XXXX."""
    code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    return f"{code[:4]}-{code[4:]}"


def check_slug(slug: str) -> str:
    if not SLUG.match(slug):
        raise ConfigError(
            f"bad event slug {slug!r}: 1 to 64 of a-z, 0-9 and '-', not starting or ending "
            "with '-' (it is part of the event page's address)"
        )
    return slug


def get_event(database: Engine, slug: str) -> Event | None:
    with db.read(database) as conn:
        return event_store.event_by_slug(conn, slug)


def get_event_by_id(database: Engine, event_id: int) -> Event | None:
    with db.read(database) as conn:
        return event_store.event_by_id(conn, event_id)


def require_event(database: Engine, slug: str) -> Event:
    event = get_event(database, slug)
    if event is None:
        raise UnknownEvent(slug)
    return event


def access_code_matches(database: Engine, event: Event, code: str | None) -> bool:
    """Whether ``code`` opens enrollment for the event (always, when it asks for none)."""
    with db.read(database) as conn:
        stored = event_store.access_code_hash(conn, event.id)
    if stored is None:
        return True
    given = normalize_access_code(code or "")
    if not given:
        return False
    if stored.startswith("scrypt$"):
        return users.verify_password(given, stored)
    # A code set before codes were salted (SHA-256): it opens, and is hashed again.
    if not hmac.compare_digest(hashlib.sha256(given.encode()).hexdigest(), stored):
        return False
    with db.write(database) as conn:
        event_store.replace_access_code_hash(conn, event.id, stored, hash_access_code(given))
    return True


def create_event(
    database: Engine,
    slug: str,
    *,
    title: str,
    date: str | None,
    retention_days: int,
    consent_text: str | None = None,
    access_code: str | None = None,
    bibs: bool = False,
    bib_range: str | None = None,
    bib_pattern: str | None = None,
    bib_search: str = "public",
) -> Event:
    """Create an event; ``consent_text`` None takes ``default_consent_text``. ``bibs`` reads
    bib numbers in its photos, within ``bib_range`` ('1-9999') or ``bib_pattern`` when it has
    no start list; ``bib_search`` says who may look photos up by bib (public, code, off)."""
    check_slug(slug)
    bib_values = bib_settings(
        bibs=bibs, bib_range=bib_range, bib_pattern=bib_pattern, bib_search=bib_search
    )
    title = title.strip()
    if not title:
        raise ConfigError("an event needs a title")
    if retention_days < 1:
        raise ConfigError("--retention-days must be at least 1")
    text = (consent_text if consent_text is not None else "").strip() or default_consent_text(
        title, retention_days, date
    )
    if access_code is not None and len(normalize_access_code(access_code)) < 4:
        raise ConfigError("an access code needs at least 4 letters or digits")
    now = time.time()
    with db.write(database) as conn:
        if event_store.event_by_slug(conn, slug) is not None:
            raise ConfigError(f"event {slug!r} exists already")
        event_id = event_store.insert_event(
            conn,
            slug=slug,
            title=title,
            date=date,
            retention_days=retention_days,
            consent_text=text,
            consent_version=consent_version(text),
            access_code_hash=hash_access_code(access_code) if access_code else None,
            created_at=now,
            **bib_values,
        )
        audit.record(
            conn,
            event_id,
            AuditAction.EVENT_CREATE,
            now=now,
            consent_version=consent_version(text),
            retention_days=retention_days,
            access_code_required=access_code is not None,
        )
        event = event_store.event_by_id(conn, event_id)
    assert event is not None
    return event


_BIB_SEARCH = ("public", "code", "off")


def bib_settings(**given: Any) -> dict[str, Any]:
    """The event columns of the bib options given (bibs, bib_range, bib_pattern, bib_search),
    checked: ConfigError naming what is wrong. An empty range or pattern removes it."""
    values: dict[str, Any] = {}
    for key, value in given.items():
        if key not in ("bibs", "bib_range", "bib_pattern", "bib_search"):
            raise TypeError(f"unknown bib setting {key}")
        if value is None:
            continue
        if key == "bib_range" and value.strip():
            try:
                low, high = parse_range(value)
            except ValueError as error:
                raise ConfigError(f"--bib-range: {error}") from None
            value = f"{low}-{high}"
        elif key == "bib_pattern" and value.strip():
            try:
                re.compile(value)
            except re.error as error:
                raise ConfigError(
                    f"--bib-pattern {value!r} is not a regular expression: {error}"
                ) from None
        elif key == "bib_search" and value not in _BIB_SEARCH:
            raise ConfigError(f"--bib-search must be one of {', '.join(_BIB_SEARCH)}")
        if key in ("bib_range", "bib_pattern"):
            value = value.strip() or None
        values[key] = value
    return values


def _drop_reads_out_of_bounds(
    conn: Connection, event_id: int, values: dict[str, Any], event: Event
) -> None:
    """After a new range or pattern: numbers that are not bibs now are not kept as bibs (a
    start list, when the event has one, still rules)."""
    bib_range = values.get("bib_range", event.bib_range)
    low, high = parse_range(bib_range) if bib_range else (1, 9999)
    rules = BibRules(
        start_list=bib_store.start_list_bibs(conn, event_id),
        low=low,
        high=high,
        pattern=values.get("bib_pattern", event.bib_pattern),
    )
    bib_store.drop_reads_except(conn, event_id, lambda bib: allowed_bib(bib, rules))


_KEEP: Any = object()  # edit_event: leave this field as it is
_IN_DEFAULT = {"title", "date", "retention_days"}  # what the default consent text says


def edit_event(
    database: Engine,
    slug: str,
    *,
    title: str | None = None,
    date: str | None | Any = _KEEP,
    retention_days: int | None = None,
    consent_text: str | None = None,
    access_code: str | None | Any = _KEEP,
    self_enrollment: bool | None = None,
    **bib_changes: Any,
) -> Event:
    """Change an event; fields not given stay. ``access_code=None`` removes the code.
    ``self_enrollment`` opens or shuts the event page to enrollments (a closed event stays
    closed).

    A new consent text gets a new version: participants who enrolled before keep the version
    they agreed to (users.consent_version), new ones agree to the new text. Audited, with the
    names of the fields changed. An event still on the default consent text gets it anew when
    its title, date or retention changes, so that the text stays true.
    """
    values: dict[str, Any] = {}
    if title is not None:
        if not title.strip():
            raise ConfigError("an event needs a title")
        values["title"] = title.strip()
    if date is not _KEEP:
        values["date"] = date
    if retention_days is not None:
        if retention_days < 1:
            raise ConfigError("--retention-days must be at least 1")
        values["retention_days"] = retention_days
    if consent_text is not None:
        if not consent_text.strip():
            raise ConfigError("the consent text is empty")
        values["consent_text"] = consent_text.strip()
        values["consent_version"] = consent_version(consent_text.strip())
    if access_code is not _KEEP:
        if access_code is not None and len(normalize_access_code(access_code)) < 4:
            raise ConfigError("an access code needs at least 4 letters or digits")
        values["access_code_hash"] = hash_access_code(access_code) if access_code else None
    if self_enrollment is not None:
        values["self_enrollment"] = self_enrollment
    values.update(bib_settings(**bib_changes))
    now = time.time()
    with db.write(database) as conn:
        event = event_store.event_by_slug(conn, slug)
        if event is None:
            raise UnknownEvent(slug)
        if consent_text is None and _is_default_consent(event) and values.keys() & _IN_DEFAULT:
            text = default_consent_text(
                values.get("title", event.title),
                values.get("retention_days", event.retention_days),
                values.get("date", event.date),
            )
            if text != event.consent_text:
                values["consent_text"] = text
                values["consent_version"] = consent_version(text)
        if values:
            event_store.update_event(conn, event.id, **values)
            if values.keys() & {"bib_range", "bib_pattern"}:
                _drop_reads_out_of_bounds(conn, event.id, values, event)
            names = {"access_code_hash": "access_code", "consent_text": "consent"}
            changed = sorted({names.get(key, key) for key in values} - {"consent_version"})
            detail: dict[str, Any] = {"changed": ",".join(changed)}
            if "consent_version" in values:
                detail["consent_version"] = values["consent_version"]
            audit.record(conn, event.id, AuditAction.EVENT_EDIT, now=now, **detail)
        edited = event_store.event_by_id(conn, event.id)
    assert edited is not None
    return edited


@dataclass(frozen=True)
class EventSummary:
    event: Event
    photos: int
    participants: int

    def as_json(self) -> dict[str, Any]:
        return {**self.event.as_json(), "photos": self.photos, "participants": self.participants}


def list_events(database: Engine) -> list[EventSummary]:
    with db.read(database) as conn:
        counts = event_store.counts_by_event(conn)
        events = event_store.all_events(conn)
    return [EventSummary(e, *counts.get(e.id, (0, 0))) for e in events]


def close_event(database: Engine, slug: str) -> Event:
    """No new enrollments from now on (photos are still taken in and matched)."""
    now = time.time()
    with db.write(database) as conn:
        event = event_store.event_by_slug(conn, slug)
        if event is None:
            raise UnknownEvent(slug)
        if event_store.set_closed(conn, event.id, now):
            audit.record(conn, event.id, AuditAction.EVENT_CLOSE, now=now)
        closed = event_store.event_by_id(conn, event.id)
    assert closed is not None
    return closed


def expired_events(
    database: Engine, now: float | None = None, face_engine: FaceEngine | None = None
) -> list[Event]:
    """Events past their retention whose face data is not purged yet, or has come back: rows a
    worker of an older photoctl stored after the purge (writes check it now), or (asking
    ``face_engine``, one call) an index a worker racing the purge re-created and could not
    delete again."""
    now = time.time() if now is None else now
    due: list[Event] = []
    purged: list[Event] = []
    with db.read(database) as conn:
        for event in event_store.all_events(conn):
            ends = event.retention_ends_at
            if ends is None or ends > now:
                continue
            if event.purged_at is None or face_store.event_has_face_data(conn, event.id):
                due.append(event)
            else:
                purged.append(event)
    if purged and face_engine is not None and face_engine.keeps_index:
        try:
            indexed = face_engine.indexed_events([event.slug for event in purged])
        except PhotoctlError as error:  # the other events can still be purged
            log.warning("[Purge] Could not list the face engine's indexes: %s", error)
            indexed = set()
        due += [event for event in purged if event.slug in indexed]
    return sorted(due, key=lambda event: event.id)


@dataclass(frozen=True)
class PurgeReport:
    slug: str
    first_purge: bool
    collection_deleted: bool
    counts: dict[str, int]
    user_ids: list[int]  # whose cached lists the caller drops

    def as_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "first_purge": self.first_purge,
            "collection_deleted": self.collection_deleted,
            **self.counts,
        }


def purge_event(
    database: Engine, face_engine: FaceEngine | None, slug: str, now: float | None = None
) -> PurgeReport:
    """Delete the event's face data (see the module docstring); safe to repeat.

    The purge mark is committed first, so a worker starting on one of its photos stores no new
    faces; then the engine's index of the event goes (DeleteCollection), then the rows. If the
    engine call fails, nothing else has changed but the mark, and a rerun (or `purge
    --expired`, which picks events whose face data is still there) finishes the work.
    """
    now = time.time() if now is None else now
    with db.read(database) as conn:
        event = event_store.event_by_slug(conn, slug)
        if event is None:
            raise UnknownEvent(slug)
        indexed = face_store.event_indexed_count(conn, event.id)
    keeps_index = face_engine is not None and face_engine.keeps_index
    if indexed and not keeps_index:
        raise ConfigError(
            f"event {slug!r} has {plural(indexed, 'face')} in a face engine's own index "
            "(Rekognition); "
            "purge with --engine rekognition so that they are deleted there too"
        )
    with db.write(database) as conn:
        event_store.set_purged(conn, event.id, now)
    if face_engine is not None and keeps_index:
        face_engine.drop_event(event.slug)
    with db.write(database) as conn:
        user_ids = participant_store.event_user_ids(conn, event.id)
        # Users' rows before their face data, as every writer of both does (erasure, "not me",
        # store_matches): two transactions taking them in opposite orders can deadlock.
        erased = participant_store.mark_event_erased(conn, event.id, now)
        counts = face_store.delete_event_face_data(conn, event.id)
        counts["participants_erased"] = erased
        # Participants' bib links go with their galleries; the runners' names are personal data
        # too; the bibs stay, as the photos do (issue 21).
        counts.update(lookup.forget_event_bib_links(conn, event.id))
        counts["start_list_names"] = bib_store.forget_start_list_names(conn, event.id)
        first = event.purged_at is None
        if first or any(counts.values()):
            audit.record(
                conn,
                event.id,
                AuditAction.PURGE,
                now=now,
                collection_deleted=keeps_index,
                **counts,
            )
    # After the commit: no earlier version of the deleted rows stays in SQLite's WAL.
    db.truncate_wal(database)
    return PurgeReport(event.slug, first, keeps_index, counts, user_ids)


def event_audit(
    database: Engine, slug: str | None = None, limit: int | None = None
) -> list[audit.Entry]:
    """The audit log of one event (or of every event), oldest entry first."""
    with db.read(database) as conn:
        event_id = None
        if slug is not None:
            event = event_store.event_by_slug(conn, slug)
            if event is None:
                raise UnknownEvent(slug)
            event_id = event.id
        return audit.entries(conn, event_id, limit)


def is_default(event: Event) -> bool:
    return event.slug == DEFAULT_EVENT_SLUG


def page_url(public_url: str, slug: str) -> str:
    """The address of the event page participants open (what `events qr` encodes); the URL's
    form was checked when the settings were loaded (config.py)."""
    base = public_url.strip().rstrip("/")
    if not base:
        raise ConfigError(
            "serve.public_url is not set: set it to the address participants reach serve at, "
            "e.g. `public_url = https://photos.example.org` under [serve] in config.ini or "
            "PHOTOCTL_SERVE_PUBLIC_URL"
        )
    return f"{base}/e/{slug}"
