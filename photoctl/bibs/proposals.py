"""Where a photo may show a bib number: lines of dark, character-sized shapes on a light ground.

A text detector run over a whole 24 MP photo costs seconds, and on a copy small enough to be
cheap it misses the small bibs. Bib digits are big, bold and dark on a light card, which
OpenCV finds in a few milliseconds on a reduced copy: a local threshold, connected shapes of a
character's size and fill, chained left to right into lines. Only these lines are cropped from
the sharper image and given to the recognition model, which decides what they say.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Grey levels (0-255) of a card behind the characters, and of its difference to their ink.
MIN_GROUND = 120
MIN_CONTRAST = 70
# Shapes chained at most: a photo's bibs are among its tallest; beyond this it is texture.
MAX_SHAPES = 1500


@dataclass(frozen=True)
class TextLine:
    """A chain of character-sized shapes, in the coordinates of the image searched."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    char_height: float  # median height of its shapes
    angle: float  # degrees, of the line through the shapes' centres (0 = horizontal)
    shapes: int


def text_lines(
    gray: np.ndarray,
    *,
    min_height: int,
    max_height: int,
    max_lines: int,
) -> list[TextLine]:
    """Lines of dark shapes between min_height and max_height pixels high, biggest first."""
    block = max(15, (max_height * 2) | 1)
    dark = cv2.adaptiveThreshold(
        gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, 18
    )
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(dark, connectivity=8)
    if count <= 1:
        return []
    x, y, w, h, area = (stats[1:, i].astype(float) for i in range(5))
    fill = area / np.maximum(w * h, 1)
    # Digits are taller than wide (merged neighbours are wider), partly filled: window panes,
    # poles and noise are not.
    keep = (
        (h >= min_height)
        & (h <= max_height)
        & (w >= h * 0.12)
        & (w <= h * 3.5)
        & (fill >= 0.18)
        & (fill <= 0.85)
    )
    index = np.flatnonzero(keep)
    if index.size == 0:
        return []
    if index.size > MAX_SHAPES:  # foliage, gravel, noise: chain only the tallest shapes
        index = index[np.argpartition(-h[index], MAX_SHAPES)[:MAX_SHAPES]]
    order = index[np.argsort(x[index])]
    boxes = [
        (x[i], y[i], x[i] + w[i], y[i] + h[i], centroids[i + 1][0], centroids[i + 1][1])
        for i in order
    ]
    groups = _chain(boxes)
    # Biggest first, as they are kept, so that the card check stops once enough are found.
    groups.sort(key=lambda members: -_rank(boxes, members))
    lines: list[TextLine] = []
    for members in groups:
        if len(lines) >= max_lines:
            break
        part = np.array([boxes[m] for m in members])
        heights = part[:, 3] - part[:, 1]
        x0, y0 = int(part[:, 0].min()), int(part[:, 1].min())
        x1, y1 = int(part[:, 2].max()), int(part[:, 3].max())
        if len(members) == 1 and (x1 - x0) < heights[0]:
            continue  # one lone character: a limb, a letter, a pole; bibs have two or more
        ids = order[members] + 1  # component labels (0 is the background)
        ink = np.isin(labels[y0:y1, x0:x1], ids)
        if not _on_a_card(gray, (x0, y0, x1, y1), ink, float(np.median(heights))):
            continue
        angle, level_height = _slant(ink)
        # A slanted line's boxes are taller than its characters: their height across the line.
        height = min(float(np.median(heights)), level_height or float("inf"))
        lines.append(TextLine((x0, y0, x1, y1), height, angle, len(members)))
    return lines


def _rank(
    boxes: list[tuple[float, float, float, float, float, float]], members: list[int]
) -> float:
    """Taller characters and more of them (up to a bib's 4) first."""
    heights = sorted(boxes[m][3] - boxes[m][1] for m in members)
    return heights[len(heights) // 2] * min(len(members), 4)


def _chain(boxes: list[tuple[float, float, float, float, float, float]]) -> list[list[int]]:
    """Chain shapes (sorted by left edge) whose heights match and that sit side by side."""
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (_x0, y0, x1, y1, cx, cy) in enumerate(boxes):
        height = y1 - y0
        for j in range(i + 1, len(boxes)):
            a0, b0, _a1, b1, cx2, cy2 = boxes[j]
            if a0 > x1 + height:  # sorted by left edge: nothing further can touch
                break
            other = b1 - b0
            if not 0.7 <= other / height <= 1.43:
                continue
            # Side by side on a line slanted up to ~25° (a bib rotated on a runner's chest).
            if abs(cy2 - cy) > 0.3 * max(height, other) + 0.45 * abs(cx2 - cx):
                continue
            if a0 - x1 > 0.9 * max(height, other):
                continue
            parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        groups.setdefault(root(i), []).append(i)
    # More than 8 shapes is a sentence, not a bib.
    return [members for members in groups.values() if len(members) <= 8]


def _on_a_card(
    gray: np.ndarray, box: tuple[int, int, int, int], ink: np.ndarray, height: float
) -> bool:
    """Dark characters on a light ground that goes on around them (a bib card, white or
    coloured), not shapes on a shirt or a tree. The ground is what lies within a quarter of
    a character's height of the ink, so a slanted card's corners do not count."""
    x0, y0, x1, y1 = box
    pad = max(2, round(height * 0.25))
    top, left = min(pad, y0), min(pad, x0)
    window = gray[y0 - top : y1 + pad, x0 - left : x1 + pad]
    mask = np.zeros(window.shape, np.uint8)
    mask[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    near = cv2.dilate(mask, np.ones((2 * pad + 1, 2 * pad + 1), np.uint8)).astype(bool)
    ground_pixels = window[near & ~mask.astype(bool)]
    if ground_pixels.size == 0 or not ink.any():
        return False
    ground = float(np.median(ground_pixels))
    return ground >= MIN_GROUND and ground - float(gray[y0:y1, x0:x1][ink].mean()) >= MIN_CONTRAST


def _slant(ink: np.ndarray) -> tuple[float, float | None]:
    """Slant of a line in degrees, from the principal axis of its shapes' pixels (digits that
    touch, one shape, are measured as well as long lines), and the height of its characters
    across that axis."""
    ys, xs = np.nonzero(ink)
    if xs.size < 3:
        return 0.0, None
    points = np.stack([xs, ys]).astype(float)
    cov = np.cov(points)
    radians = 0.5 * np.arctan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1])
    across = -np.sin(radians) * points[0] + np.cos(radians) * points[1]
    low, high = np.percentile(across, [1, 99])
    angle = float(max(-30.0, min(30.0, np.degrees(radians))))
    return angle, float(high - low + 1)
