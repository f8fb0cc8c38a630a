"""What the new photos of an ingest will cost with Rekognition: `ingest --dry-run`.

A service (see db.py): it takes an Engine and only reads. Each new photo needs one IndexFaces,
then, if anyone is enrolled in its event, min(its faces, the event's enrolled selfies)
SearchFaces (faces/rekognition_matching.py chooses the cheaper way per photo). How many faces
the new photos hold is not known before they are indexed, so the estimate assumes they hold as
many as the photos this engine already indexed: those of the same event, else those of every
event, else ``ASSUMED_FACES_PER_PHOTO`` each. A photo of an event that reads bibs also needs
one DetectText. Participants who enroll later add one IndexFaces
and one SearchFaces per selfie, not counted here; neither are refused photos (fewer calls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from photoctl import db, event_store, face_store, usage
from photoctl.budget_syntax import cost_usd, usd_text
from photoctl.config import Settings
from photoctl.wording import plural

ASSUMED_FACES_PER_PHOTO = 3
ENGINE = "rekognition"


@dataclass(frozen=True)
class CallEstimate:
    photos: int
    index_faces: int
    search_faces: int
    stored_faces: int
    enrolled_selfies: int
    faces_per_photo: float
    basis: str  # where faces_per_photo comes from, in words
    price_per_1000_calls: float
    price_per_face_month: float
    detect_text: int = 0  # bib numbers: one a photo, for an event that reads them

    @property
    def calls(self) -> int:
        return self.index_faces + self.search_faces + self.detect_text

    @property
    def cost_usd(self) -> float:
        return cost_usd(self.calls, self.price_per_1000_calls)

    def as_json(self) -> dict[str, Any]:
        return {
            "new_photos": self.photos,
            "index_faces": self.index_faces,
            "search_faces": self.search_faces,
            "detect_text": self.detect_text,
            "calls": self.calls,
            "estimated_cost_usd": self.cost_usd,
            "stored_faces": self.stored_faces,
            "storage_cost_per_month_usd": round(self.stored_faces * self.price_per_face_month, 6),
            "assumed_faces_per_photo": round(self.faces_per_photo, 2),
            "enrolled_selfies": self.enrolled_selfies,
            "assumption": self.basis,
        }

    def describe(self) -> str:
        storage = self.stored_faces * self.price_per_face_month
        return (
            f"rekognition: {plural(self.photos, 'new photo')} "
            f"{'needs' if self.photos == 1 else 'need'} ~{plural(self.calls, 'call')} "
            f"({self.index_faces} IndexFaces + ~{self.search_faces} SearchFaces"
            + (f" + {self.detect_text} DetectText" if self.detect_text else "")
            + "), "
            f"~{usd_text(self.cost_usd)}; then ~{plural(self.stored_faces, 'face')} stored "
            f"~{usd_text(storage)}/month. Assumed: {self.faces_per_photo:.1f} faces a photo "
            f"({self.basis}) and the {plural(self.enrolled_selfies, 'selfie')} enrolled in the "
            "event now"
        )


def estimate(
    database: Engine | None, settings: Settings, event_id: int, new_photos: int
) -> CallEstimate:
    """The calls and cost of ``new_photos`` new photos of one event (see the module docstring)."""
    histogram: dict[int, int] = {}
    enrolled = 0
    reads_bibs = False
    basis = f"no photo indexed yet: {ASSUMED_FACES_PER_PHOTO} assumed"
    if database is not None:
        with db.read(database) as conn:
            event = event_store.event_by_id(conn, event_id)
            reads_bibs = event is not None and event.bibs
            enrolled = len(
                {e.external_id for e in face_store.enrolled_faces(conn, ENGINE, event_id)}
            )
            histogram = usage.faces_per_photo(conn, ENGINE, event_id)
            where = "this event's"
            if not histogram:
                histogram, where = usage.faces_per_photo(conn, ENGINE), "every event's"
        if histogram:
            basis = f"as in {where} {sum(histogram.values())} indexed photos"
    if not histogram:
        histogram = {ASSUMED_FACES_PER_PHOTO: 1}
    indexed = sum(histogram.values())
    faces = sum(n * photos for n, photos in histogram.items()) / indexed
    searches = sum(min(n, enrolled) * photos for n, photos in histogram.items()) / indexed
    rekognition = settings.rekognition
    return CallEstimate(
        photos=new_photos,
        index_faces=new_photos,
        search_faces=round(new_photos * searches),
        stored_faces=round(new_photos * faces),
        enrolled_selfies=enrolled,
        faces_per_photo=faces,
        basis=basis,
        price_per_1000_calls=rekognition.price_per_1000_calls,
        price_per_face_month=rekognition.price_per_face_month,
        detect_text=new_photos if reads_bibs else 0,
    )
