"""Rekognition's limits: image size (5 MB, 80 px), 100 faces per photo, errors that must not be
retried. Real boto3 against the fake endpoint; the photo keeps its thumbnail and preview, its job
completes, and the reason shows on the photo, the job, `stats` and the log.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from photoctl import catalog, db, face_store, faces, queue, stats, users
from photoctl.errors import FacesRefused
from photoctl.faces.rekognition import MIN_IMAGE_PX, encode_under_limit, image_to_send
from photoctl.ingest import ingest_paths
from photoctl.models import Photo
from photoctl.worker import drain_in_process
from testkit.fake_rekognition import AWS_ENV, detect_faces, make_face_image
from testkit.photos import settle

RED = (255, 0, 0)


@pytest.fixture
def rk_settings(settings, fake, monkeypatch: pytest.MonkeyPatch):
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return settings.replace(
        "rekognition", endpoint_url=fake.endpoint_url, region="eu-west-1", max_tps=100.0
    )


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    settle(path)
    return path


def photo_row(engine) -> tuple[str | None, str | None, str | None]:
    with db.read(engine) as conn:
        row = conn.execute(select(Photo.thumb_path, Photo.faces_error, Photo.faces_engine)).one()
    return row[0], row[1], row[2]


def only_job(engine) -> queue.JobInfo:
    with db.read(engine) as conn:
        [job] = queue.list_jobs(conn)
    return job


@pytest.mark.parametrize(
    "code", ["InvalidParameterException", "ImageTooLargeException", "InvalidImageFormatException"]
)
def test_a_refused_photo_completes_with_previews_and_the_reason_instead_of_retrying(
    rk_settings, engine, fake, tmp_path, code, caplog
) -> None:
    write(tmp_path / "event" / "a.jpg", make_face_image([RED]))
    ingest_paths(engine, rk_settings, [str(tmp_path / "event")])
    fake.fail_next(1, code, operation="IndexFaces")
    with caplog.at_level("WARNING"):
        report = drain_in_process(rk_settings, "rekognition")
    assert (report.done, report.failed) == (1, 0)
    job = only_job(engine)
    assert job.state == "done" and job.attempts == 1
    assert job.last_error.startswith("faces failed: Rekognition index_faces: " + code)
    thumb, faces_error, checkpoint = photo_row(engine)
    assert thumb and rk_settings.storage_file(thumb).is_file()
    assert code in faces_error and checkpoint is None  # a rerun asks again, nothing to discard
    assert len(fake.calls("IndexFaces")) == 1
    assert f"faces failed: Rekognition index_faces: {code}" in caplog.text
    with db.read(engine) as conn:
        figures = stats.collect(conn, rk_settings)
    assert figures["faces"] == {"failed": 1}
    assert "1 without faces" in stats.render(figures)

    # Retried by the operator, and accepted this time: the reason is gone.
    with db.write(engine) as conn:
        queue.retry_jobs(conn, [job.id])
    drain_in_process(rk_settings, "rekognition")
    assert photo_row(engine)[1:] == (None, "rekognition")


def test_an_image_under_80_px_is_never_sent(rk_settings, engine, fake, tmp_path) -> None:
    small = io.BytesIO()
    Image.new("RGB", (120, 60), "white").save(small, "JPEG")
    write(tmp_path / "event" / "small.jpg", small.getvalue())
    ingest_paths(engine, rk_settings, [str(tmp_path / "event")])
    assert drain_in_process(rk_settings, "rekognition").failed == 0
    assert fake.calls("IndexFaces") == []
    _, faces_error, _ = photo_row(engine)
    assert "120x60 px" in faces_error and f"at least {MIN_IMAGE_PX} px" in faces_error


def test_images_are_sent_under_5_mb_and_never_under_80_px() -> None:
    noisy = Image.frombytes("RGB", (1200, 900), random.Random(1).randbytes(1200 * 900 * 3))
    data = encode_under_limit(noisy, limit_bytes=200_000)
    sent = Image.open(io.BytesIO(data))
    assert len(data) <= 200_000 and min(sent.size) >= MIN_IMAGE_PX
    with pytest.raises(FacesRefused, match="not sent"):
        encode_under_limit(noisy, limit_bytes=500)
    # A panorama keeps 80 px on its short side rather than shrinking to 2048 px wide.
    panorama = Image.new("RGB", (8000, 100), "white")
    assert min(Image.open(io.BytesIO(image_to_send(panorama))).size) >= MIN_IMAGE_PX


def test_the_fake_refuses_what_aws_refuses(fake, rk_settings, engine) -> None:
    face_engine = faces.make_engine("rekognition", rk_settings, engine)
    tiny = io.BytesIO()
    Image.new("RGB", (79, 200), "white").save(tiny, "PNG")
    face_engine._ensure_collection()
    with pytest.raises(FacesRefused, match="InvalidParameterException"):
        face_engine._call("index_faces", CollectionId="photoctl", Image={"Bytes": tiny.getvalue()})
    with pytest.raises(FacesRefused, match="InvalidImageFormatException"):
        face_engine._call("index_faces", CollectionId="photoctl", Image={"Bytes": b"GIF89a"})


def test_at_most_100_faces_are_indexed_and_the_job_says_which_were_left_out(
    rk_settings, engine, fake, tmp_path, caplog
) -> None:
    # 120 identities, the last eight drawn smaller. Some colours are told apart only in the PNG
    # (JPEG's chroma blurs neighbours of one level); what counts is what the endpoint sees.
    colours = [
        (r, g, b)
        for r in range(0, 256, 51)
        for g in range(0, 256, 51)
        for b in range(0, 256, 51)
        if min(r, g, b) < 153
    ][:120]
    photo = make_face_image(colours, (2000, 1600), sides=[110] * 112 + [80] * 8, fmt="PNG")
    decoded = Image.open(io.BytesIO(photo))
    visible = len(detect_faces(image_to_send(decoded)))
    assert visible > 105
    write(tmp_path / "event" / "crowd.png", photo)
    red_selfie = write(tmp_path / "selfie.jpg", make_face_image([colours[0]]))
    face_engine = faces.make_engine("rekognition", rk_settings, engine)
    users.add_user(engine, "first")
    users.enroll(engine, face_engine, rk_settings, "first", red_selfie)
    ingest_paths(engine, rk_settings, [str(tmp_path / "event")])
    with caplog.at_level("WARNING"):
        assert drain_in_process(rk_settings, "rekognition").failed == 0
    with db.read(engine) as conn:
        photo_id = catalog.photo_id_by_hash(conn, conn.execute(select(Photo.content_hash)).scalar())
        stored = face_store.photo_faces(conn, photo_id, "rekognition")
    assert len(stored) == 100
    job = only_job(engine)
    assert job.state == "done"
    left_out = visible - 100
    assert job.last_error.startswith(
        f"{left_out} faces not indexed: Rekognition indexes at most 100"
    )
    assert job.last_error.count("x0.") == left_out  # each one named by its box
    assert f"{left_out} faces not indexed" in caplog.text
    assert photo_row(engine)[1] is None  # faces were found: the face step did not fail


def test_migration_0007_keeps_existing_photos_and_adds_no_reason(
    tmp_path: Path, empty_db_url: str
) -> None:
    from alembic import command

    from photoctl import config

    settings = config.load(
        data_dir=str(tmp_path / "data"), environ={}, overrides={"database.url": empty_db_url}
    )
    engine = db.make_engine(settings)
    with engine.connect() as connection:
        if not db.is_postgresql(engine):
            db._on_driver(connection, "PRAGMA foreign_keys = OFF")  # as ensure_schema does
        with connection.begin():
            alembic_config = db._alembic_config()
            alembic_config.attributes["connection"] = connection
            command.upgrade(alembic_config, "0006")
    with db.write(engine) as conn:
        conn.exec_driver_sql(
            "INSERT INTO photos (id, content_hash, source_path, filename, size_bytes, "
            "ingested_at, faces_engine) VALUES (7, 'h7', '/p/a.jpg', 'a.jpg', 1, 0.0, "
            "'rekognition')"
        )
    db.ensure_schema(engine)
    with db.read(engine) as conn:
        rows = conn.execute(select(Photo.id, Photo.faces_engine, Photo.faces_error)).all()
        figures = stats.collect(conn, settings)
    engine.dispose()
    assert [tuple(row) for row in rows] == [(7, "rekognition", None)]
    assert figures["faces"] == {"failed": 0}
