"""Which OCR reads are bibs (photoctl.bibs.rules.find_bibs): a pure function, tested on reads."""

from __future__ import annotations

import pytest

from photoctl.bibs.rules import (
    BibRules,
    OcrRead,
    find_bibs,
    normalize_bib,
    parse_range,
    start_list_of,
)

RANGE = BibRules(low=1, high=9999)


def read(text: str, confidence: float = 0.99, box=(100, 100, 300, 160), height=None) -> OcrRead:
    return OcrRead(text=text, box=box, confidence=confidence, height=height)


def bibs(reads: list[OcrRead], rules: BibRules) -> list[str]:
    return [found.bib for found in find_bibs(reads, rules)]


def test_a_start_list_admits_only_its_numbers() -> None:
    rules = BibRules(start_list=start_list_of(["1234", "77"]))
    assert bibs([read("1234")], rules) == ["1234"]
    assert bibs([read("1235")], rules) == []
    assert bibs([read("77", box=(500, 500, 560, 540))], rules) == ["77"]


def test_without_a_start_list_the_range_bounds_the_bibs() -> None:
    assert bibs([read("9999")], RANGE) == ["9999"]
    assert bibs([read("12345")], RANGE) == []
    assert bibs([read("150")], BibRules(low=200, high=300)) == []
    assert bibs([read("250")], BibRules(low=200, high=300)) == ["250"]


def test_bibs_with_letters_need_the_events_pattern() -> None:
    assert bibs([read("A123")], RANGE) == []
    assert bibs([read("A123")], BibRules(pattern="[A-Z][0-9]{1,4}")) == ["A123"]
    assert bibs([read("a 0123")], BibRules(pattern="[A-Z][0-9]{1,4}")) == ["A123"]
    assert bibs([read("AB123")], BibRules(pattern="[A-Z][0-9]{1,4}")) == []


@pytest.mark.parametrize("text", ["12:34", "1:02:03", "0:59:07", "9.26", "2;20:23"])
def test_times_are_never_bibs_even_when_their_digits_are_on_the_start_list(text: str) -> None:
    digits = "".join(c for c in text if c.isdigit())
    assert bibs([read(text)], BibRules(start_list=start_list_of([digits]))) == []
    assert bibs([read(text)], RANGE) == []


@pytest.mark.parametrize("text", ["10K", "21.1 km", "42.195km", "KM 5", "5 mi", "15K"])
def test_distances_are_never_bibs(text: str) -> None:
    assert bibs([read(text)], RANGE) == []


@pytest.mark.parametrize("text", ["HOTEL 4", "SPORTCO 10K", "OPEN 8-20", "CITY RUN 2026"])
def test_words_with_numbers_are_never_bibs(text: str) -> None:
    assert bibs([read(text)], RANGE) == []


def test_a_year_is_not_a_bib_in_range_mode_but_a_start_list_may_hold_it() -> None:
    assert bibs([read("2026")], RANGE) == []
    assert bibs([read("2026")], BibRules(start_list=start_list_of(["2026"]))) == ["2026"]


def test_a_read_below_the_confidence_threshold_is_not_a_bib() -> None:
    assert bibs([read("1234", confidence=0.89)], BibRules(min_confidence=0.9)) == []
    assert bibs([read("1234", confidence=0.9)], BibRules(min_confidence=0.9)) == ["1234"]


def test_small_digits_printed_beside_big_ones_on_the_card_are_not_bibs() -> None:
    big = read("4778", box=(1000, 1000, 1400, 1120), height=120)
    year = read("2025", box=(1000, 1150, 1080, 1180), height=30)
    rules = BibRules(start_list=start_list_of(["4778", "2025"]))
    assert bibs([big, year], rules) == ["4778"]
    # The same small number far from any bigger one is a bib of a runner further away.
    far = read("2025", box=(4000, 300, 4080, 330), height=30)
    assert sorted(bibs([big, far], rules)) == ["2025", "4778"]


def test_reads_of_the_same_place_count_once_the_most_confident() -> None:
    whole = read("5168", confidence=1.0, box=(4204, 1828, 4432, 1964), height=80)
    part = read("518", confidence=0.995, box=(4140, 1724, 4448, 1888), height=164)
    assert bibs([whole, part], RANGE) == ["5168"]


def test_one_digit_alone_is_not_a_bib() -> None:
    assert bibs([read("7")], RANGE) == []
    assert bibs([read("07")], BibRules(start_list=start_list_of(["7"]))) == []


def test_a_number_read_twice_is_listed_once_with_its_best_read() -> None:
    first = read("321", confidence=0.95, box=(0, 0, 100, 50))
    second = read("321", confidence=0.99, box=(2000, 0, 2100, 50))
    found = find_bibs([first, second], RANGE)
    assert [(f.bib, f.confidence, f.box) for f in found] == [("321", 0.99, second.box)]


def test_bibs_are_normalized_as_stored_and_searched() -> None:
    assert normalize_bib(" 0123 ") == "123"
    assert normalize_bib("a 007") == "A7"
    assert bibs([read("#0123")], BibRules(start_list=start_list_of(["123"]))) == ["123"]


def test_parse_range_names_what_is_wrong() -> None:
    assert parse_range("1-9999") == (1, 9999)
    assert parse_range(" 100 - 200 ") == (100, 200)
    with pytest.raises(ValueError, match="ends before it starts"):
        parse_range("9-1")
    with pytest.raises(ValueError, match="FIRST-LAST"):
        parse_range("1..9")
    with pytest.raises(ValueError, match="empty"):
        BibRules(low=10, high=1)


@pytest.mark.parametrize(
    "context",
    ["MARATHON 202", "25183", "A20", "20:15", "26"],
)
def test_a_number_the_wider_read_shows_running_on_or_reading_otherwise_is_not_a_bib(
    context: str,
) -> None:
    assert bibs([OcrRead("20", (0, 0, 50, 30), 0.99, context=context)], RANGE) == []


@pytest.mark.parametrize("context", ["20", " 20 ", "I  20", "20  N", None])
def test_a_number_the_wider_read_confirms_is_a_bib(context: str | None) -> None:
    assert bibs([OcrRead("20", (0, 0, 50, 30), 0.99, context=context)], RANGE) == ["20"]


def test_a_small_number_inside_a_bigger_text_is_not_a_bib_even_if_that_text_is_unsure() -> None:
    banner = read("BANKA 2025", confidence=0.6, box=(2352, 324, 3184, 564), height=232)
    gaps = read("26", box=(2980, 412, 3048, 444), height=28)
    assert bibs([banner, gaps], RANGE) == []
    assert bibs([gaps], RANGE) == ["26"]


def test_small_print_inside_a_big_numbers_box_does_not_hide_the_number() -> None:
    big = read("8504", confidence=1.0, box=(1600, 1744, 2384, 2048), height=156)
    footer = read("21.1K", confidence=1.0, box=(1564, 1904, 1648, 1932), height=24)
    assert bibs([footer, big], RANGE) == ["8504"]


def test_a_start_list_with_letters_needs_no_pattern() -> None:
    rules = BibRules(start_list=start_list_of(["A123", "B7"]))
    assert bibs([read("A123")], rules) == ["A123"]
    assert bibs([read("a0123")], rules) == ["A123"]
    assert bibs([read("A124")], rules) == []
    assert bibs([read("KM 5")], BibRules(start_list=start_list_of(["KM5"]))) == []


def test_a_card_read_whole_and_its_digits_read_alone_are_one_bib_at_the_digits_box() -> None:
    digits = read("7977", confidence=0.99, box=(2266, 1066, 2390, 1116), height=50)
    card = read("7977", confidence=0.99, box=(2230, 1010, 2430, 1170), height=150)
    found = find_bibs([card, digits], RANGE)
    assert [(f.bib, f.box) for f in found] == [("7977", digits.box)]
