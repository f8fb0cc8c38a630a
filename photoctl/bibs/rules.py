"""Which OCR reads are bib numbers: a pure function of the reads and the event's rules.

A photo of a race is full of numbers that are not bibs: the clock over the finish (1:02:03),
kilometre markers (10K, 21.1 km), the year and distance printed small on the bib itself,
sponsors and shop signs. A read is a bib only if all of it is one number (or the event's
letter pattern), it is on the start list (or in the range when there is none), its confidence
reaches the threshold, and it is not dwarfed by bigger digits next to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in original-photo pixels


@dataclass(frozen=True)
class OcrRead:
    """One line of text an OCR engine read, where, and how sure it was (0-1)."""

    text: str
    box: Box
    confidence: float
    height: float | None = None  # of its characters, if the engine knows; else the box's
    # The same place read again with more room on both sides, if the engine did: a number
    # with letters or digits right beside it there is a piece of a longer text.
    context: str | None = None

    @property
    def char_height(self) -> float:
        return self.height if self.height is not None else self.box[3] - self.box[1]


@dataclass(frozen=True)
class BibRead:
    bib: str
    box: Box
    confidence: float


@dataclass(frozen=True)
class BibRules:
    """What counts as a bib in one event."""

    start_list: frozenset[str] | None = None  # when set, only these numbers are bibs
    low: int = 1  # the range, used without a start list
    high: int = 9999
    # Bibs with letters, as a regular expression matched against the whole read (e.g.
    # "[A-Z][0-9]{1,4}" for A123); plain numbers are always allowed.
    pattern: str | None = None
    # Mean probability of the read's characters. Three-digit bibs read right at 0.82-0.89;
    # misreads are caught by the second read (not_whole) more than by this threshold: on 60
    # generated photos 0.8 and 0.9 gave no wrong bib and 99.5 % against 97.9 % of the bibs.
    min_confidence: float = 0.8
    # A number whose characters are less than this share of the height of a bigger number
    # beside it is printed small on the same card (a year, a distance, a runner's wave).
    small_ratio: float = 0.6
    # One digit alone is too often a fragment (the 3 of "PHARMACY 3", a shape read as a 1)
    # to list a photo under it: bibs have at least this many characters.
    min_chars: int = 2

    def __post_init__(self) -> None:
        if self.low < 0 or self.high < self.low:
            raise ValueError(f"bib range {self.low}-{self.high} is empty")
        if self.pattern is not None:
            re.compile(self.pattern)


def parse_range(text: str) -> tuple[int, int]:
    """'1-9999' -> (1, 9999). Raises ValueError naming what is wrong."""
    match = re.fullmatch(r"\s*(\d{1,9})\s*-\s*(\d{1,9})\s*", text)
    if not match:
        raise ValueError(f"bib range {text!r} is not FIRST-LAST, e.g. 1-9999")
    low, high = int(match[1]), int(match[2])
    if high < low:
        raise ValueError(f"bib range {text!r} ends before it starts")
    return low, high


def normalize_bib(text: str) -> str:
    """A bib as stored and searched: no spaces, letters upper case, no leading zeros."""
    cleaned = re.sub(r"\s+", "", text).upper()
    if cleaned.isdigit():
        return str(int(cleaned))
    match = re.fullmatch(r"([A-Z]+)0*(\d+)", cleaned)
    return f"{match[1]}{int(match[2])}" if match else cleaned


def start_list_of(numbers: Iterable[str]) -> frozenset[str]:
    return frozenset(normalize_bib(number) for number in numbers if number.strip())


_TIME = re.compile(r"\d{1,2}\s*[:.;]\s*\d{2}(\s*[:.;]\s*\d{2})?")
_DISTANCE = re.compile(
    r"\d+([.,]\d+)?\s*(K|KM|M|MI|MILES?)|(KM|MILE|MI)\s*\d+([.,]\d+)?", re.IGNORECASE
)
_YEAR = re.compile(r"(19[5-9]\d|20[0-4]\d)")


def candidate(text: str, rules: BibRules) -> str | None:
    """The bib a read's text spells, or None: times, distances, years and words are not."""
    cleaned = text.strip().lstrip("#").strip()
    if not cleaned:
        return None
    if _TIME.fullmatch(cleaned) or _DISTANCE.fullmatch(cleaned):
        return None
    compact = re.sub(r"\s+", "", cleaned)
    if len(compact) < rules.min_chars:
        return None
    if compact.isdigit():
        if len(compact) > 6:
            return None
        bib = normalize_bib(compact)
        if len(bib) < rules.min_chars:
            return None
        if rules.start_list is None and _YEAR.fullmatch(compact):
            return None  # a year printed on a banner or a bib, without a list to say otherwise
        return bib
    if rules.pattern and re.fullmatch(rules.pattern, compact.upper()):
        return normalize_bib(compact)
    if rules.start_list is not None and compact.isalnum():
        bib = normalize_bib(compact)
        if bib in rules.start_list:
            return bib  # a start list with letters (A123) needs no pattern to say so
    return None  # a word, a sign, a sentence, a time or distance with words around it


def allowed(bib: str, rules: BibRules) -> bool:
    if rules.start_list is not None:
        return bib in rules.start_list
    if bib.isdigit():
        return rules.low <= int(bib) <= rules.high
    return rules.pattern is not None


def _dwarfed(read: OcrRead, numbers: Sequence[OcrRead], ratio: float) -> bool:
    """True if a number at least 1/ratio times taller sits within 1.5 of its heights: the
    small print of a bib card, beside the card's big digits."""
    x0, y0, x1, y1 = read.box
    for other in numbers:
        if (
            other is read
            or other.char_height * ratio <= read.char_height
            or _same_text(read, other)
        ):
            continue
        reach = other.char_height * 1.5
        ox0, oy0, ox1, oy1 = other.box
        if x1 >= ox0 - reach and x0 <= ox1 + reach and y1 >= oy0 - reach and y0 <= oy1 + reach:
            return True
    return False


def _overlap(a: Box, b: Box) -> float:
    """Shared area over the smaller box's area."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return width * height / max(smaller, 1e-9)


def _one_per_place(reads: Sequence[OcrRead]) -> list[OcrRead]:
    """Of reads that cover the same place (the same digits cut two ways, "518" of "5168"),
    the most confident."""
    kept: list[OcrRead] = []
    # Ties go to the smaller characters: the tighter box of the digits, not of their card.
    for read in sorted(reads, key=lambda r: (-r.confidence, r.char_height)):
        if all(not _same_place(read, other) for other in kept):
            kept.append(read)
    return kept


def _same_place(a: OcrRead, b: OcrRead) -> bool:
    """Overlapping reads of characters of about one size (small print overlapping a big
    number's box is another text: see _dwarfed)."""
    ratio = max(a.char_height, b.char_height) / max(min(a.char_height, b.char_height), 1e-9)
    return (ratio < 2.5 or _same_text(a, b)) and _overlap(a.box, b.box) >= 0.3


def _same_text(a: OcrRead, b: OcrRead) -> bool:
    """The same characters, as when a card is read whole and its digits alone."""
    return re.sub(r"\s+", "", a.text).upper() == re.sub(r"\s+", "", b.text).upper()


def not_whole(read: OcrRead) -> bool:
    """True if the wider read shows the text running on ("20" of "MARATHON 202", "518" of
    "25183") or does not show it at all: a bib read twice reads the same, where the gaps of a
    banner's white letters or an unsure glyph read differently each time. Without a wider
    read there is nothing to compare: whole."""
    if read.context is None:
        return False
    text = read.text.strip()
    at = read.context.find(text)
    if not text or at < 0:
        return True
    before = read.context[:at].rstrip(" ")[-1:]
    after = read.context[at + len(text) :].lstrip(" ")[:1]
    # A gap of more than one space is a card's margin, not a word's neighbour.
    touching_before = before and len(read.context[:at]) - len(read.context[:at].rstrip(" ")) <= 1
    touching_after = (
        after
        and len(read.context[at + len(text) :]) - len(read.context[at + len(text) :].lstrip(" "))
        <= 1
    )
    return bool(
        (touching_before and (before.isalnum() or before in ":.,"))
        or (touching_after and (after.isalnum() or after in ":.,"))
    )


def _inside_bigger_text(read: OcrRead, reads: Sequence[OcrRead]) -> bool:
    """True if the read lies within a text of bigger characters, however unsure that read:
    the gaps inside a banner's white "2025" read as a small "26"."""
    return any(
        other is not read
        and not _same_text(read, other)
        and other.confidence >= 0.5
        and other.text.strip()
        and other.char_height >= read.char_height * 1.5
        and _overlap(read.box, other.box) >= 0.5
        for other in reads
    )


def find_bibs(reads: Sequence[OcrRead], rules: BibRules) -> list[BibRead]:
    """The bibs among a photo's reads: one per number (its most confident read), by box."""
    confident = [read for read in reads if read.confidence >= rules.min_confidence]
    numeric = _one_per_place([read for read in confident if any(c.isdigit() for c in read.text)])
    # Only numbers can dwarf a number: a kilometre sign beside a far runner's bib does not.
    bib_like = [read for read in numeric if candidate(read.text, rules) is not None]
    best: dict[str, BibRead] = {}
    for read in numeric:
        bib = candidate(read.text, rules)
        if bib is None or not allowed(bib, rules) or not_whole(read):
            continue
        if _dwarfed(read, bib_like, rules.small_ratio) or _inside_bigger_text(read, reads):
            continue
        if bib not in best or read.confidence > best[bib].confidence:
            best[bib] = BibRead(bib, read.box, read.confidence)
    return sorted(best.values(), key=lambda found: (found.box[1], found.box[0]))
