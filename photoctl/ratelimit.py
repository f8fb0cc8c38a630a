"""Request rate limits for serve, with the `limits` library over a store every process shares.

uvicorn's workers are separate processes, so an in-memory counter would let each one allow the
full rate. ``DiskcacheStorage`` is a `limits` storage backend over the same diskcache directory
as the response cache: its counters are atomic across processes on one machine.
"""

from __future__ import annotations

import time

import diskcache
from limits import RateLimitItem, parse
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter


class DiskcacheStorage(Storage):
    """Fixed-window counters in a diskcache directory: ``diskcache:///path/to/dir``."""

    STORAGE_SCHEME = ["diskcache"]

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options: str) -> None:
        directory = uri.split("://", 1)[1]
        self.cache = diskcache.Cache(directory)
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return diskcache.Timeout

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        with self.cache.transact():
            count = self.cache.get(key, default=None)
            if count is None:
                self.cache.set(key, amount, expire=expiry, tag="ratelimit")
                self.cache.set(
                    f"{key}:expires", time.time() + expiry, expire=expiry, tag="ratelimit"
                )
                return amount
            return self.cache.incr(key, amount)

    def get(self, key: str) -> int:
        return int(self.cache.get(key, default=0))

    def get_expiry(self, key: str) -> float:
        return float(self.cache.get(f"{key}:expires", default=time.time()))

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        return self.cache.evict("ratelimit")

    def clear(self, key: str) -> None:
        self.cache.delete(key)
        self.cache.delete(f"{key}:expires")


class RequestLimits:
    """The serve process's limits: uploads and selfies per user, logins per name and address,
    event enrollments per client address and per event."""

    def __init__(
        self,
        directory: str,
        upload_rate: str,
        login_rate: str,
        selfie_rate: str = "5/minute",
        *,
        enroll_address_rate: str = "60/minute",
        enroll_event_rate: str = "120/minute",
    ) -> None:
        self.limiter = FixedWindowRateLimiter(DiskcacheStorage(f"diskcache://{directory}"))
        self.upload = parse(upload_rate)
        self.login = parse(login_rate)
        # A selfie is decoded and searched for faces at once: the costliest request serve has.
        self.selfie = parse(selfie_rate)
        # Enrollment takes a selfie from anyone who has the event's address: one client is held
        # back by the first, a crowd of them (or one behind many addresses) by the second.
        self.enroll_address = parse(enroll_address_rate)
        self.enroll_event = parse(enroll_event_rate)

    def hit(self, item: RateLimitItem, *identifiers: str) -> float | None:
        """Count one request; None if allowed, else seconds until it would be."""
        if self.limiter.hit(item, *identifiers):
            return None
        reset_at = self.limiter.get_window_stats(item, *identifiers).reset_time
        return max(1.0, reset_at - time.time())
