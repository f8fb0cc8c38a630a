"""Counts in words: "1 photo", "2 photos", "1 entry", for every line a person reads.

One helper so that the CLI, the logs and the pages never print "1 errors" or "1 participants".
Nouns whose plural is not the singular plus "s" are listed once here; a caller may also pass
its own plural.
"""

from __future__ import annotations

__all__ = ["plural"]

# The irregular plurals photoctl prints (else: + "s").
_IRREGULAR = {"entry": "entries"}


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``count`` and its noun, singular for exactly one: ``plural(1, "photo")`` is "1 photo"."""
    if count == 1:
        return f"{count} {singular}"
    return f"{count} {plural_form or _IRREGULAR.get(singular, singular + 's')}"
