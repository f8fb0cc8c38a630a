"""A selfie's decode slot ends once its face is found: matching it against the event's faces
(tens of milliseconds at a million) never keeps another selfie waiting for a slot (503)."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image
from sqlalchemy import Engine, insert

from photoctl import db, decode_memory, events, users
from photoctl.config import Settings
from photoctl.faces.base import EnrolledFace, FaceLookup, FaceMatch, FaceRecord
from photoctl.faces.local import LocalEngine
from photoctl.models import User


class GivenFace(LocalEngine):
    """The local engine with the selfie's face given (no dlib), noting the slot at matching."""

    slot_held_while_matching: bool | None = None
    held = False

    def index_selfie(self, user_id, image, *, allow_several=True):  # type: ignore[override]
        vector = (np.ones(128) / np.sqrt(128)).astype("<f4")
        return FaceRecord((0.3, 0.2, 0.4, 0.5), 0.99, vector.tobytes())

    def match_selfie(self, selfie: EnrolledFace, lookup: FaceLookup) -> list[FaceMatch]:
        type(self).slot_held_while_matching = type(self).held
        return super().match_selfie(selfie, lookup)


def test_the_decode_slot_ends_before_the_selfie_is_matched(
    engine: Engine, settings: Settings, tmp_path
) -> None:
    event = events.create_event(engine, "run", title="Run", date=None, retention_days=30)
    with db.write(engine) as conn:
        user_id = conn.execute(
            insert(User.__table__)
            .values(name="ann", token_hash="t" * 64, created_at=time.time(), event_id=event.id)
            .returning(User.__table__.c.id)
        ).scalar_one()
    selfie = tmp_path / "selfie.jpg"
    Image.new("RGB", (320, 240), (120, 90, 80)).save(selfie)

    def release() -> None:
        GivenFace.held = False

    GivenFace.held = True
    with decode_memory.slot_ends_after_decode(release):
        users.enroll_selfie(engine, GivenFace(), settings, user_id, selfie)
    assert GivenFace.slot_held_while_matching is False
