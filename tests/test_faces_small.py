"""Small faces with the default local engine: group photos of mixed face sizes down to 2 %.

The photos are 24 MP composites of the real faces in tests/data (see tests/support/faces.py),
processed by the real worker loop against SQLite and PostgreSQL. scripts/bench_recall.py
measures the same thing on many more photos; these are the fast checks that keep it true.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from photoctl import db, face_store, faces, queue, users
from photoctl.faces.local import LocalEngine, detail_px_for
from photoctl.faces.rekognition import SEND_PX, image_to_send
from photoctl.imaging import decode_photo, draft_box
from photoctl.ingest import ingest_paths
from photoctl.models import DEFAULT_EVENT_ID, Face, Match, Photo
from photoctl.worker import drain_in_process
from testkit.photos import settle
from tests.support.faces import DATA, group_photo
from tests.support.faces import Face as Pasted

GROUP = [
    Pasted("obama_2.jpg", 2.0),
    Pasted("biden.jpg", 3.0, mirror=True, brightness=0.6),
    Pasted("obama_3.jpg", 5.0, angle=12),
    Pasted("biden.jpg", 2.0, angle=-10),
    Pasted("obama_2.jpg", 8.0, mirror=True, angle=-14, brightness=0.7),
    Pasted("obama_3.jpg", 3.0, mirror=True),
]
OBAMA_ONLY = [Pasted("obama_3.jpg", 2.0, angle=8), Pasted("obama_2.jpg", 3.0, brightness=0.55)]
TWO_PERCENT = [Pasted("obama_3.jpg", 2.0, mirror=True)]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """Made once for both databases: {set: (folder, {file: [(x, y, person) of each face]})}."""
    made = {}
    for folder_name, files in (
        ("group", (("group.jpg", GROUP, 1), ("obama_only.jpg", OBAMA_ONLY, 2))),
        ("two_percent", (("two_percent.jpg", TWO_PERCENT, 3),)),
    ):
        folder = tmp_path_factory.mktemp(folder_name)
        layout = {}
        for name, pasted, seed in files:
            layout[name] = group_photo(folder / name, pasted, seed=seed)
            settle(folder / name)
        made[folder_name] = (folder, layout)
    return made


def enroll_both(settings, engine) -> dict[str, int]:
    local = faces.make_engine("local", settings, engine)
    ids = {}
    for name, selfie in (("obama", "obama_1.jpg"), ("biden", "biden.jpg")):
        ids[name], _ = users.add_user(engine, name)
        users.enroll(engine, local, settings, name, DATA / selfie)
    return ids


def process(settings, engine, folder: Path) -> None:
    ingest_paths(engine, settings, [str(folder)])
    assert drain_in_process(settings, "local").failed == 0


def stored_faces(engine) -> dict[str, list]:
    with db.read(engine) as conn:
        rows = conn.execute(
            select(
                Photo.filename,
                Face.id,
                Face.box_left,
                Face.box_top,
                Face.box_width,
                Face.box_height,
            ).join(Photo, Photo.id == Face.photo_id)
        ).all()
    found: dict[str, list] = {}
    for row in rows:
        found.setdefault(row.filename, []).append(row)
    return found


def users_in(engine, user_ids: dict[str, int]) -> dict[str, set[str]]:
    names = {v: k for k, v in user_ids.items()}
    with db.read(engine) as conn:
        rows = conn.execute(
            select(Photo.filename, Match.user_id).join(Photo, Photo.id == Match.photo_id)
        ).all()
    found: dict[str, set[str]] = {}
    for filename, user_id in rows:
        found.setdefault(filename, set()).add(names[user_id])
    return found


def test_default_engine_decodes_larger_for_two_percent_faces(settings) -> None:
    local = LocalEngine.from_settings(settings)
    assert settings.faces.min_face_percent == 2.0
    assert local.detector == "libfacedetection"
    # A 2 % face of a 6000 px photo must be >= 40 px where it is embedded.
    assert local.detail_px * 0.02 >= 40


def test_every_enrolled_user_in_a_group_of_mixed_face_sizes_is_found_and_nobody_else(
    settings,
    engine,
    photos,
) -> None:
    folder, layout = photos["group"]
    ids = enroll_both(settings, engine)
    process(settings, engine, folder)
    assert users_in(engine, ids) == {"group.jpg": {"obama", "biden"}, "obama_only.jpg": {"obama"}}
    # Each pasted face is stored once, and nothing else is: every stored face lies on a pasted
    # one, and each is matched to that face's person.
    local = faces.make_engine("local", settings, engine)
    with db.read(engine) as conn:
        enrolled = face_store.enrolled_faces(conn, "local", DEFAULT_EVENT_ID)
        all_stored = {f.id: f for f in face_store.all_faces(conn, "local", DEFAULT_EVENT_ID)}
    person_of_user = {v: k for k, v in ids.items()}
    by_photo = stored_faces(engine)
    for name, centres in layout.items():
        rows = by_photo.get(name, [])
        assert len(rows) == len(centres), f"{name}: {len(rows)} faces stored, {len(centres)} pasted"
        for row in rows:
            on = [
                person
                for x, y, person in centres
                if row.box_left <= x <= row.box_left + row.box_width
                and row.box_top <= y <= row.box_top + row.box_height
            ]
            assert len(on) == 1, f"{name}: face {row.id} lies on no pasted face"
            matches = local.match_faces([all_stored[row.id]], enrolled)
            assert [person_of_user[m.user_id] for m in matches] == on, f"{name}: face {row.id}"


def test_a_face_two_percent_of_the_photo_width_is_found_and_matched(
    settings,
    engine,
    photos,
) -> None:
    folder, _ = photos["two_percent"]
    ids = enroll_both(settings, engine)
    process(settings, engine, folder)
    [face] = stored_faces(engine)["two_percent.jpg"]
    assert 0.015 <= face.box_width <= 0.03  # about 2 % of the width, whatever was decoded
    assert users_in(engine, ids) == {"two_percent.jpg": {"obama"}}


def test_rerunning_jobs_stores_no_small_face_or_match_twice(settings, engine, photos) -> None:
    folder, layout = photos["group"]
    enroll_both(settings, engine)
    process(settings, engine, folder)

    def counts() -> tuple[int, int]:
        with db.read(engine) as conn:
            return tuple(
                conn.execute(select(func.count()).select_from(model)).scalar_one()
                for model in (Face, Match)
            )

    before = counts()
    with db.write(engine) as conn:
        done = [job.id for job in queue.list_jobs(conn, "done")]
        assert queue.retry_jobs(conn, done) == 2
    assert drain_in_process(settings, "local").failed == 0
    assert counts() == before == (sum(len(c) for c in layout.values()), 3)


def test_a_24mp_jpeg_is_decoded_at_half_size_for_two_percent_faces(photos) -> None:
    folder, _ = photos["two_percent"]
    decoded = decode_photo(
        folder / "two_percent.jpg",
        preview_px=1600,
        max_bytes=10**9,
        max_pixels=10**9,
        display_name="two_percent.jpg",
        detail_px=detail_px_for(2.0),
    )
    # DCT scaling by 2 (not a full decode): a 2 % face is 60 px there; the preview is unchanged.
    assert decoded.detail.size == (3000, 2000)
    assert decoded.image.size == (1600, 1067)
    assert draft_box((6000, 4000), 1600, 2400) == (2400, 1600)


def test_rekognition_is_sent_a_2048_px_image_so_a_2_percent_face_is_40_px(photos) -> None:
    folder, _ = photos["two_percent"]
    with Image.open(folder / "two_percent.jpg") as opened:
        detail = opened.reduce(2)  # as decoded for it: 3000x2000
    sent = image_to_send(detail)
    with Image.open(io.BytesIO(sent)) as image:
        assert max(image.size) == SEND_PX and image.width * 0.02 >= 40
    assert len(sent) <= 5 * 1024 * 1024
    small = Image.new("RGB", (800, 600), (10, 20, 30))
    with Image.open(io.BytesIO(image_to_send(small))) as image:
        assert image.size == (800, 600)  # smaller images go as they are
