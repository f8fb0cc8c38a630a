"""Participants: people who enroll themselves on an event page and keep a private gallery link.

A service (see db.py) for the event pages (api/) to call. A participant is a user of one
event (participant_store.py), enrolled through the same code path as operator-made users
(``users.enroll_selfie``), so their selfie is matched only against that event's photos. Their
gallery token is shown once and stored only as a hash; the API token every user row needs is
made up and never shown. Consent is recorded as the consent text's version and the time.

Every step is audited (audit.py): consent, enroll and matches (counts) when someone enrolls or
adds a selfie, not_me, erase. Erasing keeps the row, with ``erased_at``, so that the gallery
link can say that the face data was deleted and when.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from photoctl import audit, db, event_store, face_store, gallery, participant_store, users
from photoctl.bibs import lookup
from photoctl.config import Settings
from photoctl.errors import ConfigError, NotFound, PermanentError, PhotoctlError
from photoctl.event_store import Event
from photoctl.events import access_code_matches
from photoctl.faces.base import FaceEngine
from photoctl.models import AuditAction
from photoctl.participant_store import ERASED_BY_PARTICIPANT, Participant

__all__ = [
    "BadBib",
    "BibsClosed",
    "ConsentRequired",
    "TooManyBibs",
    "add_bib",
    "bibs_of",
    "forget_bib",
    "Enrolled",
    "EventClosed",
    "Participant",
    "ParticipantErased",
    "WrongAccessCode",
    "add_selfie",
    "enroll_participant",
    "erase_participant",
    "gallery_holder",
    "not_me",
    "participant_by_token",
    "participant_photo",
    "participant_photos",
    "processing_count",
    "said_not_me",
]


class ConsentRequired(PermanentError):
    """The consent box was not ticked: nothing is looked at or stored."""

    def __init__(self) -> None:
        super().__init__("consent is required to enroll: tick the box to agree")


class WrongAccessCode(PermanentError):
    """The event asks for an access code and it is missing or wrong."""

    def __init__(self) -> None:
        super().__init__("this event needs its access code to enroll, and it was wrong or missing")


class EventClosed(PermanentError):
    """The event is closed or purged, or its page is not open to enrollment (the default
    event's until an organizer opens it): it takes no new enrollment."""

    def __init__(self, event: Event) -> None:
        if event.purged_at is not None:
            what = "its face data was deleted"
        elif event.closed_at is not None:
            what = "it is closed"
        else:
            what = "self-enrollment is off (photoctl events edit SLUG --self-enrollment on)"
        super().__init__(f"event {event.slug!r} takes no new enrollments: {what}")
        self.event = event


class ParticipantErased(PermanentError):
    """The participant's face data was erased (by them or by the event's purge)."""

    def __init__(self) -> None:
        super().__init__("this participant's face data was deleted")


class BibsClosed(PermanentError):
    """The event does not let participants find photos by bib (bibs off, bib search off, or
    its face data purged)."""

    def __init__(self) -> None:
        super().__init__("this event does not find photos by bib number")


class BadBib(PermanentError):
    """What was typed cannot be a bib number."""

    def __init__(self) -> None:
        super().__init__("a bib number is letters and digits, at most 16")


class TooManyBibs(PermanentError):
    """A gallery holds at most MAX_BIBS bibs (a runner has one; a few for a wrong one typed)."""

    def __init__(self) -> None:
        super().__init__(f"a gallery holds at most {MAX_BIBS} bib numbers")


# A runner wears one bib; a few more leave room for a typo corrected before the wrong one is
# removed. More would let one gallery collect every runner's photos, one bib at a time.
MAX_BIBS = 3


def bib_search_open(event: Event) -> bool:
    """Whether the event lets anyone find photos by bib: bibs read, search on (with an access
    code to type where it asks for one), face data not purged."""
    if event.bib_search == "code" and not event.requires_access_code:
        return False  # "code" without a code to type: closed rather than open to anyone
    return event.bibs and event.bib_search in ("public", "code") and event.purged_at is None


@dataclass(frozen=True)
class Enrolled:
    participant: Participant
    gallery_token: str
    matched_photos: int


def _fresh_event(database: Engine, event_id: int) -> Event:
    with db.read(database) as conn:
        event = event_store.event_by_id(conn, event_id)
    if event is None:
        raise NotFound(f"no event with id {event_id}")
    return event


def enroll_participant(
    database: Engine,
    face_engine: FaceEngine,
    settings: Settings,
    event: Event,
    selfie: Path,
    *,
    consented: bool,
    access_code: str | None,
) -> Enrolled:
    """Enroll a new participant of ``event`` with their selfie; returns their gallery token.

    Raises EventClosed, ConsentRequired or WrongAccessCode before the selfie is looked at;
    NoFace, SeveralFaces (a participant's selfie must show one face: taking the largest could
    enroll a bystander) or another PermanentError for a bad selfie, leaving nothing stored.
    """
    event = _fresh_event(database, event.id)  # closed since the page was shown?
    if not event.takes_enrollments:
        raise EventClosed(event)
    if not consented:
        raise ConsentRequired()
    if not access_code_matches(database, event, access_code):
        raise WrongAccessCode()
    gallery_token = users.new_token()
    now = time.time()
    with db.write(database) as conn:
        participant_id = participant_store.insert_participant(
            conn,
            event_id=event.id,
            name=f"p-{secrets.token_hex(8)}",
            token_hash=users.hash_token(users.new_token()),
            gallery_token_hash=users.hash_token(gallery_token),
            consent_version=event.consent_version,
            now=now,
        )
    try:
        count = users.enroll_selfie(
            database, face_engine, settings, participant_id, selfie, largest=False
        )
    except PhotoctlError:
        _remove_failed(database, face_engine, event, participant_id)
        raise
    with db.write(database) as conn:
        audit.record(
            conn,
            event.id,
            AuditAction.CONSENT,
            participant_id,
            now=now,
            consent_version=event.consent_version,
        )
        audit.record(conn, event.id, AuditAction.ENROLL, participant_id, selfies=1)
        audit.record(conn, event.id, AuditAction.MATCHES, participant_id, photos=count)
        participant = participant_store.by_id(conn, participant_id)
    assert participant is not None
    return Enrolled(participant, gallery_token, count)


def _remove_failed(
    database: Engine, face_engine: FaceEngine, event: Event, participant_id: int
) -> None:
    """Undo a failed enrollment: what the engine indexed, then the rows (cascading)."""
    with db.read(database) as conn:
        external_ids = face_store.selfie_external_ids(conn, participant_id)
    if external_ids:
        face_engine.for_event(event.slug).forget(external_ids)
    with db.write(database) as conn:
        participant_store.delete_participant(conn, participant_id)
    # A selfie may have been stored before the failure: no copy of it in SQLite's WAL either.
    db.truncate_wal(database)


def participant_by_token(database: Engine, token: str) -> Participant | None:
    """The participant holding this gallery token, erased ones included; None if nobody."""
    if not token:
        return None
    with db.read(database) as conn:
        return participant_store.by_gallery_token_hash(conn, users.hash_token(token))


def gallery_holder(database: Engine, token: str) -> tuple[Participant, Event] | None:
    """The participant holding this gallery token (erased ones included) and their event."""
    if not token:
        return None
    with db.read(database) as conn:
        return participant_store.holder_by_gallery_hash(conn, users.hash_token(token))


def participant_photos(
    database: Engine, participant_id: int, limit: int, cursor: int | None
) -> tuple[list[lookup.GalleryItem], int | None]:
    """The participant's processed photos, newest first; (page, next cursor): those their face
    matched and those where one of their bibs was read, "not me" left out, each marked with
    why it is there (``found_by``)."""
    with db.read(database) as conn:
        return lookup.gallery_photos(conn, participant_id, limit, cursor)


def processing_count(database: Engine, event_id: int) -> int:
    """Photos of the event still queued, retrying or running (their matches may follow)."""
    with db.read(database) as conn:
        return participant_store.processing_count(conn, event_id)


def participant_photo(
    database: Engine, participant_id: int, photo_id: int
) -> gallery.PhotoFiles | None:
    """The files of a photo in the participant's gallery (face or bib); None for any other."""
    with db.read(database) as conn:
        return lookup.gallery_photo_files(conn, participant_id, photo_id)


def said_not_me(database: Engine, participant_id: int, photo_id: int) -> bool:
    """Whether the participant said "not me" to this photo (and has not been erased since)."""
    with db.read(database) as conn:
        return bool(face_store.rejected_pairs(conn, [(photo_id, participant_id)]))


def _live_participant(database: Engine, participant_id: int) -> Participant:
    with db.read(database) as conn:
        participant = participant_store.by_id(conn, participant_id)
    if participant is None:
        raise NotFound(f"no participant with id {participant_id}")
    if participant.erased_at is not None:
        raise ParticipantErased()
    return participant


def not_me(database: Engine, participant_id: int, photo_id: int) -> bool:
    """Remove the photo from the participant's gallery for good, whether their face or one of
    their bibs put it there; False if it was not in their gallery.

    Raises ParticipantErased for an erased participant.
    """
    participant = _live_participant(database, participant_id)
    now = time.time()
    with db.write(database) as conn:
        removed = face_store.reject_match(
            conn, participant_id, photo_id, now
        ) or lookup.reject_bib_photo(conn, participant_id, photo_id, now)
        if removed:
            audit.record(
                conn, participant.event_id, AuditAction.NOT_ME, participant_id, now=now, photos=1
            )
    return removed


def add_selfie(
    database: Engine,
    face_engine: FaceEngine,
    settings: Settings,
    participant_id: int,
    selfie: Path,
) -> int:
    """One more selfie of the participant (better recall), matched against the event's photos;
    the first selfie and its matches stay. Returns how many photos were newly matched.

    Works on a closed event (the participant consented before it closed); raises
    ParticipantErased for an erased participant, NoFace/SeveralFaces for a bad selfie.
    """
    participant = _live_participant(database, participant_id)
    with db.read(database) as conn:
        before = len(face_store.photos_of_user(conn, participant_id))
    after = users.enroll_selfie(
        database, face_engine, settings, participant_id, selfie, largest=False, replace=False
    )
    added = max(0, after - before)
    with db.write(database) as conn:
        audit.record(conn, participant.event_id, AuditAction.ENROLL, participant_id, selfies=1)
        audit.record(conn, participant.event_id, AuditAction.MATCHES, participant_id, photos=added)
    return added


def bibs_of(database: Engine, participant_id: int) -> list[str]:
    """The bibs the participant added to their gallery."""
    with db.read(database) as conn:
        return lookup.bibs_of(conn, participant_id)


def add_bib(database: Engine, participant_id: int, typed: str) -> str:
    """Add a bib to the participant's gallery: photos where it was read join it. Returns the bib
    as stored. Raises BibsClosed, BadBib, TooManyBibs, ParticipantErased."""
    participant = _live_participant(database, participant_id)
    event = _fresh_event(database, participant.event_id)
    if not bib_search_open(event):
        raise BibsClosed()
    bib = lookup.normalize_bib(typed)
    if bib is None:
        raise BadBib()
    with db.write(database) as conn:
        # The user's row first, as erasure takes it (lock order, README): an erasure committed
        # meanwhile is seen here, and no bib is linked to an erased gallery.
        if participant_store.erased_at_for_update(conn, participant_id) is not None:
            raise ParticipantErased()
        held = lookup.bibs_of(conn, participant_id)
        if bib not in held and len(held) >= MAX_BIBS:
            raise TooManyBibs()
        lookup.add_participant_bib(conn, participant_id, event.id, bib, time.time())
    return bib


def forget_bib(database: Engine, participant_id: int, bib: str) -> bool:
    """Take a bib out of the participant's gallery; False if it was not there."""
    with db.write(database) as conn:
        return lookup.forget_participant_bibs(conn, participant_id, bib) > 0


def erase_participant(
    database: Engine, face_engine: FaceEngine | None, settings: Settings, participant_id: int
) -> None:
    """Delete the participant's face data: selfie faces (in the event's Rekognition collection
    too), matches and rejections. The row stays, marked erased; erasing twice is a no-op.

    ``settings`` is part of the signature the pages use; the engine given must be able to
    forget indexed selfies (ConfigError otherwise: an index would keep the face).
    """
    with db.read(database) as conn:
        participant = participant_store.by_id(conn, participant_id)
        if participant is None:
            raise NotFound(f"no participant with id {participant_id}")
        if participant.erased_at is not None:
            return
        external_ids = face_store.selfie_external_ids(conn, participant_id)
        event = event_store.event_by_id(conn, participant.event_id)
    if external_ids:
        if face_engine is None or event is None:
            raise ConfigError("this participant's selfie is held by a face engine it cannot reach")
        face_engine.for_event(event.slug).forget(external_ids)
    now = time.time()
    with db.write(database) as conn:
        # The mark first: its row lock makes a worker storing matches or a selfie for this
        # participant finish before the deletion below, or see the mark (face_store).
        erased = participant_store.mark_erased(conn, participant_id, ERASED_BY_PARTICIPANT, now)
        late = face_store.selfie_external_ids(conn, participant_id, besides=external_ids)
        counts = face_store.delete_user_face_data(conn, participant_id)
        # Without a selfie the gallery is gone: its bib links go with it.
        counts["bibs"] = lookup.forget_participant_bibs(conn, participant_id)
        if erased:
            audit.record(
                conn, participant.event_id, AuditAction.ERASE, participant_id, now=now, **counts
            )
    # After the commit: no earlier version of the deleted rows stays in SQLite's WAL.
    db.truncate_wal(database)
    users.forget_late_selfies(face_engine, event, late)
