"""A call limiter shared by every process that uses one database: concurrency and rate.

The face service's quota is global (per AWS account and region), so the limit must hold across
every worker process and, on PostgreSQL, every machine. The state therefore lives in the
database: ``limiter_slots`` holds max_concurrency leased places for calls in flight (a crashed
holder's place comes back when its lease runs out, or at once when its supervisor buries it),
and ``rate_limiters`` holds the earliest start time of the next call. Each call reserves the next
start (a leaky bucket with no burst: starts are spaced 1/rate apart, plus a 3 % margin), so in any
one-second window at most max_tps calls start. The margin is for arrival jitter: a call reaches
the service a few ms after its reserved start (waking up, signing, sending), and with starts
exactly 1/rate apart the service sees max_tps + 1 calls in some second whenever one call is a
little later than the one max_tps calls after it (scripts/bench_faces.py: 9-14 throttled answers
in 300-400 calls at 20 TPS with 4 workers, none with the margin, 19.4 calls/s accepted).

A throttling answer lowers the shared rate for everyone by a third, at most once per second:
the answers of one burst arrive together (every call in flight was sent at the old rate), and
halving once per answer used to take the rate to its floor after a one-second blip. The rate
then recovers linearly to max_tps over ``cooldown_seconds`` (5 s by default): back over 90 % of
max_tps 3.5 s after one slow-down, 4 s after a 2 s burst (two; tests/test_rekognition_retries.py;
scripts/bench_faces.py --part rekognition measures it at the endpoint). Waiting happens outside
any transaction.

Every call ends with its outcome counted in ``service_calls`` (per UTC day, event and
operation: accepted, throttled, failed), in the transaction that frees its slot, so counting
costs no extra round trip. Retries are the caller's and each goes through ``call`` again: the
limiter sees, spaces and counts every request the service receives.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, select, update

from photoctl import db
from photoctl.errors import TransientError
from photoctl.models import LimiterSlot, RateLimiter, ServiceCall

log = logging.getLogger(__name__)

slots_table = LimiterSlot.__table__
limiters_table = RateLimiter.__table__
calls_table = ServiceCall.__table__

_SLOT_LEASE_SECONDS = 120.0
_MIN_RATE_FRACTION = 0.1
_JITTER_MARGIN = 0.03  # starts are spaced 3 % wider than 1/rate (see the module docstring)
_THROTTLE_FACTOR = 2 / 3  # a throttle lowers the rate to this fraction of what it was
_THROTTLE_COALESCE_SECONDS = 1.0  # throttles this soon after a slow-down belong to its burst


@dataclass(frozen=True)
class LimiterSettings:
    name: str
    max_concurrency: int
    max_tps: float
    cooldown_seconds: float = 5.0
    max_wait_seconds: float = 600.0


class CallOutcome(enum.StrEnum):
    ACCEPTED = "accepted"  # the service answered (what it bills)
    THROTTLED = "throttled"  # "too fast": slows every process down
    FAILED = "failed"  # any other error, or no answer


@dataclass
class CallTicket:
    """One call under the limiter; the caller sets ``outcome`` (an exception leaves FAILED)."""

    operation: str
    outcome: CallOutcome = field(default=CallOutcome.FAILED)
    event: str = ""  # the slug of the event the call is for ("": none)


class CallLimiter:
    def __init__(self, database: Engine, limits: LimiterSettings, holder: str) -> None:
        self.database = database
        self.limits = limits
        self.holder = holder
        self._prepared = False
        # One thread of this process at a time asks the database for a slot: the job threads of
        # a worker (job_threads.py) would otherwise poll it together while every slot is taken.
        self._acquiring = threading.Lock()

    def _prepare(self) -> None:
        if self._prepared:
            return
        now = time.time()
        with db.write(self.database) as conn:
            conn.execute(
                db.insert_ignoring_conflicts(conn, limiters_table),
                [
                    {
                        "name": self.limits.name,
                        "next_slot_at": now,
                        "rate": self.limits.max_tps,
                        "slowed_at": 0.0,
                    }
                ],
            )
            conn.execute(
                db.insert_ignoring_conflicts(conn, slots_table),
                [
                    {"name": self.limits.name, "slot": index, "holder": None, "expires_at": 0.0}
                    for index in range(self.limits.max_concurrency)
                ],
            )
        self._prepared = True

    def effective_rate(self, rate: float, slowed_at: float, now: float) -> float:
        """The rate allowed now: the lowered rate, recovering linearly to max_tps."""
        recovered = min(1.0, max(0.0, now - slowed_at) / self.limits.cooldown_seconds)
        return min(self.limits.max_tps, rate + (self.limits.max_tps - rate) * recovered)

    @contextlib.contextmanager
    def call(self, operation: str = "call", event: str = "") -> Iterator[CallTicket]:
        """Hold one place in flight and one start slot for the duration of a call.

        The caller sets the ticket's outcome; it is counted (and a throttle slows everyone
        down) when the block ends.
        """
        self._prepare()
        deadline = time.monotonic() + self.limits.max_wait_seconds
        if not self._acquiring.acquire(timeout=self.limits.max_wait_seconds):
            raise TransientError(
                f"{self.limits.name}: no call slot free for {self.limits.max_wait_seconds:.0f} s"
            )
        try:
            slot, start_at = self._acquire(deadline)
        finally:
            self._acquiring.release()
        ticket = CallTicket(operation, event=event)
        try:
            delay = start_at - time.time()
            if delay > 0:
                time.sleep(delay)
            yield ticket
        finally:
            self._release(slot, ticket)

    def _acquire(self, deadline: float) -> tuple[int, float]:
        backoff = 0.01
        while True:
            now = time.time()
            with db.write(self.database) as conn:
                candidates = (
                    select(slots_table.c.slot)
                    .where(
                        slots_table.c.name == self.limits.name,
                        slots_table.c.slot < self.limits.max_concurrency,
                        (slots_table.c.holder.is_(None)) | (slots_table.c.expires_at < now),
                    )
                    .order_by(slots_table.c.slot)
                    .limit(1)
                )
                if db.is_postgresql(conn):
                    candidates = candidates.with_for_update(skip_locked=True)
                slot = conn.execute(candidates).scalar()
                if slot is not None:
                    conn.execute(
                        update(slots_table)
                        .where(slots_table.c.name == self.limits.name, slots_table.c.slot == slot)
                        .values(holder=self.holder, expires_at=now + _SLOT_LEASE_SECONDS)
                    )
                    return slot, self._reserve_start(conn, now)
            if time.monotonic() > deadline:
                raise TransientError(
                    f"{self.limits.name}: no call slot free for "
                    f"{self.limits.max_wait_seconds:.0f} s"
                )
            time.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(0.1, backoff * 2)

    def current_rate(self, now: float | None = None) -> float:
        """The shared rate allowed at ``now`` (default: now), as every process sees it."""
        self._prepare()
        with db.read(self.database) as conn:
            _, rate, slowed_at = conn.execute(
                select(
                    limiters_table.c.next_slot_at,
                    limiters_table.c.rate,
                    limiters_table.c.slowed_at,
                ).where(limiters_table.c.name == self.limits.name)
            ).one()
        return self.effective_rate(rate, slowed_at, time.time() if now is None else now)

    def _locked_state(self, conn: Connection) -> tuple[float, float, float]:
        """(next_slot_at, rate, slowed_at), locked until the transaction ends."""
        query = select(
            limiters_table.c.next_slot_at, limiters_table.c.rate, limiters_table.c.slowed_at
        ).where(limiters_table.c.name == self.limits.name)
        if db.is_postgresql(conn):
            query = query.with_for_update()
        return tuple(conn.execute(query).one())

    def _reserve_start(self, conn: Connection, now: float) -> float:
        next_slot_at, rate, slowed_at = self._locked_state(conn)
        start_at = max(now, next_slot_at)
        spacing = (1.0 + _JITTER_MARGIN) / self.effective_rate(rate, slowed_at, start_at)
        conn.execute(
            update(limiters_table)
            .where(limiters_table.c.name == self.limits.name)
            .values(next_slot_at=start_at + spacing)
        )
        return start_at

    def _release(self, slot: int, ticket: CallTicket) -> None:
        lowered = None
        with db.write(self.database) as conn:
            conn.execute(
                update(slots_table)
                .where(
                    slots_table.c.name == self.limits.name,
                    slots_table.c.slot == slot,
                    slots_table.c.holder == self.holder,
                )
                .values(holder=None, expires_at=0.0)
            )
            self._count(conn, ticket)
            if ticket.outcome == CallOutcome.THROTTLED:
                lowered = self._slow_down(conn, time.time())
        if lowered is not None:
            log.warning("[FaceRecognition] throttled: shared rate lowered to %.2f calls/s", lowered)

    def _count(self, conn: Connection, ticket: CallTicket) -> None:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        counts = {outcome.value: int(ticket.outcome == outcome) for outcome in CallOutcome}
        insert = db.dialect_insert(conn, calls_table).values(
            service=self.limits.name,
            day=day,
            event=ticket.event,
            operation=ticket.operation,
            **counts,
        )
        key = ("service", "day", "event", "operation")
        column = calls_table.c[ticket.outcome.value]
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=[calls_table.c[name] for name in key],
                set_={ticket.outcome.value: column + 1},
            )
        )

    def _slow_down(self, conn: Connection, now: float) -> float | None:
        """Lower the shared rate after a throttle, once per burst; the new rate, or None."""
        next_slot_at, rate, slowed_at = self._locked_state(conn)
        current = self.effective_rate(rate, slowed_at, now)
        if now - slowed_at < _THROTTLE_COALESCE_SECONDS:
            # Same burst: the rate is lowered already; only keep the next start behind.
            conn.execute(
                update(limiters_table)
                .where(limiters_table.c.name == self.limits.name)
                .values(next_slot_at=max(next_slot_at, now + 1.0 / current))
            )
            return None
        lowered = max(self.limits.max_tps * _MIN_RATE_FRACTION, current * _THROTTLE_FACTOR)
        conn.execute(
            update(limiters_table)
            .where(limiters_table.c.name == self.limits.name)
            .values(
                rate=lowered, slowed_at=now, next_slot_at=max(next_slot_at, now + 1.0 / lowered)
            )
        )
        return lowered

    def throttled(self, now: float | None = None) -> float | None:
        """The service said "too fast" outside a ``call`` block: slow everyone down."""
        self._prepare()
        with db.write(self.database) as conn:
            lowered = self._slow_down(conn, time.time() if now is None else now)
        if lowered is not None:
            log.warning("[FaceRecognition] throttled: shared rate lowered to %.2f calls/s", lowered)
        return lowered


def release_holder(database: Engine, holder_prefix: str) -> int:
    """Free the call slots of a dead worker at once (its supervisor calls this)."""
    with db.write(database) as conn:
        result = conn.execute(
            update(slots_table)
            .where(slots_table.c.holder.startswith(holder_prefix, autoescape=True))
            .values(holder=None, expires_at=0.0)
        )
        return result.rowcount
