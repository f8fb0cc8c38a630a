"""The pipeline's face step: find a photo's faces, store them, match them with enrolled users.

A service (see db.py): it takes an Engine and owns its transactions, each one short and none
held open across a call to the face engine (which may be a network call). It commits, before
the job's final transaction and each in its own transaction:

1. for an engine that keeps its own index (Rekognition), the pending checkpoint, before the
   engine is asked (``face_store.pending_checkpoint``), cleared again if the engine refuses the
   photo (then nothing was indexed);
2. the photo's faces, with the checkpoint set to the engine's name;
3. the matches of those faces, not yet findable (``findable_at`` NULL).

This is correct because each write can be repeated and none is shown to users before the job's
final transaction, whatever happens in between (crash, lease lost, retry). Repeated: a rerun
reuses the stored faces instead of asking the engine again, a pending checkpoint makes the
engine discard what an interrupted attempt indexed, and a match stored already is kept.
Not shown: the gallery lists only processed photos, and the worker's final transaction is the
one that records the photo as processed (``catalog.record_processed``), publishes its matches
(``face_store.mark_findable``) and completes the job, all or nothing. (A photo processed before,
whose done job is retried or whose file changed, stays listed meanwhile: its new faces and
matches show as they are committed.)

The order of writes closes the race between a photo and an enrollment processed at the same
time: a photo's faces are committed before enrolled users are read, and a selfie is committed
before stored faces are read (users.enroll), so whichever commits second sees the other.

A photo the face service refuses (FacesRefused: too small, a format or parameter it rejects) is
not a failed job: retrying cannot help, and the photo's thumbnail and preview are good. The step
returns the reason instead (FaceSummary.faces_error), which the job's final transaction records
on the photo (photos.faces_error, counted by `stats`) and as the completed job's reason (`jobs`);
`jobs retry` asks the service again. Faces an engine found but left out (Rekognition indexes at
most 100 per photo) are named the same way, in the log and the job's reason.

Matching is scoped by the photo's event: its faces go to the event's index (Rekognition: the
event's collection) and are matched against the selfies of that event's users only. A photo of
a purged event gets no faces at all: nobody can enroll there any more, and its face data was
deleted on purpose. A purge may also come while the step runs: each of its writes first asks
whether the event still takes face data (``event_store.takes_face_data``, in the same
transaction), and when it does not, the step stores nothing and deletes the event's index again,
which its own call to the engine may have re-created (drop_purged_index).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image
from sqlalchemy import Engine

from photoctl import audit, db, event_store, face_store, faces
from photoctl.catalog import PhotoRecord
from photoctl.config import Settings
from photoctl.errors import FacesRefused, PhotoctlError
from photoctl.faces import vector_cache
from photoctl.faces.base import FaceEngine, StoredFace
from photoctl.imaging import DecodedPhoto
from photoctl.models import AuditAction
from photoctl.pipeline import FaceStep, FaceSummary, NoFaces

log = logging.getLogger(__name__)


class EventPurged(Exception):
    """The event was purged while its face data was being found: store none of it."""


def drop_purged_index(engine: FaceEngine, slug: str, what: str) -> None:
    """Delete a purged event's index again after ``what`` (a call to the engine that came after
    the purge had deleted it may have re-created it); a failure is logged with the remedy."""
    log.info("[FaceRecognition] event %s was purged during %s: nothing of it is kept", slug, what)
    if not engine.keeps_index:
        return
    try:
        engine.drop_event(slug)
    except PhotoctlError as error:
        # The job is done either way; `events purge --expired` (cron) deletes the index later.
        log.error(
            "[FaceRecognition] event %s was purged during %s, and its index could not be "
            "deleted again (%s): `photoctl events purge %s` deletes it",
            slug,
            what,
            error,
            slug,
        )


def make_face_step(
    engine_name: str, settings: Settings, database: Engine, holder: str | None = None
) -> FaceStep:
    """The pipeline's face step for an engine name (`none`: thumbnails and metadata only)."""
    face_engine = faces.make_engine(engine_name, settings, database, holder)
    if face_engine is None:
        return NoFaces()
    return EngineFaceStep(database, face_engine, holder)


class EngineFaceStep:
    """The face step of one face engine (a pipeline.FaceStep)."""

    def __init__(self, database: Engine, engine: FaceEngine, worker_id: str | None = None) -> None:
        self.database = database
        self.engine = engine
        self.worker_id = worker_id  # credited in the audit log for the matches it makes
        self.detail_px = engine.detail_px
        self.jobs_in_flight = engine.jobs_in_flight

    def warm_up(self) -> None:
        self.engine.warm_up()

    def run(self, photo: PhotoRecord, decoded: DecodedPhoto) -> FaceSummary:
        with db.read(self.database) as conn:
            event = event_store.event_of_photo(conn, photo.id)
        if event is None or event.purged_at is not None:
            return FaceSummary()
        engine = self.engine.for_event(event.slug)
        try:
            found, note = self.photo_faces(photo, lambda: decoded.sharpest, engine, event.id)
            boxes = tuple(face.box for face in found if face.box is not None)
            if not found:
                return FaceSummary(note=note)
            # The event's selfies as this process holds them, brought up to date by their
            # version (faces/vector_cache.py): no read of every participant per photo.
            enrolled = vector_cache.selfie_vectors(self.database, event.id, engine.name)
            matches = engine.match_enrolled(found, enrolled)
            if matches:
                with db.write(self.database) as conn:
                    if not event_store.takes_face_data(conn, event.id):
                        raise EventPurged
                    gained = face_store.store_matches(conn, matches)
                    if gained:
                        # Only matches really inserted: a rerun of the job audits nothing twice.
                        credit: dict[str, Any] = (
                            {"worker": self.worker_id} if self.worker_id else {}
                        )
                        audit.record(
                            conn,
                            event.id,
                            AuditAction.MATCHES,
                            source="photo",
                            users=len(gained),
                            **credit,
                        )
        except FacesRefused as refused:
            log.warning("[FaceRecognition] photo %d: faces failed: %s", photo.id, refused)
            return FaceSummary(faces_error=str(refused))
        except EventPurged:
            drop_purged_index(engine, event.slug, f"the face step of photo {photo.id}")
            return FaceSummary()
        users = tuple(sorted({m.user_id for m in matches}))
        return FaceSummary(
            faces=len(found), matches=len(users), user_ids=users, note=note, boxes=boxes
        )

    def photo_faces(
        self,
        photo: PhotoRecord,
        image_of: Callable[[], Image.Image],
        engine: FaceEngine,
        event_id: int,
    ) -> tuple[list[StoredFace], str | None]:
        """The photo's faces for this engine: stored ones if checkpointed, else found and stored;
        and the engine's note on faces it left out (only when it was asked).

        ``engine`` is this step's engine for the photo's event (``FaceEngine.for_event``).
        Raises EventPurged when the event was purged before the faces could be stored.
        """
        name = engine.name
        with db.read(self.database) as conn:
            checkpoint = face_store.faces_checkpoint(conn, photo.id)
            if checkpoint == name:
                return face_store.photo_faces(conn, photo.id, name), None
        pending = face_store.pending_checkpoint(name)
        if checkpoint == pending:
            # An earlier attempt may have indexed the photo and died before storing the answer.
            engine.discard_photo_faces(photo.id)
        elif engine.keeps_index:
            with db.write(self.database) as conn:
                if not event_store.takes_face_data(conn, event_id):
                    raise EventPurged
                face_store.set_faces_checkpoint(conn, photo.id, pending)
        try:
            records, note = engine.index_photo_reporting(photo.id, image_of())
        except FacesRefused:
            if engine.keeps_index:
                # Refused, so nothing was indexed: a rerun need not look for leftovers.
                with db.write(self.database) as conn:
                    face_store.set_faces_checkpoint(conn, photo.id, None)
            raise
        if note:
            log.warning("[FaceRecognition] photo %d: %s", photo.id, note)
        with db.write(self.database) as conn:
            if not event_store.takes_face_data(conn, event_id):
                raise EventPurged
            face_store.store_faces(conn, photo.id, name, records, event_id=event_id)
            face_store.set_faces_checkpoint(conn, photo.id, name)
            return face_store.photo_faces(conn, photo.id, name), note


class StoredFaces:
    """One event's stored faces, for an engine matching a new selfie (a faces.base.FaceLookup).

    Each call is one short read: no transaction stays open across the engine's own calls.
    """

    def __init__(self, database: Engine, event_id: int) -> None:
        self.database = database
        self.event_id = event_id

    def all_faces(self, engine: str) -> list[StoredFace]:
        with db.read(self.database) as conn:
            return face_store.all_faces(conn, engine, self.event_id)

    def faces_by_external_id(self, external_ids: Sequence[str]) -> list[StoredFace]:
        with db.read(self.database) as conn:
            return face_store.faces_by_external_id(conn, external_ids, self.event_id)

    def face_vectors(self, engine: str) -> vector_cache.Vectors:
        return vector_cache.face_vectors(self.database, self.event_id, engine)
