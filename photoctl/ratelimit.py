"""Request rate limits for serve, with the `limits` library over a store every process shares.

uvicorn's workers are separate processes, so an in-memory counter would let each one allow the
full rate. ``DiskcacheStorage`` is a `limits` storage backend over the same diskcache directory
as the response cache: its counters are atomic across processes on one machine.
"""

from __future__ import annotations

import ipaddress
import time

import diskcache
from limits import RateLimitItem, parse, parse_many
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter

from photoctl.cache import PRIVATE_SQLITE

# One IPv6 client is a /64: a home, a phone's carrier link or a server is routed a whole /64
# and may pick any address in it for each request (privacy addresses make that the default).
IPV6_CLIENT_PREFIX = 64


def address_key(address: str) -> str:
    """The rate-limit key of a client address: an IPv4 address itself, an IPv6 address's /64.

    An IPv4 address written as IPv6 (``::ffff:192.0.2.1``) counts as the IPv4 address; anything
    that is not an address (a Unix socket's peer, "unknown") is its own key.
    """
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False))
    return str(parsed)


class DiskcacheStorage(Storage):
    """Fixed-window counters in a diskcache directory: ``diskcache:///path/to/dir``.

    A counter's window is its diskcache expiry, and it must never lose it: diskcache's ``incr``
    of a key that expired since it was read re-creates the key *without* an expiry, a counter
    that then only grows (enrollment closed for good, until ``cache clear``). So ``incr`` only
    ever increments a live key that has an expiry, with ``default=None`` (which refuses an
    expired or missing key instead of re-creating it), inside one transaction; anything else
    starts a new window with its expiry. A counter left without one by an older photoctl is
    treated as expired.
    """

    STORAGE_SCHEME = ["diskcache"]

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options: str) -> None:
        directory = uri.split("://", 1)[1]
        self.cache = diskcache.Cache(directory, **PRIVATE_SQLITE)
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return diskcache.Timeout

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        with self.cache.transact():
            _, expires_at = self.cache.get(key, default=None, expire_time=True)
            if expires_at is not None:
                try:
                    # Expired since the line above: KeyError, never a counter without expiry.
                    return self.cache.incr(key, amount, default=None)
                except KeyError:
                    pass
            self.cache.set(key, amount, expire=expiry, tag="ratelimit")
            return amount

    def get(self, key: str) -> int:
        count, expires_at = self.cache.get(key, default=0, expire_time=True)
        return int(count) if expires_at is not None else 0

    def get_expiry(self, key: str) -> float:
        _, expires_at = self.cache.get(key, default=None, expire_time=True)
        return time.time() if expires_at is None else float(expires_at)

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        return self.cache.evict("ratelimit")

    def clear(self, key: str) -> None:
        self.cache.delete(key)
        self.cache.delete(f"{key}:expires")


class RequestLimits:
    """The serve process's limits: uploads and selfies per user, logins per name and address,
    event enrollments and bib searches per client address and per event."""

    def __init__(
        self,
        directory: str,
        upload_rate: str,
        login_rate: str,
        selfie_rate: str = "5/minute",
        *,
        enroll_address_rate: str = "60/minute",
        enroll_event_rate: str = "120/minute",
        bib_address_rate: str = "30/minute;300/day",
        bib_event_rate: str = "600/minute",
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
        # A bib is no secret: searches are counted so that walking every number is slow.
        self.bib_address = parse_many(bib_address_rate)
        self.bib_event = parse_many(bib_event_rate)

    def hit_all(self, items: list[RateLimitItem], *identifiers: str) -> float | None:
        """Count one request against each of several limits (a minute's and a day's); None if
        every one allows it, else the longest wait among those that refuse."""
        waits = [wait for item in items if (wait := self.hit(item, *identifiers)) is not None]
        return max(waits) if waits else None

    def hit(self, item: RateLimitItem, *identifiers: str) -> float | None:
        """Count one request; None if allowed, else seconds until it would be."""
        if self.limiter.hit(item, *identifiers):
            return None
        reset_at = self.limiter.get_window_stats(item, *identifiers).reset_time
        return max(1.0, reset_at - time.time())
