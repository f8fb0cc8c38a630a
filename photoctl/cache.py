"""The response cache: one diskcache directory shared by every serve process, workers and the CLI.

Entries carry a tag per user, so a worker that finds a user in a new photo drops that user's
entries (``drop_users``) and the photo shows up on their next request instead of after the TTL.
An erasure, a user's deletion or a purge calls ``forget_users`` instead, which also truncates
the cache's SQLite WAL (sqlite_wal.py): the dropped entries' bytes must not stay in a file.
Keys and tags are typed parts (``CacheKey``) written as one JSON array that starts with the
identity of the database the answer came from (``db.database_id``): the cache directory is per
data dir, and two databases (SQLite and PostgreSQL, or two PostgreSQL databases) used with one
data dir both number users from 1. JSON, not a format string, so that no value a client sends
can spell another key: ``?album=None`` is ``"None"``, no album is ``null``, and a ``:`` in an
album name is only a character of that name.
Hit and miss counts live in the cache too (atomic increments), so they add up across processes.
They are added by one background thread per process, not by the request: an increment is a write
transaction, and SQLite's lock is not fair, so under concurrent requests (threads, uvicorn
workers, workers dropping entries) a request waiting for it could sleep hundreds of ms
(measured: worst 0.4-1.7 s with 4-40 threads, against 9-32 ms for the read alone). The thread
writes at most every 0.25 s: one write per request cost serve 0.1-0.3 ms of CPU per cache read.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import diskcache

from photoctl import sqlite_wal
from photoctl.config import Settings

# Not JSON arrays, so no CacheKey can be one of them.
_HITS, _MISSES = "stats:hits", "stats:misses"
_FLUSH_EVERY_SECONDS = 0.25

# Pragmas of every diskcache SQLite file photoctl opens (the response cache, the rate limits),
# applied by diskcache to each of its connections: a dropped entry is zeroed in the file, and
# the WAL does not keep growing with old versions of it.
PRIVATE_SQLITE = {
    "sqlite_secure_delete": 1,
    "sqlite_journal_size_limit": sqlite_wal.WAL_SIZE_LIMIT_BYTES,
}

# A key or a tag: what it is ("grid", "user", ...) and its values, each typed.
CacheKey = tuple[str | int | None, ...]

log = logging.getLogger(__name__)


def user_tag(user_id: int) -> CacheKey:
    return ("user", user_id)


class ResponseCache:
    """The shared cache. ``database_id`` scopes entries and tags to one database; without it
    only the whole-cache operations (``clear``, ``stats``) may be used."""

    def __init__(self, settings: Settings, database_id: str | None = None) -> None:
        self._database_id = database_id
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        # tag_index makes evict(tag) an indexed delete instead of a scan.
        self.cache = diskcache.Cache(
            str(settings.cache_dir),
            tag_index=True,
            size_limit=settings.cache.size_limit_bytes,
            eviction_policy="least-recently-stored",
            **PRIVATE_SQLITE,
        )
        self._pending = {_HITS: 0, _MISSES: 0}
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._counter: threading.Thread | None = None
        self._closed = False

    def get_or_compute(
        self,
        key: CacheKey,
        ttl_seconds: float,
        compute: Callable[[], Any],
        tag: CacheKey | None = None,
    ) -> Any:
        scoped = self._scoped(key)
        scoped_tag = None if tag is None else self._scoped(tag)
        value = self.cache.get(scoped, default=None)
        if value is not None:
            self._count(_HITS)
            return value
        self._count(_MISSES)
        value = compute()
        if ttl_seconds > 0:
            self.cache.set(scoped, value, expire=ttl_seconds, tag=scoped_tag)
        return value

    def _scoped(self, parts: CacheKey) -> str:
        if self._database_id is None:
            raise RuntimeError("a ResponseCache without database_id cannot hold answers")
        # A string here would be taken apart character by character: refuse it outright.
        if not isinstance(parts, tuple) or not all(
            part is None or isinstance(part, (str, int)) for part in parts
        ):
            raise TypeError(f"a cache key is a tuple of str, int and None, not {parts!r}")
        return json.dumps(["db", self._database_id, *parts], separators=(",", ":"))

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

    def forget_users(self, user_ids: Iterable[int]) -> None:
        """Drop the users' entries for good, after their face data was deleted: also out of
        the cache's WAL. Not for the hot path (a worker's new match calls ``drop_users``)."""
        self.drop_users(user_ids)
        sqlite_wal.truncate(Path(self.cache.directory) / diskcache.core.DBNAME)

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
