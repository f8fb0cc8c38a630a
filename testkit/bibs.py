"""Generated race photos: runners wearing bib numbers, with distractors, and their ground truth.

A bib is drawn the way race bibs look (big bold digits on a white or coloured card, a sponsor
line above, a small "10K" or year below, safety-pin dots at the corners), then warped (rotation,
perspective, a crease across part of the card), pinned on a person-like shape and sometimes
partly covered by an arm. Distractors carry numbers that are not bibs: race clocks (times),
kilometre markers (distances), shop signs and sponsor banners (words with numbers, years).
Everything is seeded: the same seed gives the same photo and the same truth.

Fonts come from Pillow itself (``ImageFont.load_default(size=...)``, scalable since 10.1), drawn
with a stroke for the bold digits of a bib, so no system font is needed.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in photo pixels

CARD_COLOURS = [(250, 250, 248), (255, 255, 255), (255, 236, 90), (190, 225, 255), (255, 200, 215)]
DARK_CARD_COLOURS = [(25, 70, 160), (30, 110, 60), (30, 30, 30)]  # white digits on these
SHIRT_COLOURS = [(200, 40, 40), (30, 60, 160), (20, 20, 20), (240, 120, 20), (60, 150, 70)]
SKIN_COLOURS = [(235, 200, 170), (200, 150, 110), (140, 95, 65), (95, 65, 45)]
SPONSORS = ["CITY RUN", "SPORTCO", "AQUAFIT", "RUNNERS CLUB", "BANKIA", "VELOX"]


@dataclass(frozen=True)
class BibTruth:
    """One bib in a photo: its number, the box of its digits and their height before warping."""

    number: str
    box: Box
    digit_px: int


@dataclass
class RacePhoto:
    image: Image.Image
    bibs: list[BibTruth] = field(default_factory=list)
    distractors: list[str] = field(default_factory=list)  # texts with numbers that are not bibs

    def text_lines(self) -> list[tuple[str, tuple[float, float, float, float], float]]:
        """The bibs as a text detector would answer them: (text, (left, top, width, height) as
        fractions of the photo, confidence 0-100), for testkit/fake_rekognition.register_text."""
        width, height = self.image.size
        return [
            (bib.number, (x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height), 98.0)
            for bib in self.bibs
            for x0, y0, x1, y1 in [bib.box]
        ]

    def jpeg(self, quality: int = 90) -> bytes:
        buffer = io.BytesIO()
        self.image.save(buffer, "JPEG", quality=quality)
        return buffer.getvalue()


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(6, size))


def bib_card(number: str, digit_px: int, colour: tuple[int, int, int], rng: random.Random):
    """The flat card and the box of its digits in card pixels."""
    digits_font = font(int(digit_px * 1.36))  # cap height of this font is ~0.73 of its size
    stroke = max(1, digit_px // 16)
    left, top, right, bottom = digits_font.getbbox(number, stroke_width=stroke)
    text_w, text_h = right - left, bottom - top
    width = int(max(text_w * 1.35, digit_px * 3.2))
    height = int(digit_px * 2.5)
    card = Image.new("RGBA", (width, height), colour + (255,))
    draw = ImageDraw.Draw(card)
    ink = (10, 10, 10) if sum(colour) > 300 else (250, 250, 250)
    x = (width - text_w) // 2 - left
    y = int(height * 0.52 - text_h / 2) - top
    draw.text((x, y), number, font=digits_font, fill=ink, stroke_width=stroke, stroke_fill=ink)
    digits_box = (x + left, y + top, x + right, y + bottom)
    small = font(max(4, int(digit_px * 0.3)))
    band = int(digit_px * 0.42)
    draw.rectangle([0, 0, width, band], fill=(200, 30, 40, 255))
    draw.text((width * 0.08, band * 0.15), rng.choice(SPONSORS), font=small, fill=(255, 255, 255))
    footer = rng.choice(["10K", "21.1K", "HALF", "2026", "5K FUN RUN"])
    draw.text((width * 0.08, height - band * 0.95), footer, font=small, fill=ink)
    pin = max(1, digit_px // 12)
    for px, py in ((pin * 2, band + pin * 2), (width - pin * 3, band + pin * 2)):
        draw.ellipse([px, py, px + pin, py + pin], fill=(120, 120, 120, 255))
    for px, py in ((pin * 2, height - pin * 3), (width - pin * 3, height - pin * 3)):
        draw.ellipse([px, py, px + pin, py + pin], fill=(120, 120, 120, 255))
    if rng.random() < 0.4:  # a crease: a shaded band across part of the card
        crease = Image.new("RGBA", card.size, (0, 0, 0, 0))
        cdraw = ImageDraw.Draw(crease)
        x0 = rng.uniform(0.2, 0.8) * width
        cdraw.line(
            [(x0, 0), (x0 + rng.uniform(-0.2, 0.2) * width, height)],
            fill=(0, 0, 0, 70),
            width=max(2, digit_px // 6),
        )
        card = Image.alpha_composite(card, crease.filter(ImageFilter.GaussianBlur(digit_px / 10)))
    return card, digits_box


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    rows = []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    _, _, vt = np.linalg.svd(np.asarray(rows, dtype=float))
    return vt[-1].reshape(3, 3) / vt[-1][-1]


def warp_card(card: Image.Image, digits_box: Box, rng: random.Random):
    """Rotate (±20°) and tilt the card; the warped card and its digits' box within it."""
    width, height = card.size
    angle = np.radians(rng.uniform(-20, 20))
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=float)
    centred = corners - [width / 2, height / 2]
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    tilt = rng.uniform(-0.15, 0.15)  # one side nearer the camera than the other
    squeeze = np.array([[1 + tilt * (1 if x < 0 else -1)] for x, _ in centred])
    dst = (centred * [1, 1]) @ rot.T
    dst[:, 1] *= squeeze[:, 0]
    dst += np.array(
        [[rng.uniform(-0.04, 0.04) * width, rng.uniform(-0.04, 0.04) * height] for _ in range(4)]
    )
    dst -= dst.min(axis=0)
    out_w, out_h = (int(v) + 1 for v in dst.max(axis=0))
    forward = _homography(corners, dst)
    inverse = np.linalg.inv(forward)
    coeffs = (inverse / inverse[2, 2]).flatten()[:8]
    warped = card.transform((out_w, out_h), Image.Transform.PERSPECTIVE, coeffs, Image.BICUBIC)
    x0, y0, x1, y1 = digits_box
    points = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], dtype=float)
    mapped = points @ forward.T
    mapped = mapped[:, :2] / mapped[:, 2:]
    lo, hi = mapped.min(axis=0), mapped.max(axis=0)
    return warped, (int(lo[0]), int(lo[1]), int(hi[0]) + 1, int(hi[1]) + 1)


def draw_runner(
    photo: Image.Image,
    centre_x: int,
    number: str,
    digit_px: int,
    rng: random.Random,
    *,
    dark: bool = False,
):
    """A person-like shape wearing the bib; returns the truth of the bib."""
    draw = ImageDraw.Draw(photo)
    colour = rng.choice(DARK_CARD_COLOURS if dark else CARD_COLOURS)
    card, digits = bib_card(number, digit_px, colour, rng)
    warped, digits_box = warp_card(card, digits, rng)
    torso_w = int(warped.width * rng.uniform(1.5, 1.9))
    torso_h = int(torso_w * 1.35)
    height = photo.height
    torso_top = int(height * rng.uniform(0.30, 0.62) - torso_h / 2)
    torso_top = max(int(torso_w * 0.9), min(torso_top, height - torso_h - 10))
    left = centre_x - torso_w // 2
    skin, shirt = rng.choice(SKIN_COLOURS), rng.choice(SHIRT_COLOURS)
    head = int(torso_w * 0.42)
    draw.ellipse(
        [centre_x - head // 2, torso_top - head - 8, centre_x + head // 2, torso_top - 4], fill=skin
    )
    legs = (40, 40, 60)
    draw.rectangle(
        [left + torso_w * 0.1, torso_top + torso_h, left + torso_w * 0.45, height], fill=legs
    )
    draw.rectangle(
        [left + torso_w * 0.55, torso_top + torso_h, left + torso_w * 0.9, height], fill=legs
    )
    draw.rounded_rectangle(
        [left, torso_top, left + torso_w, torso_top + torso_h], radius=torso_w // 6, fill=shirt
    )
    arm = max(4, torso_w // 7)
    draw.line(
        [(left, torso_top + arm), (left - torso_w * 0.3, torso_top + torso_h)], fill=skin, width=arm
    )
    card_x = centre_x - warped.width // 2
    card_y = torso_top + int(torso_h * 0.22)
    photo.paste(warped, (card_x, card_y), warped)
    if rng.random() < 0.3:  # an arm swung across the bottom of the card
        arm_y = card_y + digits_box[3] - (digits_box[3] - digits_box[1]) * 0.1
        draw.line(
            [(left + torso_w * 1.2, arm_y + arm * 2), (left + torso_w * 0.35, arm_y + arm)],
            fill=skin,
            width=arm,
        )
    else:
        draw.line(
            [(left + torso_w, torso_top + arm), (left + torso_w * 1.3, torso_top + torso_h)],
            fill=skin,
            width=arm,
        )
    box = digits_box
    return BibTruth(
        number, (card_x + box[0], card_y + box[1], card_x + box[2], card_y + box[3]), digit_px
    )


def _background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    width, height = size
    nrng = np.random.default_rng(rng.randrange(2**32))
    small = (height // 16, width // 16)
    y = np.linspace(0, 1, small[0])[:, None, None]
    sky = np.array([150, 190, 235]) * (1 - y) + np.array([200, 215, 230]) * y
    ground_line = int(small[0] * rng.uniform(0.45, 0.6))
    base = np.broadcast_to(sky, (*small, 3)).copy()
    base[ground_line:] = [110, 110, 105]
    base += nrng.normal(0, 9, size=base.shape)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(3, 7)):  # trees and buildings behind the runners
        x = rng.uniform(0, width)
        w = rng.uniform(0.05, 0.2) * width
        h = rng.uniform(0.2, 0.5) * height
        if rng.random() < 0.5:
            green = (rng.randint(30, 80), rng.randint(90, 150), rng.randint(30, 70))
            draw.ellipse([x, ground_line * 16 - h, x + w, ground_line * 16 + h * 0.1], fill=green)
        else:
            grey = rng.randint(120, 200)
            draw.rectangle([x, ground_line * 16 - h, x + w, ground_line * 16], fill=(grey,) * 3)
            for wy in range(int(ground_line * 16 - h + 40), ground_line * 16 - 60, 160):
                for wx in range(int(x + 30), int(x + w - 60), 140):
                    draw.rectangle([wx, wy, wx + 60, wy + 80], fill=(60, 70, 90))
    return image


def _sign(photo: Image.Image, text: str, x: int, y: int, px: int, fg, bg) -> None:
    draw = ImageDraw.Draw(photo)
    sign_font = font(int(px * 1.36))
    left, top, right, bottom = sign_font.getbbox(text, stroke_width=max(1, px // 12))
    pad = px // 2
    draw.rectangle([x, y, x + right - left + 2 * pad, y + bottom - top + 2 * pad], fill=bg)
    draw.text(
        (x + pad - left, y + pad - top),
        text,
        font=sign_font,
        fill=fg,
        stroke_width=max(1, px // 12),
        stroke_fill=fg,
    )


def distractor_text(rng: random.Random) -> tuple[str, tuple, tuple]:
    """A text with numbers that is not a bib, with its colours (ink, background)."""
    kind = rng.choice(["clock", "km", "shop", "banner"])
    if kind == "clock":
        h, m, s = rng.randint(0, 4), rng.randint(0, 59), rng.randint(0, 59)
        text = rng.choice([f"{h}:{m:02d}:{s:02d}", f"{rng.randint(7, 12)}:{m:02d}"])
        return text, (255, 40, 30), (15, 15, 15)
    if kind == "km":
        text = rng.choice(["KM 5", "10 km", "21.1 km", "15K", "KM 30", "42.195 km"])
        return text, (255, 255, 255), (20, 90, 200)
    if kind == "shop":
        text = rng.choice(["BAKERY 24/7", "PHARMACY 3", "CAFE 1985", "OPEN 8-20", "HOTEL 4"])
        return text, (30, 30, 30), (235, 225, 200)
    year = rng.choice(["2025", "2026"])
    text = rng.choice([f"{rng.choice(SPONSORS)} {year}", f"MARATHON {year}", "SPORTCO 10K"])
    return text, (255, 255, 255), (200, 30, 40)


def race_photo(
    seed: int,
    size: tuple[int, int] = (6000, 4000),
    *,
    runners: tuple[int, int] = (2, 5),
    digit_px: tuple[int, int] = (15, 120),
    distractors: tuple[int, int] = (2, 4),
    numbers: list[str] | None = None,
    dark_cards: float = 0.0,
) -> RacePhoto:
    """One photo; bib numbers drawn from 1-9999 (or taken in turn from ``numbers``); a share
    ``dark_cards`` of the bibs has white digits on a dark card."""
    rng = random.Random(seed)
    width, height = size
    image = _background(size, rng)
    photo = RacePhoto(image)
    for _ in range(rng.randint(*distractors)):
        text, fg, bg = distractor_text(rng)
        px = int(rng.uniform(0.006, 0.025) * height)
        _sign(
            image,
            text,
            int(rng.uniform(0, 0.8) * width),
            int(rng.uniform(0.02, 0.35) * height),
            px,
            fg,
            bg,
        )
        photo.distractors.append(text)
    count = rng.randint(*runners)
    slot = width / max(count, 1)
    pool = list(numbers) if numbers else None
    for index in range(count):
        number = pool.pop(0) if pool else str(rng.randint(1, 9999))
        px = rng.randint(*digit_px)
        centre = int(slot * (index + 0.5) + rng.uniform(-0.15, 0.15) * slot)
        # Drawn only when asked, so that photos without dark cards stay those of earlier runs.
        dark = dark_cards > 0 and rng.random() < dark_cards
        photo.bibs.append(draw_runner(image, centre, number, px, rng, dark=dark))
    return photo
