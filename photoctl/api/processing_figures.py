"""How many photos of an event are still processing, as a gallery shows it: never counted
inside a request but the event's first in this process.

Counting reads every waiting job of the event (200,000 of them during a finish-line backlog:
a few hundred milliseconds), and galleries poll while photos are processing. So each serve
process keeps the last count of each event; a count older than the refresh interval is still
answered at once while one thread counts again, and the galleries have the new figure a moment
later. The figure is at most one interval plus one count old, as it was with the cached count.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from photoctl.errors import PhotoctlError

log = logging.getLogger(__name__)


class ProcessingFigures:
    # How old a figure may be before it is counted again (0: counted in each request).
    refresh_seconds = 5.0

    def __init__(self, count: Callable[[int], int]) -> None:
        self._count = count
        self._lock = threading.Lock()
        self._figures: dict[int, tuple[int, float]] = {}  # event id -> (count, counted at)
        self._counting: set[int] = set()

    def of(self, event_id: int) -> int:
        if self.refresh_seconds <= 0:
            return self._count(event_id)
        with self._lock:
            known = self._figures.get(event_id)
            stale = known is not None and time.monotonic() - known[1] >= self.refresh_seconds
            if stale and event_id not in self._counting:
                self._counting.add(event_id)
                threading.Thread(target=self._recount, args=(event_id,), daemon=True).start()
        if known is not None:
            return known[0]
        return self._count_now(event_id)

    def _count_now(self, event_id: int) -> int:
        value = self._count(event_id)
        with self._lock:
            self._figures[event_id] = (value, time.monotonic())
        return value

    def _recount(self, event_id: int) -> None:
        try:
            self._count_now(event_id)
        except PhotoctlError as error:  # the database away: the old figure stays, retried later
            log.debug("processing count of event %d failed: %s", event_id, error)
        finally:
            with self._lock:
                self._counting.discard(event_id)
