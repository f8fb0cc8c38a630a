"""The syntax of ``faces.daily_budget``: a number of calls, or an amount of US dollars.

``20000`` (or ``20000 calls``) is a number of billed face-service calls per UTC day; ``$25``,
``25 USD`` or ``25.50 usd`` is an amount, compared with the day's estimated cost (the billed
calls priced by ``rekognition.price_per_1000_calls``); empty (or ``none``) is no budget. Kept
apart from budget.py so that config.py can validate the value without importing the database
side.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from photoctl.wording import plural

_CALLS = re.compile(r"^(\d+)(?:\s*calls?)?$", re.IGNORECASE)
_USD = re.compile(r"^(?:\$\s*(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)\s*usd)$", re.IGNORECASE)
EXPECTED = "a number of calls (20000) or an amount in USD ($25 or 25 USD), or empty for none"


@dataclass(frozen=True)
class Budget:
    """One day's limit: ``calls`` billed calls, or ``usd`` dollars of estimated cost."""

    calls: int | None = None
    usd: float | None = None

    def __str__(self) -> str:
        return plural(self.calls, "call") if self.calls is not None else f"${self.usd:.2f}"

    def reached(self, billed_calls: int, price_per_1000_calls: float) -> bool:
        return self.calls_left(billed_calls, price_per_1000_calls) <= 0

    def calls_left(self, billed_calls: int, price_per_1000_calls: float) -> float:
        """Billed calls still allowed today (a money budget: at these prices)."""
        if self.calls is not None:
            return self.calls - billed_calls
        if cost_usd(billed_calls, price_per_1000_calls) >= (self.usd or 0.0):
            return 0
        if price_per_1000_calls <= 0:
            return float("inf")
        return (self.usd or 0.0) * 1000 / price_per_1000_calls - billed_calls


def cost_usd(billed_calls: int, price_per_1000_calls: float) -> float:
    return round(billed_calls * price_per_1000_calls / 1000, 4)


def parse_budget(text: str) -> Budget | None:
    """The budget a setting's text names, None for none; ValueError saying what is expected."""
    value = text.strip()
    if not value or value.lower() == "none":
        return None
    calls = _CALLS.match(value)
    if calls:
        return Budget(calls=int(calls.group(1)))
    usd = _USD.match(value)
    if usd:
        return Budget(usd=float(usd.group(1) or usd.group(2)))
    raise ValueError(f"must be {EXPECTED}, got {text!r}")


def usd_text(amount: float) -> str:
    """An estimated amount for people: to the cent from $0.01 up; below a cent, to two
    significant digits ($0.003 for 3 calls at $1 per 1,000), so that a small cost never reads
    as nothing; $0 only for nothing."""
    if amount <= 0:
        return "$0"
    if amount >= 0.01:
        return f"${amount:,.2f}"
    digits = 1 - math.floor(math.log10(amount))
    return f"${amount:.{digits}f}".rstrip("0")
