"""The pipeline's bib step: read the bib numbers of a photo whose event reads bibs, from the
decode the thumbnail and the faces are made from, and store those its rules accept.

A service (see db.py): it takes an Engine, owns its short transactions and holds none open
while it reads. Its one write stores the photo's bibs and its checkpoint
(``photos.bibs_read_at``) together, so a rerun of the job (retry, rescue after a crash) finds
the checkpoint and reads nothing again. The write can be repeated (it replaces what an earlier
read stored) and the bibs of a photo not yet processed are shown to nobody: bib look-ups list
processed photos only (the job's final transaction records the photo as processed).

Reads below ``bibs.min_confidence``, numbers off the start list (or out of the range without
one), times, distances and the small print of a card are never stored (bibs/rules.py).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image
from sqlalchemy import Engine

from photoctl import db, event_store
from photoctl.bibs import service
from photoctl.bibs import store as bib_store
from photoctl.bibs.rules import BibRead, OcrRead, find_bibs
from photoctl.catalog import PhotoRecord
from photoctl.config import Settings
from photoctl.imaging import DecodedPhoto

if TYPE_CHECKING:  # imported when first needed: OpenCV and onnxruntime are heavy
    from photoctl.bibs.reader import BibReader

log = logging.getLogger(__name__)

ENGINE = "local"  # bib_reads.engine of what BibReader read


class TextEngine(Protocol):
    """An engine of its own that reads text (Rekognition's DetectText), instead of BibReader."""

    name: str
    detail_px: int

    def for_event(self, slug: str) -> Any: ...  # whose calls these are (usage, budget)


@dataclass(frozen=True)
class BibSummary:
    read: bool = False  # the step read the photo now (not a checkpointed rerun, not off)
    bibs: tuple[str, ...] = ()
    seconds: float = 0.0  # CPU time of the reading (this thread's), for the benchmark


class BibStep:
    """Reads bibs with the local reader (photoctl/bibs/reader.py), loaded once per process, or
    with ``text_engine`` (the Rekognition engine: one DetectText call a photo)."""

    def __init__(
        self, settings: Settings, database: Engine, text_engine: TextEngine | None = None
    ) -> None:
        self.settings = settings
        self.database = database
        self.text_engine = text_engine
        self._reader: BibReader | None = None
        self._lock = threading.Lock()  # job threads (Rekognition) share one reader

    def reader(self) -> BibReader:
        with self._lock:
            if self._reader is None:
                import cv2

                from photoctl.bibs.reader import BibReader, ReaderSettings

                # One thread, as onnxruntime's: `work -n 2` on 2 cores must not oversubscribe,
                # and the step's CPU (thread time) is then all of it.
                cv2.setNumThreads(1)

                self._reader = BibReader(
                    ReaderSettings(threads=1, light_on_dark=self.settings.bibs.light_on_dark)
                )
            return self._reader

    def warm_up(self) -> None:
        """Load the OCR model before the first job when some event reads bibs."""
        if self.text_engine is not None:
            return
        with db.read(self.database) as conn:
            if bib_store.events_reading_bibs(conn):
                self.reader()

    def detail_px(self, photo: PhotoRecord) -> int:
        """The decode size this photo needs for its bibs: 0 when its event reads none, or it
        was read already."""
        with db.read(self.database) as conn:
            event = event_store.event_of_photo(conn, photo.id)
            if event is None or not event.bibs:
                return 0
            if bib_store.bibs_read_at(conn, photo.id) is not None:
                return 0
        if self.text_engine is not None:
            return self.text_engine.detail_px
        return self.settings.bibs.detail_px

    def run(self, photo: PhotoRecord, decoded: DecodedPhoto) -> BibSummary:
        with db.read(self.database) as conn:
            event = event_store.event_of_photo(conn, photo.id)
            if event is None or not event.bibs:
                return BibSummary()
            if bib_store.bibs_read_at(conn, photo.id) is not None:
                return BibSummary()
            rules = service.rules_for(conn, event, self.settings)
        started = time.thread_time()
        image: Image.Image = decoded.sharpest
        size = (decoded.width, decoded.height)
        engine_name = ENGINE
        reads: list[OcrRead]
        if self.text_engine is not None:
            engine_name = self.text_engine.name
            reads = self.text_engine.for_event(event.slug).read_text(image, size)
        else:
            reads = self.reader().read(image, scale=decoded.width / image.width)
        found = find_bibs(reads, rules)
        spent = time.thread_time() - started
        unread = _unread(reads, found, rules.min_confidence)
        with db.write(self.database) as conn:
            bib_store.store_reads(
                conn,
                photo.id,
                event.id,
                engine_name,
                found,
                size,
                unread,
                time.time(),
            )
        log.debug(
            "[Bibs] photo %d: %d bibs, %d other numbers, %.0f ms",
            photo.id,
            len(found),
            unread,
            spent * 1000,
        )
        return BibSummary(read=True, bibs=tuple(read.bib for read in found), seconds=spent)


def _unread(reads: list[OcrRead], found: list[BibRead], min_confidence: float) -> int:
    """Digit-like texts (two digits or more) the engine read that are not a stored bib: a
    time, a distance, a number off the list, or a bib read too unsure."""
    kept = {read.bib for read in found}
    return sum(
        1
        for read in reads
        if sum(c.isdigit() for c in read.text) >= 2
        and read.text.replace(" ", "").lstrip("0") not in kept
        and read.confidence >= min_confidence / 2
    )
