"""The local bib reader on generated race photos: real OCR (PP-OCR's recognition model from the
rapidocr wheel, on onnxruntime) and the rules, as the worker will call them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from photoctl.bibs.reader import REC_MODEL, BibReader, ReaderSettings, model_dir
from photoctl.bibs.rules import BibRules, find_bibs, start_list_of
from testkit.bibs import race_photo

# Photos a quarter of 24 MP: what the worker gives the reader (the half-resolution draft of a
# 24 MP JPEG), with digits 30-70 px high there.
SIZE = (3000, 2000)


@pytest.fixture(scope="module")
def reader() -> BibReader:
    return BibReader()


def test_the_model_comes_from_the_installed_wheel() -> None:
    assert (model_dir() / REC_MODEL).is_file()


def test_recognition_runs_on_one_thread_so_two_workers_fit_two_cores(reader: BibReader) -> None:
    assert reader.session.get_session_options().intra_op_num_threads == 1


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_the_bibs_of_a_race_photo_are_found_and_nothing_else(reader: BibReader, seed: int) -> None:
    photo = race_photo(seed, SIZE, runners=(2, 3), digit_px=(30, 70), distractors=(2, 3))
    shown = {bib.number for bib in photo.bibs}
    reads = reader.read(photo.image)
    listed = find_bibs(reads, BibRules(start_list=start_list_of(shown | {"1", "42", "2026"})))
    assert {found.bib for found in listed} == shown
    # Without a start list a fragment of a banner may pass for a bib: bench_bibs.py measures
    # how often (target: at most 1 in 20 photos).
    ranged = {found.bib for found in find_bibs(reads, BibRules())}
    assert shown <= ranged and len(ranged - shown) <= 1
    for found in listed:
        truth = next(bib for bib in photo.bibs if bib.number == found.bib)
        x0, y0, x1, y1 = found.box
        assert x0 <= truth.box[2] and truth.box[0] <= x1 and y0 <= truth.box[3]
        assert truth.box[1] <= y1, "the box of the read is where the bib is"
        assert found.confidence >= BibRules().min_confidence


def test_reads_are_in_original_pixels_when_given_a_reduced_copy(reader: BibReader) -> None:
    photo = race_photo(11, SIZE, runners=(2, 3), digit_px=(30, 70), distractors=(0, 0))
    half = photo.image.resize((SIZE[0] // 2, SIZE[1] // 2))
    found = find_bibs(reader.read(half, scale=2.0), BibRules())
    truth = {bib.number: bib.box for bib in photo.bibs}
    assert {bib.bib for bib in found} == set(truth)
    for bib in found:
        for got, expected in zip(bib.box, truth[bib.bib], strict=True):
            assert abs(got - expected) < 20


def test_clocks_distances_signs_and_banners_give_no_bib(reader: BibReader) -> None:
    for seed in (21, 22):
        photo = race_photo(seed, SIZE, runners=(0, 0), distractors=(5, 6))
        assert find_bibs(reader.read(photo.image), BibRules()) == [], photo.distractors


def test_reading_needs_no_rapidocr_import_and_no_download() -> None:
    code = (
        "import sys; from photoctl.bibs.reader import BibReader; BibReader();"
        "assert 'rapidocr' not in sys.modules; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr


def test_generated_race_photos_are_the_same_for_the_same_seed() -> None:
    first = race_photo(7, (1200, 800), digit_px=(20, 40))
    again = race_photo(7, (1200, 800), digit_px=(20, 40))
    assert first.bibs == again.bibs and first.distractors == again.distractors
    assert first.image.tobytes() == again.image.tobytes()
    assert race_photo(8, (1200, 800), digit_px=(20, 40)).bibs != first.bibs
    for bib in first.bibs:
        assert 20 <= bib.digit_px <= 40
        x0, y0, x1, y1 = bib.box
        assert 0 <= x0 < x1 <= 1200 and 0 <= y0 < y1 <= 800


def test_odd_images_give_no_reads_and_no_error(reader: BibReader) -> None:
    import numpy as np
    from PIL import Image

    for image in (
        Image.new("RGB", (10, 10)),
        Image.new("L", (1500, 1000), 255),
        Image.new("RGBA", (640, 480)),
        Image.new("RGB", (1, 5000), (255, 255, 255)),
        np.zeros((1, 1, 3), np.uint8),
    ):
        assert reader.read(image) == []


def test_a_photo_of_pure_texture_costs_little_cpu(reader: BibReader) -> None:
    """Foliage or gravel gives thousands of character-sized shapes: only the tallest are
    chained, so the cost stays bounded (1.5 CPU-s before the cap, ~0.1 s after)."""
    import time

    import numpy as np

    noise = np.random.default_rng(0).integers(0, 256, (2000, 3000, 3), dtype=np.uint8)
    start = time.process_time()
    assert reader.read(noise, scale=2.0) == []
    assert time.process_time() - start < 0.6


def test_bibs_with_letters_are_read_with_the_events_pattern_or_its_start_list(
    reader: BibReader,
) -> None:
    numbers = ["A123", "B45", "C9071"]
    photo = race_photo(31, SIZE, runners=(3, 3), digit_px=(30, 70), numbers=numbers)
    reads = reader.read(photo.image)
    by_pattern = find_bibs(reads, BibRules(pattern="[A-Z][0-9]{1,4}"))
    assert {found.bib for found in by_pattern} == set(numbers)
    by_list = find_bibs(reads, BibRules(start_list=start_list_of(numbers)))
    assert {found.bib for found in by_list} == set(numbers)
    assert find_bibs(reads, BibRules()) == [], "without a pattern or a list, letters are not bibs"


@pytest.fixture(scope="module")
def dark_card_reader() -> BibReader:
    return BibReader(ReaderSettings(light_on_dark=True))


@pytest.mark.parametrize("seed", [40, 44])
def test_white_digits_on_dark_cards_are_read_when_the_reader_looks_for_them(
    reader: BibReader, dark_card_reader: BibReader, seed: int
) -> None:
    photo = race_photo(seed, SIZE, runners=(2, 3), digit_px=(30, 70), dark_cards=1.0)
    shown = {bib.number for bib in photo.bibs}
    rules = BibRules(start_list=start_list_of(shown))
    found = find_bibs(dark_card_reader.read(photo.image), rules)
    assert {bib.bib for bib in found} == shown
    assert find_bibs(reader.read(photo.image), rules) == [], "not looked for by default"
