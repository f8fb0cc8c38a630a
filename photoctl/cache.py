"""The response cache: one diskcache directory shared by every serve process, workers and the CLI.

Entries carry a tag per user, so a worker that finds a user in a new photo drops that user's
entries (``drop_users``) and the photo shows up on their next request instead of after the TTL.
Hit and miss counts live in the cache too (atomic increments), so they add up across processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import diskcache

from photoctl.config import Settings

_HITS, _MISSES = "stats:hits", "stats:misses"


def user_tag(user_id: int) -> str:
    return f"user:{user_id}"


class ResponseCache:
    def __init__(self, settings: Settings) -> None:
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        # tag_index makes evict(tag) an indexed delete instead of a scan.
        self.cache = diskcache.Cache(
            str(settings.cache_dir),
            tag_index=True,
            size_limit=settings.cache.size_limit_bytes,
            eviction_policy="least-recently-stored",
        )

    def get_or_compute(
        self, key: str, ttl_seconds: float, compute: Callable[[], Any], tag: str | None = None
    ) -> Any:
        value = self.cache.get(key, default=None)
        if value is not None:
            self.cache.incr(_HITS, default=0)
            return value
        self.cache.incr(_MISSES, default=0)
        value = compute()
        if ttl_seconds > 0:
            self.cache.set(key, value, expire=ttl_seconds, tag=tag)
        return value

    def drop_users(self, user_ids: Iterable[int]) -> None:
        for user_id in user_ids:
            self.cache.evict(user_tag(user_id))

    def clear(self) -> int:
        """Empty the cache, counters included; returns how many entries were removed."""
        return self.cache.clear()

    def stats(self) -> dict:
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
        self.cache.close()
