"""A photo's file name offered for download: Content-Disposition per RFC 6266 and zip member
names without bidi or control characters, and the security headers of error answers
(issue 20, items 4 and 11).

A real `photoctl serve` over a gallery whose photos carry the names an attacker or a Polish
photographer would give them, on SQLite and PostgreSQL; the S3 presigned redirect against a real
SeaweedFS.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from sqlalchemy import update

from photoctl import config, db
from photoctl.api.download_names import content_disposition
from photoctl.api.object_files import ServedObject
from photoctl.models import Photo
from testkit.photos import jpeg_bytes
from testkit.seaweedfs import SeaweedFS
from tests.support.galleries import SeededGallery, seed_gallery
from tests.support.serve import Server, start_server, stop_server

POLISH = "Łódź.jpg"
SPOOF = "summer\u202egpj.exe.jpg"  # shows as "summergpj.exe" reversed: "summerexe.jpg"
SCRIPT = '"><script>alert(1).jpg'
NAMES = [POLISH, SPOOF, SCRIPT]
# Every byte of a header a client reads as the file's name, ASCII only.
EXPECTED = {
    POLISH: (
        "attachment; filename=\"_odz.jpg\"; filename*=UTF-8''%C5%81%C3%B3d%C5%BA.jpg",
        "Łódź.jpg",
    ),
    SPOOF: ("attachment; filename=\"summergpj.exe.jpg\"; filename*=UTF-8''summergpj.exe.jpg", None),
    SCRIPT: (
        'attachment; filename="_><script>alert(1).jpg"; '
        "filename*=UTF-8''%22%3E%3Cscript%3Ealert%281%29.jpg",
        '"><script>alert(1).jpg',
    ),
}
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


@pytest.fixture
def seeded(tmp_path: Path, settings, engine) -> SeededGallery:
    return seed_gallery(settings, engine, tmp_path / "event", NAMES)


@pytest.fixture
def server(tmp_path: Path, db_url: str, seeded: SeededGallery) -> Iterator[Server]:
    running = start_server(tmp_path, db_url)
    yield running
    stop_server(running)


def filename_a_client_reads(header: str) -> str:
    """What a browser takes for the file's name: filename*, decoded (RFC 6266 4.3)."""
    found = re.search(r"; filename\*=UTF-8''([^;\s]+)$", header)
    assert found is not None, header
    return unquote(found.group(1), errors="strict")


def test_originals_are_offered_under_their_name_percent_encoded_with_an_ascii_fallback(
    server: Server, seeded: SeededGallery
) -> None:
    with server.client() as client:
        for name in NAMES:
            photo_id = seeded.photo_ids[name]
            answer = client.get(f"/g/{seeded.token}/photos/{photo_id}/original")
            assert answer.status_code == 200, (name, answer.text)
            header = answer.headers["content-disposition"]
            expected, shown = EXPECTED[name]
            assert header == expected
            assert filename_a_client_reads(header) == (shown or "summergpj.exe.jpg")
            assert "\u202e" not in header and "<" not in header.split("filename*=")[1]
            assert answer.content.startswith(b"\xff\xd8")


def test_zip_members_drop_bidi_and_control_characters(
    server: Server, seeded: SeededGallery
) -> None:
    with server.client() as client:
        answer = client.get(f"/g/{seeded.token}/zip")
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == (
        "attachment; filename=\"gala-2026-photos.zip\"; filename*=UTF-8''gala-2026-photos.zip"
    )
    names = zipfile.ZipFile(io.BytesIO(answer.content)).namelist()
    assert sorted(name.split("-", 1)[1] for name in names) == sorted(
        [POLISH, "summergpj.exe.jpg", SCRIPT]
    )
    bidi = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F)}
    assert not any(set(name) & bidi for name in names)


def test_the_name_function_drops_every_bidi_control_and_control_character() -> None:
    bidi = "".join(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F))
    header = content_disposition(f"a{bidi}\x00\x1b\x7f\r\nb\udcff.jpg")
    assert header == ("attachment; filename=\"ab_.jpg\"; filename*=UTF-8''ab%EF%BF%BD.jpg"), (
        "controls dropped, an undecodable byte shown as U+FFFD"
    )
    assert content_disposition("\u202e") == (
        "attachment; filename=\"download\"; filename*=UTF-8''download"
    )


def test_error_answers_carry_the_pages_security_headers(
    server: Server, seeded: SeededGallery, engine
) -> None:
    # A photo row whose path cannot be opened at all (a NUL inside): an unexpected error, 500.
    broken = seeded.photo_ids[POLISH]
    with db.write(engine) as conn:
        conn.execute(update(Photo).where(Photo.id == broken).values(source_path=b"/tmp/a\x00b"))
    # uvicorn closes the connection after an exception (the 500 is sent first): a new one for it.
    with server.client() as client:
        answers = [(500, client.get(f"/g/{seeded.token}/photos/{broken}/original"))]
    with server.client() as client:
        answers += [
            (404, client.get(f"/g/{seeded.token}/photos/999999/thumb")),
            (404, client.get("/no/such/page")),
            (401, client.get("/api/photos/1/thumb", headers={"Authorization": "Bearer x"})),
            (405, client.delete("/healthz")),
            (422, client.get(f"/api/g/{seeded.token}/photos/not-a-number/thumb")),
        ]
    for status, answer in answers:
        assert answer.status_code == status, (status, answer.text)
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name) == value, (status, name, answer.headers)
        policy = answer.headers.get("content-security-policy", "")
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, status


@pytest.mark.xdist_group("seaweedfs")
def test_originals_in_a_bucket_redirect_to_the_same_header_under_their_own_name(
    tmp_path: Path, db_url: str, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    """Ingest copies originals into the bucket under their hash; the presigned URL serve
    redirects to has the store answer with the photo's own name, in the same header."""
    settings = config.load(
        data_dir=str(tmp_path / "data"),
        environ={},
        overrides={
            "database.url": db_url,
            "storage.root": f"s3://{s3_bucket}/photos",
            "storage.endpoint_url": seaweedfs.endpoint_url,
        },
    )
    engine = db.make_engine(settings)
    try:
        seeded = seed_gallery(settings, engine, tmp_path / "event", NAMES)
    finally:
        engine.dispose()
    server = start_server(
        tmp_path,
        db_url,
        PHOTOCTL_STORAGE_ROOT=f"s3://{s3_bucket}/photos",
        PHOTOCTL_STORAGE_ENDPOINT_URL=seaweedfs.endpoint_url,
    )
    try:
        with server.client() as client:
            for name in NAMES:
                photo_id = seeded.photo_ids[name]
                answer = client.get(
                    f"/g/{seeded.token}/photos/{photo_id}/original", follow_redirects=True
                )
                assert answer.status_code == 200, (name, answer.text)
                assert answer.history and answer.history[0].status_code == 302
                assert str(answer.url).startswith(seaweedfs.endpoint_url)
                assert answer.headers["content-disposition"] == EXPECTED[name][0]
    finally:
        stop_server(server)


@pytest.mark.xdist_group("seaweedfs")
def test_the_presigned_redirect_asks_the_store_for_the_same_header(
    seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    client = seaweedfs.client()
    client.put_object(Bucket=s3_bucket, Key="originals/ab/abc.jpg", Body=jpeg_bytes())
    served = ServedObject(client, s3_bucket, "originals/ab/abc.jpg", presign_seconds=60)
    for name in NAMES:
        redirect = served.response(download_name=name)
        assert redirect.status_code == 302
        answer = httpx.get(redirect.headers["location"], timeout=30)
        assert answer.status_code == 200
        assert answer.headers["content-disposition"] == EXPECTED[name][0]
