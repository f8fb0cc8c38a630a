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

A throttling answer is told apart as a blip or congestion, like TCP tells one lost packet from a
congested path. A throttle while the rate is at max_tps and more than a second after the last one
the limiter reacted to is a blip: arrival jitter let the service count max_tps + 1 calls in some
second, which the 3 % margin makes rare but not impossible (0-4 in a 13 s run at 50 TPS, more on a
busy machine: scripts/bench_faces.py --part rekognition). It costs one start slot, left out, and no
slow-down; so does each throttle of a call sent before the blip was seen (a stall of one process
can delay two or three calls at once). Leaving a start out per throttle also answers a quota a
little under max_tps in proportion: a throttle every few seconds costs a start every few seconds.
Any other throttle is congestion: a call sent after a blip and throttled within the second, or a
throttle within ``cooldown_seconds`` (5 s by default) of a slow-down, while the rate recovers.
Congestion lowers the shared rate for everyone by a third, at once after a blip, else at most once
per second (the answers of one burst arrive together: every call in flight was sent at the old
rate, and lowering once per answer used to take the rate to its floor after a one-second blip). The
rate then recovers linearly to max_tps over ``cooldown_seconds``: back over 90 % of max_tps 3.5 s
after one slow-down, 4 s after a 2 s burst (two; tests/test_rekognition_retries.py;
scripts/bench_faces.py --part rekognition measures it at the endpoint). Which of the two the last
reaction was needs no column of its own: a blip stores the rate at max_tps, a slow-down always
below it. Waiting happens outside any transaction.

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

from sqlalchemy import Connection, Engine, Executable, bindparam, select, update

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
_THROTTLE_FACTOR = 2 / 3  # congestion lowers the rate to this fraction of what it was
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


@dataclass(frozen=True)
class _Statements:
    """One limiter's statements for one dialect, built once and run with parameters.

    Building a Core statement and computing its cache key cost more CPU than running it: per
    call, most of the limiter's ~1.7 ms on SQLite went there (cProfile), and at 50 calls/s a
    worker process has little CPU to spare (scripts/bench_faces.py --part rekognition).
    """

    free_slot: Executable  # the lowest free (or expired) slot; params: now
    take_slot: Executable  # params: slot_index, lease_until
    free_held: Executable  # free this holder's slot; params: slot_index
    state: Executable  # (next_slot_at, rate, slowed_at), locked on PostgreSQL
    set_next: Executable  # params: next_at
    counts: dict[CallOutcome, Executable]  # add one call; params: day, operation


@dataclass
class CallTicket:
    """One call under the limiter; the caller sets ``outcome`` (an exception leaves FAILED)."""

    operation: str
    outcome: CallOutcome = field(default=CallOutcome.FAILED)
    event: str = ""  # the slug of the event the call is for ("": none)
    start_at: float = 0.0  # its reserved start (time.time())


class CallLimiter:
    def __init__(self, database: Engine, limits: LimiterSettings, holder: str) -> None:
        self.database = database
        self.limits = limits
        self.holder = holder
        self._prepared = False
        # One thread of this process at a time asks the database for a slot: the job threads of
        # a worker (job_threads.py) would otherwise poll it together while every slot is taken.
        self._acquiring = threading.Lock()
        self._built: dict[str, _Statements] = {}  # by dialect name

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

    def _statements(self, conn: Connection) -> _Statements:
        built = self._built.get(conn.dialect.name)
        if built is None:
            built = self._built[conn.dialect.name] = self._build(conn)
        return built

    def _build(self, conn: Connection) -> _Statements:
        name = self.limits.name
        slot = slots_table.c.slot
        free_slot = (
            select(slot)
            .where(
                slots_table.c.name == name,
                slot < self.limits.max_concurrency,
                (slots_table.c.holder.is_(None)) | (slots_table.c.expires_at < bindparam("now")),
            )
            .order_by(slot)
            .limit(1)
        )
        state = select(
            limiters_table.c.next_slot_at, limiters_table.c.rate, limiters_table.c.slowed_at
        ).where(limiters_table.c.name == name)
        if db.is_postgresql(conn):
            free_slot = free_slot.with_for_update(skip_locked=True)
            state = state.with_for_update()
        this_slot = (slots_table.c.name == name) & (slot == bindparam("slot_index"))
        return _Statements(
            free_slot=free_slot,
            take_slot=update(slots_table)
            .where(this_slot)
            .values(holder=self.holder, expires_at=bindparam("lease_until")),
            free_held=update(slots_table)
            .where(this_slot, slots_table.c.holder == self.holder)
            .values(holder=None, expires_at=0.0),
            state=state,
            set_next=update(limiters_table)
            .where(limiters_table.c.name == name)
            .values(next_slot_at=bindparam("next_at")),
            counts={outcome: self._count_statement(conn, outcome) for outcome in CallOutcome},
        )

    def _count_statement(self, conn: Connection, outcome: CallOutcome) -> Executable:
        """Add one call with this outcome to its day's and operation's row."""
        counts = {each.value: int(each == outcome) for each in CallOutcome}
        insert = db.dialect_insert(conn, calls_table).values(
            service=self.limits.name,
            day=bindparam("day"),
            event=bindparam("event"),
            operation=bindparam("operation"),
            **counts,
        )
        column = calls_table.c[outcome.value]
        key = ("service", "day", "event", "operation")
        return insert.on_conflict_do_update(
            index_elements=[calls_table.c[name] for name in key],
            set_={outcome.value: column + 1},
        )

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
        ticket = CallTicket(operation, event=event, start_at=start_at)
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
                statements = self._statements(conn)
                slot = conn.execute(statements.free_slot, {"now": now}).scalar()
                if slot is not None:
                    conn.execute(
                        statements.take_slot,
                        {"slot_index": slot, "lease_until": now + _SLOT_LEASE_SECONDS},
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
        return tuple(conn.execute(self._statements(conn).state).one())

    def _reserve_start(self, conn: Connection, now: float) -> float:
        next_slot_at, rate, slowed_at = self._locked_state(conn)
        start_at = max(now, next_slot_at)
        spacing = (1.0 + _JITTER_MARGIN) / self.effective_rate(rate, slowed_at, start_at)
        conn.execute(self._statements(conn).set_next, {"next_at": start_at + spacing})
        return start_at

    def _release(self, slot: int, ticket: CallTicket) -> None:
        reaction = None
        with db.write(self.database) as conn:
            conn.execute(self._statements(conn).free_held, {"slot_index": slot})
            self._count(conn, ticket)
            if ticket.outcome == CallOutcome.THROTTLED:
                reaction = self._slow_down(conn, time.time(), ticket.start_at)
        if reaction is not None:
            _log_reaction(*reaction)

    def _count(self, conn: Connection, ticket: CallTicket) -> None:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        statement = self._statements(conn).counts[ticket.outcome]
        conn.execute(statement, {"day": day, "event": ticket.event, "operation": ticket.operation})

    def _slow_down(self, conn: Connection, now: float, sent_at: float) -> tuple[_Reaction, float]:
        """React to a throttle of a call sent at ``sent_at``, a blip or congestion (see the
        module docstring): how, and the rate allowed now."""
        next_slot_at, rate, slowed_at = self._locked_state(conn)
        current = self.effective_rate(rate, slowed_at, now)
        since = now - slowed_at
        after_blip = rate >= self.limits.max_tps  # a slow-down always stores less
        statement = update(limiters_table).where(limiters_table.c.name == self.limits.name)
        spacing = (1.0 + _JITTER_MARGIN) / self.limits.max_tps
        # The rate is at max_tps a second after a blip, or once recovered from a slow-down.
        quiet = (
            _THROTTLE_COALESCE_SECONDS
            if after_blip
            else max(self.limits.cooldown_seconds, _THROTTLE_COALESCE_SECONDS)
        )
        if since >= quiet:
            # A blip: no slow-down, but the throttled call's start is left out.
            conn.execute(
                statement.values(
                    rate=self.limits.max_tps,
                    slowed_at=now,
                    next_slot_at=max(next_slot_at, now) + spacing,
                )
            )
            return _Reaction.BLIP, self.limits.max_tps
        if after_blip and sent_at < slowed_at:
            # Sent before the blip was seen, like the blip itself (one stall of a process can
            # make the service count two or three calls too many): one more start left out.
            conn.execute(statement.values(next_slot_at=max(next_slot_at, now) + spacing))
            return _Reaction.BLIP_AGAIN, self.limits.max_tps
        if since < _THROTTLE_COALESCE_SECONDS and not after_blip:
            # Same burst: the rate is lowered already; only keep the next start behind.
            conn.execute(statement.values(next_slot_at=max(next_slot_at, now + 1.0 / current)))
            return _Reaction.SAME_BURST, current
        lowered = max(self.limits.max_tps * _MIN_RATE_FRACTION, current * _THROTTLE_FACTOR)
        conn.execute(
            statement.values(
                rate=lowered, slowed_at=now, next_slot_at=max(next_slot_at, now + 1.0 / lowered)
            )
        )
        return _Reaction.LOWERED, lowered

    def throttled(self, now: float | None = None, sent_at: float | None = None) -> float | None:
        """The service said "too fast" to a call sent at ``sent_at`` (default: ``now``, which
        defaults to now) outside a ``call`` block: react as to a call's throttle; the lowered
        rate, or None when this one did not lower it (a blip, or the same burst)."""
        self._prepare()
        now = time.time() if now is None else now
        with db.write(self.database) as conn:
            reaction, rate = self._slow_down(conn, now, now if sent_at is None else sent_at)
        _log_reaction(reaction, rate)
        return rate if reaction == _Reaction.LOWERED else None


class _Reaction(enum.Enum):
    BLIP = "blip"  # an isolated throttle: one start left out, the rate kept
    BLIP_AGAIN = "blip again"  # a call sent before the blip was seen: one more start left out
    SAME_BURST = "same burst"  # the rate was lowered for this burst already
    LOWERED = "lowered"  # congestion: the shared rate lowered by a third


def _log_reaction(reaction: _Reaction, rate: float) -> None:
    if reaction == _Reaction.LOWERED:
        log.warning("[FaceRecognition] throttled: shared rate lowered to %.2f calls/s", rate)
    elif reaction == _Reaction.BLIP:
        log.info(
            "[FaceRecognition] throttled once (a blip): one start left out, rate kept at "
            "%.2f calls/s",
            rate,
        )
    elif reaction == _Reaction.BLIP_AGAIN:
        log.info("[FaceRecognition] throttled, sent before the blip: one more start left out")


def release_holder(database: Engine, holder_prefix: str) -> int:
    """Free the call slots of a dead worker at once (its supervisor calls this)."""
    with db.write(database) as conn:
        result = conn.execute(
            update(slots_table)
            .where(slots_table.c.holder.startswith(holder_prefix, autoescape=True))
            .values(holder=None, expires_at=0.0)
        )
        return result.rowcount
