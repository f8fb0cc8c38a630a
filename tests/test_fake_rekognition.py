"""Tests for the fake Rekognition endpoint, driven through real boto3 clients."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from PIL import Image

from testkit.fake_rekognition import FakeRekognition, detect_faces, make_face_image

RED = (255, 0, 0)
BLUE = (0, 0, 255)
GREEN = (0, 204, 0)
DATA = Path(__file__).with_name("data")
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture
def client(fake: FakeRekognition) -> Any:
    return fake.client(NO_RETRY)


def test_create_collection_twice(fake: FakeRekognition, client: Any) -> None:
    created = client.create_collection(CollectionId="event-1")
    assert created["StatusCode"] == 200
    with pytest.raises(ClientError) as excinfo:
        client.create_collection(CollectionId="event-1")
    assert error_code(excinfo) == "ResourceAlreadyExistsException"
    # botocore maps modelled codes onto the client's exception classes too.
    assert isinstance(excinfo.value, client.exceptions.ResourceAlreadyExistsException)
    assert excinfo.value.response["ResponseMetadata"]["RequestId"]
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    described = client.describe_collection(CollectionId="event-1")
    assert described["FaceCount"] == 0
    assert client.list_collections()["CollectionIds"] == ["event-1"]
    client.delete_collection(CollectionId="event-1")
    with pytest.raises(ClientError) as excinfo:
        client.describe_collection(CollectionId="event-1")
    assert error_code(excinfo) == "ResourceNotFoundException"


def test_index_and_search(client: Any) -> None:
    client.create_collection(CollectionId="c")
    first = client.index_faces(
        CollectionId="c", Image={"Bytes": make_face_image([RED, BLUE])}, ExternalImageId="photo-1"
    )
    assert len(first["FaceRecords"]) == 2
    for record in first["FaceRecords"]:
        box = record["Face"]["BoundingBox"]
        assert 0 < box["Width"] < 1 and 0 < box["Height"] < 1
        assert 0 <= box["Left"] < 1 and 0 <= box["Top"] < 1
        assert record["Face"]["ExternalImageId"] == "photo-1"
        assert record["FaceDetail"]["BoundingBox"] == box
    red_in_first = next(
        r["Face"]["FaceId"] for r in first["FaceRecords"] if r["Face"]["BoundingBox"]["Left"] < 0.5
    )

    second = client.index_faces(
        CollectionId="c", Image={"Bytes": make_face_image([GREEN, RED])}, ExternalImageId="photo-2"
    )
    red_in_second = next(
        r["Face"]["FaceId"] for r in second["FaceRecords"] if r["Face"]["BoundingBox"]["Left"] > 0.5
    )

    found = client.search_faces(CollectionId="c", FaceId=red_in_second, FaceMatchThreshold=90)
    assert found["SearchedFaceId"] == red_in_second
    assert [m["Face"]["FaceId"] for m in found["FaceMatches"]] == [red_in_first]
    assert found["FaceMatches"][0]["Similarity"] > 99
    assert found["FaceMatches"][0]["Face"]["ExternalImageId"] == "photo-1"
    # A threshold above the fake's similarity leaves nothing.
    strict = client.search_faces(CollectionId="c", FaceId=red_in_second, FaceMatchThreshold=99.9)
    assert strict["FaceMatches"] == []

    # The largest face of a selfie is the one searched.
    selfie = make_face_image([BLUE, RED], sides=[60, 200])
    by_image = client.search_faces_by_image(CollectionId="c", Image={"Bytes": selfie})
    assert by_image["SearchedFaceConfidence"] > 90
    assert by_image["SearchedFaceBoundingBox"]["Width"] > 0.2
    assert {m["Face"]["FaceId"] for m in by_image["FaceMatches"]} == {red_in_first, red_in_second}


def test_detection_survives_reencoding_and_ignores_photos() -> None:
    original = make_face_image([RED, BLUE, (102, 51, 204)])
    smaller = Image.open(io.BytesIO(original)).resize((400, 300), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    smaller.save(out, "JPEG", quality=70)  # default 4:2:0 chroma, like most encoders
    assert {f.colour for f in detect_faces(out.getvalue())} == {
        f.colour for f in detect_faces(original)
    }

    rng = np.random.default_rng(1)
    gradient = np.linspace(0, 255, 640)[None, :, None] * np.ones((480, 1, 3))
    photo = (gradient + rng.normal(0, 20, (480, 640, 3))).clip(0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(photo).save(out, "JPEG", quality=90)
    assert detect_faces(out.getvalue()) == []


@pytest.mark.parametrize("name", ["obama_1.jpg", "biden.jpg"])
def test_real_photos_have_no_faces(client: Any, name: str) -> None:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    client.create_collection(CollectionId="c")
    indexed = client.index_faces(CollectionId="c", Image={"Bytes": path.read_bytes()})
    assert indexed["FaceRecords"] == [] and indexed["UnindexedFaces"] == []


def test_images_without_faces_and_bad_images(client: Any) -> None:
    client.create_collection(CollectionId="c")
    blank = client.index_faces(CollectionId="c", Image={"Bytes": make_face_image([])})
    assert blank["FaceRecords"] == []
    with pytest.raises(ClientError) as excinfo:
        client.search_faces_by_image(CollectionId="c", Image={"Bytes": make_face_image([])})
    assert error_code(excinfo) == "InvalidParameterException"
    with pytest.raises(ClientError) as excinfo:
        client.index_faces(CollectionId="c", Image={"Bytes": b"definitely not a jpeg"})
    assert error_code(excinfo) == "InvalidImageFormatException"
    with pytest.raises(ClientError) as excinfo:
        client.index_faces(CollectionId="c", Image={"Bytes": b"\xff" * (5 * 1024 * 1024 + 1)})
    assert error_code(excinfo) == "ImageTooLargeException"
    with pytest.raises(ClientError) as excinfo:
        client.index_faces(CollectionId="missing", Image={"Bytes": make_face_image([RED])})
    assert error_code(excinfo) == "ResourceNotFoundException"


def test_delete_faces_and_list_paging(fake: FakeRekognition, client: Any) -> None:
    client.create_collection(CollectionId="c")
    colours = [RED, BLUE, GREEN, (204, 204, 0), (153, 0, 153)]
    indexed = client.index_faces(CollectionId="c", Image={"Bytes": make_face_image(colours)})
    face_ids = [r["Face"]["FaceId"] for r in indexed["FaceRecords"]]
    assert len(face_ids) == 5

    pages: list[list[str]] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"CollectionId": "c", "MaxResults": 2}
        if token:
            kwargs["NextToken"] = token
        page = client.list_faces(**kwargs)
        pages.append([f["FaceId"] for f in page["Faces"]])
        token = page.get("NextToken")
        if not token:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(sum(pages, [])) == sorted(face_ids)

    deleted = client.delete_faces(
        CollectionId="c", FaceIds=[face_ids[0], face_ids[3], "00000000-0000-0000-0000-000000000000"]
    )
    assert sorted(deleted["DeletedFaces"]) == sorted([face_ids[0], face_ids[3]])
    assert deleted["UnsuccessfulFaceDeletions"][0]["Reasons"] == ["FACE_NOT_FOUND"]
    paginator = client.get_paginator("list_faces")
    remaining = [
        f["FaceId"]
        for page in paginator.paginate(CollectionId="c", PaginationConfig={"PageSize": 2})
        for f in page["Faces"]
    ]
    assert sorted(remaining) == sorted(face_ids[1:3] + face_ids[4:])
    assert client.describe_collection(CollectionId="c")["FaceCount"] == 3
    assert {f["Colour"] for f in fake.stored_faces("c")} == {BLUE, GREEN, (153, 0, 153)}


def test_throttling_above_quota(fake: FakeRekognition, client: Any) -> None:
    fake.tps_quota = 3
    outcomes: list[str] = []
    for _ in range(6):
        try:
            client.list_collections()
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
    # Six calls take far less than a second, so only the first three fit the window.
    assert outcomes == ["ok"] * 3 + ["ThrottlingException"] * 3
    assert fake.throttled_count == 3 and fake.accepted_count == 3
    assert fake.max_calls_in_any_window(1.0) == 3
    assert [r.throttled for r in fake.calls("ListCollections")] == [False] * 3 + [True] * 3
    assert len(fake.calls(throttled=True)) == 3


def test_injected_failures_and_retry_counting(fake: FakeRekognition) -> None:
    no_retry = fake.client(NO_RETRY)
    fake.throttle_next(1)
    with pytest.raises(ClientError) as excinfo:
        no_retry.list_collections()
    assert error_code(excinfo) == "ThrottlingException"
    fake.fail_next(1, "ProvisionedThroughputExceededException")
    with pytest.raises(ClientError) as excinfo:
        no_retry.list_collections()
    assert error_code(excinfo) == "ProvisionedThroughputExceededException"
    assert fake.throttled_count == 2

    # Surprise: the Config key `max_attempts` counts *retries*, so 1 means two attempts.
    # (A server error is used because its backoff is 50 ms, not up to 1 s as for throttling.)
    fake.reset_stats()
    one_retry = fake.client(Config(retries={"max_attempts": 1, "mode": "standard"}))
    fake.fail_next(1, "InternalServerError")
    assert one_retry.list_collections()["CollectionIds"] == []
    assert len(fake.calls("ListCollections")) == 2


def test_max_in_flight_with_latency(fake: FakeRekognition) -> None:
    fake.latency_seconds = 0.2
    # One client is thread-safe; its pool must be big enough for all threads at once.
    client = fake.client(Config(max_pool_connections=16, retries={"total_max_attempts": 1}))
    client.list_collections()  # warm up outside the timed burst
    fake.reset_stats()
    workers = 8
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            barrier.wait()
            client.list_collections()
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fake.max_in_flight == workers
    assert fake.in_flight == 0
    assert all(r.end - r.start >= 0.2 for r in fake.records)


def test_runs_as_a_process() -> None:
    script = Path(__file__).parent.parent / "testkit" / "fake_rekognition.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--tps", "5", "--latency", "0.0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        client = boto3.client(
            "rekognition",
            endpoint_url=url,
            region_name="eu-west-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=NO_RETRY,
        )
        client.create_collection(CollectionId="c")
        with urllib.request.urlopen(f"{url}/_fake/stats", timeout=5) as resp:
            stats = json.load(resp)
        assert stats["accepted"] == 1 and stats["tps_quota"] == 5
        assert len(stats["records"]) == 1
        # A harness polling while calls are made asks for the counters only.
        with urllib.request.urlopen(f"{url}/_fake/stats?records=0", timeout=5) as resp:
            brief = json.load(resp)
        assert brief["accepted"] == 1 and "records" not in brief
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert json.loads(out.strip().splitlines()[-1])["accepted"] == 1
