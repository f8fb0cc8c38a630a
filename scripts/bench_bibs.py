"""Benchmark the local bib reader on generated race photos: accuracy and CPU per photo.

1. builds --photos JPEGs (quality 90) with testkit.bibs.race_photo: 2-5 runners a photo, bib
   digits 15-120 px high on a 6000x4000 photo, rotated, tilted, creased, some partly covered
   by an arm, plus clocks, kilometre markers, shop signs and sponsor banners;
2. a start list: every bib shown plus as many numbers again drawn from 1-9999 that no photo
   shows (runners who were not photographed);
3. per photo, one thread, CPU time (process_time): the work every photo costs without bibs
   (photoctl.imaging.decode_bytes at the worker's sizes, preview and thumbnail encoded), then
   bib reading on the same decode (BibReader.read on the half-resolution draft, find_bibs);
4. prints: recall of bibs whose digits are >= 25 px high, with the start list (target >= 90 %)
   and below 25 px (for information); photos listed under a bib they do not show, with the
   start list (target 0); wrong bibs per 20 photos with the range 1-9999 only (target <= 1);
   CPU ms per photo without and with bib reading (target: <= 300 ms added).

Run: .venv/bin/python scripts/bench_bibs.py --photos 40   (--photos 4 runs in seconds)
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from photoctl.bibs.reader import BibReader, ReaderSettings  # noqa: E402
from photoctl.bibs.rules import BibRules, find_bibs, start_list_of  # noqa: E402
from photoctl.imaging import decode_bytes  # noqa: E402
from photoctl.thumbnails import make_thumbnail  # noqa: E402
from testkit.bibs import race_photo  # noqa: E402

PREVIEW_PX, THUMB_PX, DETAIL_PX = 1600, 400, 3000


def _without_bibs(data: bytes):
    """What the worker does with every photo: decode once (draft), preview, thumbnail."""
    decoded = decode_bytes(
        data, preview_px=PREVIEW_PX, max_pixels=60_000_000, display_name="x", detail_px=DETAIL_PX
    )
    for image in (decoded.image, make_thumbnail(decoded.image, THUMB_PX)):
        image.save(io.BytesIO(), "JPEG", quality=85)
    return decoded


def _compare_rapidocr(photos, jpegs, with_list: BibRules, range_only: BibRules) -> None:
    """RapidOCR() as a new user would call it, on the full-size photo, through the same rules."""
    from PIL import Image
    from rapidocr import RapidOCR

    from photoctl.bibs.rules import OcrRead

    engine = RapidOCR(params={"Global.log_level": "error"})
    cpu = 0.0
    big = found = wrong_listed = wrong_range = raw_numbers = 0
    for photo, data in zip(photos, jpegs, strict=False):
        image = Image.open(io.BytesIO(data)).convert("RGB")
        start = time.process_time()
        result = engine(image)
        cpu += time.process_time() - start
        reads = []
        boxes = result.boxes if result.boxes is not None else ()
        for text, polygon, score in zip(result.txts or (), boxes, result.scores or (), strict=True):
            xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
            reads.append(OcrRead(text, (min(xs), min(ys), max(xs), max(ys)), float(score)))
            raw_numbers += any(c.isdigit() for c in text)
        truth = {bib.number for bib in photo.bibs}
        listed = {f.bib for f in find_bibs(reads, with_list)}
        ranged = {f.bib for f in find_bibs(reads, range_only)}
        for bib in photo.bibs:
            if bib.digit_px >= 25:
                big, found = big + 1, found + (bib.number in listed)
        wrong_listed += len(listed - truth)
        wrong_range += len(ranged - truth)
    count = max(len(photos), 1)
    print(
        f"RapidOCR() as it comes, {len(photos)} photos: {cpu / count * 1000:.0f} CPU ms/photo "
        f"(its default threads), {raw_numbers / count:.1f} texts with digits a photo; with the "
        f"rules: bibs >= 25 px found {found}/{big}, photos under a wrong bib (list) "
        f"{wrong_listed}, wrong bibs per 20 photos (range) {wrong_range * 20 / count:.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--min-confidence", type=float, default=BibRules().min_confidence)
    parser.add_argument(
        "--dark-cards",
        type=float,
        default=0.0,
        help="share of bibs with white digits on a dark card (default 0: the README's set)",
    )
    parser.add_argument("--verbose", action="store_true", help="print each photo's misses")
    parser.add_argument(
        "--light-on-dark",
        action="store_true",
        help="also look for white digits on dark cards (bibs.light_on_dark; off by default)",
    )
    parser.add_argument(
        "--compare-rapidocr",
        type=int,
        default=0,
        metavar="K",
        help="also run RapidOCR() as it comes (all its defaults) on the first K photos, "
        "decoded whole, with the same rules (seconds of CPU a photo)",
    )
    args = parser.parse_args()

    print(f"building {args.photos} race photos (6000x4000)...", flush=True)
    photos = [
        race_photo(args.seed + index, dark_cards=args.dark_cards) for index in range(args.photos)
    ]
    jpegs = [photo.jpeg() for photo in photos]
    shown = {bib.number for photo in photos for bib in photo.bibs}
    rng = random.Random(args.seed)
    decoys: set[str] = set()
    while len(decoys) < len(shown):
        number = str(rng.randint(1, 9999))
        if number not in shown:
            decoys.add(number)
    with_list = BibRules(
        start_list=start_list_of(shown | decoys), min_confidence=args.min_confidence
    )
    range_only = BibRules(low=1, high=9999, min_confidence=args.min_confidence)

    reader = BibReader(ReaderSettings(light_on_dark=args.light_on_dark))
    reader.read(_without_bibs(jpegs[0]).sharpest, scale=2.0)  # session warm-up, not timed

    base_cpu = bib_cpu = 0.0
    per_photo: list[float] = []
    big = big_found = small = small_found = wrong_listed = wrong_range = 0
    for photo, data in zip(photos, jpegs, strict=True):
        start = time.process_time()
        decoded = _without_bibs(data)
        middle = time.process_time()
        sharp = decoded.sharpest
        reads = reader.read(sharp, scale=decoded.width / sharp.width)
        listed = {found.bib for found in find_bibs(reads, with_list)}
        ranged = {found.bib for found in find_bibs(reads, range_only)}
        end = time.process_time()
        base_cpu += middle - start
        bib_cpu += end - middle
        per_photo.append((end - middle) * 1000)
        truth = {bib.number for bib in photo.bibs}
        for bib in photo.bibs:
            hit = bib.number in listed
            if bib.digit_px >= 25:
                big, big_found = big + 1, big_found + hit
            else:
                small, small_found = small + 1, small_found + hit
            if args.verbose and not hit:
                print(f"  missed {bib.number} ({bib.digit_px} px) in photo {photos.index(photo)}")
        wrong_listed += len(listed - truth)
        wrong_range += len(ranged - truth)
        if args.verbose and (listed - truth or ranged - truth):
            print(f"  wrong in photo {photos.index(photo)}: {sorted(ranged - truth)}")

    if args.compare_rapidocr:
        _compare_rapidocr(photos[: args.compare_rapidocr], jpegs, with_list, range_only)
    count = len(photos)
    base_ms, bib_ms = base_cpu / count * 1000, bib_cpu / count * 1000
    rows = [
        ("photos (6000x4000)", f"{count}", ""),
        (
            "bibs >= 25 px found (start list)",
            f"{big_found}/{big} = {big_found / max(big, 1):.0%}",
            ">= 90 %",
        ),
        (
            "bibs 15-24 px found (start list)",
            f"{small_found}/{small} = {small_found / small:.0%}" if small else "none shown",
            "-",
        ),
        ("photos under a bib they do not show (list)", f"{wrong_listed}", "0"),
        ("wrong bibs per 20 photos (range 1-9999)", f"{wrong_range * 20 / count:.1f}", "<= 1"),
        ("CPU ms/photo without bibs", f"{base_ms:.0f}", ""),
        (
            "CPU ms/photo with bibs",
            f"{base_ms + bib_ms:.0f} (+{bib_ms:.0f}, x{(base_ms + bib_ms) / base_ms:.1f})",
            "+<= 300",
        ),
        (
            "CPU ms of bib reading, median / p90 / max",
            " / ".join(
                f"{sorted(per_photo)[min(count - 1, int(q * count))]:.0f}" for q in (0.5, 0.9, 1.0)
            ),
            "",
        ),
    ]
    width = max(len(row[0]) for row in rows)
    print(f"{'':{width}}  {'measured':>22}  target")
    for name, value, target in rows:
        print(f"{name:{width}}  {value:>22}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
