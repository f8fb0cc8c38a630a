"""The response cache: one diskcache directory shared by every serve process, workers and the CLI.

Entries carry a tag per user, so a worker that finds a user in a new photo drops that user's
entries (``drop_users``) and the photo shows up on their next request instead of after the TTL.
Keys and tags start with the identity of the database the answer came from
(``db.database_id``): the cache directory is per data dir, and two databases (SQLite and
PostgreSQL, or two PostgreSQL databases) used with one data dir both number users from 1.
Hit and miss counts live in the cache too (atomic increments), so they add up across processes.
They are added by one background thread per process, not by the request: an increment is a write
transaction, and SQLite's lock is not fair, so under concurrent requests (threads, uvicorn
workers, workers dropping entries) a request waiting for it could sleep hundreds of ms
(measured: worst 0.4-1.7 s with 4-40 threads, against 9-32 ms for the read alone). The thread
writes at most every 0.25 s: one write per request cost serve 0.1-0.3 ms of CPU per cache read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import diskcache

from photoctl.config import Settings

_HITS, _MISSES = "stats:hits", "stats:misses"
_FLUSH_EVERY_SECONDS = 0.25

log = logging.getLogger(__name__)


def user_tag(user_id: int) -> str:
    return f"user:{user_id}"


class ResponseCache:
    """The shared cache. ``database_id`` scopes entries and tags to one database; without it
    only the whole-cache operations (``clear``, ``stats``) may be used."""

    def __init__(self, settings: Settings, database_id: str | None = None) -> None:
        self._scope = f"db:{database_id}:" if database_id else None
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        # tag_index makes evict(tag) an indexed delete instead of a scan.
        self.cache = diskcache.Cache(
            str(settings.cache_dir),
            tag_index=True,
            size_limit=settings.cache.size_limit_bytes,
            eviction_policy="least-recently-stored",
        )
        self._pending = {_HITS: 0, _MISSES: 0}
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._counter: threading.Thread | None = None
        self._closed = False

    def get_or_compute(
        self, key: str, ttl_seconds: float, compute: Callable[[], Any], tag: str | None = None
    ) -> Any:
        key = self._scoped(key)
        tag = None if tag is None else self._scoped(tag)
        value = self.cache.get(key, default=None)
        if value is not None:
            self._count(_HITS)
            return value
        self._count(_MISSES)
        value = compute()
        if ttl_seconds > 0:
            self.cache.set(key, value, expire=ttl_seconds, tag=tag)
        return value

    def _scoped(self, name: str) -> str:
        if self._scope is None:
            raise RuntimeError("a ResponseCache without database_id cannot hold answers")
        return self._scope + name

    def _count(self, key: str) -> None:
        with self._pending_lock:
            self._pending[key] += 1
            if self._counter is None:
                self._counter = threading.Thread(
                    target=self._count_forever, name="cache-counters", daemon=True
                )
                self._counter.start()
        self._wake.set()

    def _count_forever(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            if not self._closed:
                self.flush_counts()
                # Batched: at hundreds of requests a second, one write per request would cost
                # serve more CPU than some of the requests themselves.
                time.sleep(_FLUSH_EVERY_SECONDS)

    def flush_counts(self) -> None:
        """Add the hits and misses counted in this process to the shared counters."""
        with self._pending_lock:
            pending, self._pending = self._pending, {_HITS: 0, _MISSES: 0}
        for key, delta in pending.items():
            if delta:
                try:
                    self.cache.incr(key, delta, default=0, retry=True)
                except Exception as error:  # a lost count must not stop counting
                    log.warning("could not count cache %s: %s", key.split(":")[1], error)

    def drop_users(self, user_ids: Iterable[int]) -> None:
        for user_id in user_ids:
            self.cache.evict(self._scoped(user_tag(user_id)))

    def clear(self) -> int:
        """Empty the cache, counters included; returns how many entries were removed."""
        with self._pending_lock:
            self._pending = {_HITS: 0, _MISSES: 0}
        return self.cache.clear()

    def stats(self) -> dict:
        self.flush_counts()
        hits = int(self.cache.get(_HITS, default=0))
        misses = int(self.cache.get(_MISSES, default=0))
        entries = len(self.cache) - sum(key in self.cache for key in (_HITS, _MISSES))
        total = hits + misses
        return {
            "size": entries,
            "hits": hits,
            "misses": misses,
            "hit_rate": round(hits / total, 4) if total else 0.0,
        }

    def close(self) -> None:
        self.flush_counts()
        self._closed = True
        self._wake.set()
        self.cache.close()
