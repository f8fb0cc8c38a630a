"""The daily face-service budget (``faces.daily_budget``): when workers stop claiming photo jobs.

What is spent is read from the database, never counted per process: the call limiter counts
every accepted call in ``service_calls`` (usage.py), so every worker of every machine sharing
the database sees the same day's total, and a worker started later knows what was spent before
it. Each worker process re-reads the total at most every ``CACHE_SECONDS`` (one indexed SUM over
a handful of rows), not at each claim, while the fleet could not spend what is left in that time
(max_tps x CACHE_SECONDS calls); closer to the budget it re-reads it before every claim.

Once the day's billed calls (or their estimated cost) reach the budget, a worker claims nothing
more: photos stay ``pending`` with their jobs queued, nothing fails, and the log says
``budget_reached`` once per worker. It resumes by itself on the next UTC day, or when the budget
is raised in the config file (re-read when the file changes; a budget given in the environment
or on the command line is fixed for the run). ``work --until-empty`` (cron) stops instead of
waiting, leaving the queue for the next run.

The budget is a limit on claiming, not on calls: jobs already running finish, so a day may end
a little over it, by the calls of the jobs in flight when it was reached (each worker holds up
to its jobs in flight; a photo job makes one IndexFaces and its searches). Enrollments (a
participant's selfie) are never held back, but their calls count. Only the billed engine
(rekognition) is held back by a budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from photoctl import db, usage
from photoctl.budget_syntax import Budget, cost_usd, parse_budget, usd_text
from photoctl.config import SECTIONS, Settings
from photoctl.config_sources import read_ini
from photoctl.errors import PhotoctlError

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0
BILLED_ENGINE = "rekognition"
_KEY = "faces.daily_budget"


@dataclass(frozen=True)
class Spend:
    """Today's (UTC) billed calls and their estimated cost, against the budget."""

    day: str
    billed_calls: int
    price_per_1000_calls: float
    budget: Budget | None

    @property
    def cost_usd(self) -> float:
        return cost_usd(self.billed_calls, self.price_per_1000_calls)

    @property
    def reached(self) -> bool:
        return self.budget is not None and self.budget.reached(
            self.billed_calls, self.price_per_1000_calls
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "daily_budget": str(self.budget) if self.budget else None,
            "day": self.day,
            "billed_calls": self.billed_calls,
            "estimated_cost_usd": self.cost_usd,
            "reached": self.reached,
        }

    def describe(self) -> str:
        cost = usd_text(self.cost_usd)
        spent = f"today ({self.day} UTC) {self.billed_calls} billed calls, ~{cost}"
        if self.budget is None:
            return f"no daily budget; {spent}"
        if not self.reached:
            return f"{self.budget} a day; {spent}"
        return (
            f"{self.budget} a day REACHED; {spent}: workers claim no photo jobs (photos wait "
            "pending) until 00:00 UTC or a raised faces.daily_budget"
        )


def spend_today(
    conn: Connection, settings: Settings, budget: Budget | None = None, now: float | None = None
) -> Spend:
    """Today's spend from the database, against ``budget`` (default: the settings' one)."""
    if budget is None:
        budget = parse_budget(settings.faces.daily_budget)
    day = usage.utc_day(now)
    billed = usage.billed_calls(conn, day)
    return Spend(day, billed, settings.rekognition.price_per_1000_calls, budget)


class DailyBudget:
    """One worker process's view of the budget (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        database: Engine,
        engine_name: str,
        worker: str = "",
        *,
        clock: Callable[[], float] = time.time,
        cache_seconds: float | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.active = engine_name == BILLED_ENGINE
        self.worker = worker
        self.clock = clock
        self.cache_seconds = CACHE_SECONDS if cache_seconds is None else cache_seconds
        self.budget = parse_budget(settings.faces.daily_budget)
        self._config_stamp = self._stamp()
        self._spend: Spend | None = None
        self._read_at = float("-inf")
        self._said_reached = False

    # -- the budget itself: re-read from the config file when it changes ---------------------

    def _rereadable(self) -> bool:
        source = self.settings.sources.get(_KEY, "default")
        return self.settings.config_file is not None and (
            source == "default" or source.startswith("file ")
        )

    def _stamp(self) -> tuple[int, int] | None:
        if not self._rereadable() or self.settings.config_file is None:
            return None
        try:
            status = self.settings.config_file.stat()
        except OSError:
            return None
        return (status.st_mtime_ns, status.st_size)

    def _reread_budget(self) -> None:
        stamp = self._stamp()
        if stamp is None or stamp == self._config_stamp:
            return
        self._config_stamp = stamp
        try:
            parser = read_ini(self.settings.config_file, SECTIONS)
            text = parser.get("faces", "daily_budget", fallback="")
            budget = parse_budget(text)
        except (PhotoctlError, ValueError) as error:
            log.warning("[Budget] %s not re-read (%s): keeping %s", _KEY, error, self.budget)
            return
        if budget != self.budget:
            log.info("[Budget] %s is now %s", _KEY, budget or "none")
            self.budget = budget

    # -- what is spent: from the database, at most every cache_seconds ---------------------

    def spend(self) -> Spend | None:
        """Today's spend (cached); None when no budget holds this engine back."""
        if not self.active:
            return None
        now = self.clock()
        day = usage.utc_day(now)
        cached = self._spend
        if (
            cached is not None
            and cached.day == day
            and time.monotonic() - self._read_at < self.cache_seconds
            and not self._near(cached)
        ):
            return cached
        self._reread_budget()
        if self.budget is None:
            self._spend = None
            return None
        try:
            with db.read(self.database) as conn:
                self._spend = spend_today(conn, self.settings, self.budget, now)
        except PhotoctlError as error:
            # The claim that follows meets the outage and waits it out: keep the last figure.
            log.debug("[Budget] could not read today's calls: %s", error)
            return self._spend
        self._read_at = time.monotonic()
        return self._spend

    def _near(self, spend: Spend) -> bool:
        """Whether the fleet could spend what is left before the next re-read."""
        if spend.budget is None:
            return False
        left = spend.budget.calls_left(spend.billed_calls, spend.price_per_1000_calls)
        return left <= self.settings.rekognition.max_tps * self.cache_seconds

    def reached(self) -> bool:
        spend = self.spend()
        return spend is not None and spend.reached

    def paused(
        self, sleep: Callable[[float], None], should_stop: Callable[[], bool], until_empty: bool
    ) -> bool:
        """Wait while the budget is reached. True: leave the claim loop (asked to stop, or
        ``--until-empty``, which stops rather than waits); False: claim."""
        if not self.reached():
            return False
        spend = self.spend()
        if not self._said_reached and spend is not None:
            self._said_reached = True
            log.warning(
                "[%s] daily budget reached: %s",
                self.worker or "Budget",
                spend.describe(),
                extra={"event": "budget_reached", "worker": self.worker, **spend.as_json()},
            )
        if until_empty:
            return True
        while not should_stop() and self.reached():
            sleep(self.cache_seconds)
        if should_stop():
            return True
        self._said_reached = False
        log.info(
            "[%s] daily budget open again: %s",
            self.worker or "Budget",
            spend.describe() if (spend := self.spend()) else "no budget",
            extra={"event": "budget_resumed", "worker": self.worker},
        )
        return False
