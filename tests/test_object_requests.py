"""The hot object requests sent outside botocore's client pipeline (photoctl/s3_requests.py).

Single-object PUTs and GETs to an S3-compatible endpoint are signed with botocore's S3SigV4Auth
and sent on the client's HTTP session. They must be accepted as the client's would be and
fail as the client's calls do, against a real SeaweedFS: refused credentials are the store being
unavailable, a missing object is named, a blip is retried once, refreshed credentials are used.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import RefreshableCredentials

from photoctl import config
from photoctl.errors import PermanentError, StoreUnavailable
from photoctl.object_store import ObjectMissing, S3Store, store_for
from photoctl.s3_requests import SignedRequests
from testkit.seaweedfs import ACCESS_KEY, SECRET_KEY, SeaweedFS
from testkit.tcp_proxy import TcpProxy

# One SeaweedFS for all of them: the S3 tests share an xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("seaweedfs")


def store_at(tmp_path: Path, endpoint: str, bucket: str) -> S3Store:
    settings = config.load(
        data_dir=str(tmp_path / "data"),
        environ={},
        overrides={
            "storage.root": f"s3://{bucket}/p",
            "storage.endpoint_url": endpoint,
            "storage.timeout_seconds": 2.0,
        },
    )
    return store_for(settings.storage)


@pytest.fixture
def store(tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str) -> S3Store:
    return store_at(tmp_path, seaweedfs.endpoint_url, s3_bucket)


@pytest.fixture
def proxy(seaweedfs: SeaweedFS) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", seaweedfs.ports["s3.port"]) as forwarder:
        yield forwarder


def write(store: S3Store, stored_key: str, content: bytes) -> None:
    with store.writer(stored_key) as stream:
        stream.write(content)


def test_store_for_an_s3_compatible_endpoint_sends_single_object_requests_signed_here(
    store: S3Store,
) -> None:
    assert isinstance(store.objects, SignedRequests)
    assert store.objects.http is store.client._endpoint.http_session  # one pool per process


def test_objects_round_trip_with_any_key_and_their_content_type(
    store: S3Store, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    stored_key = "uploads/ab/odd name é+%.jpg"  # quoted in the URL as the signature says
    write(store, stored_key, b"preview bytes")

    head = seaweedfs.client().head_object(Bucket=s3_bucket, Key=f"p/{stored_key}")
    assert head["ContentType"] == "image/jpeg"
    assert store.read(stored_key, max_bytes=100, display_name="x") == b"preview bytes"


def test_a_conditional_put_stores_a_file_once_and_then_says_it_was_there(
    store: S3Store, tmp_path: Path
) -> None:
    original = tmp_path / "IMG_1.jpg"
    original.write_bytes(b"original " * 1000)

    first = store.publish(original, "originals/cd/cd12.jpg")
    second = store.publish(original, "originals/cd/cd12.jpg")

    assert (first, second) == (True, False)
    assert store.read("originals/cd/cd12.jpg", max_bytes=10**6, display_name="x") == (
        b"original " * 1000
    )


def test_a_missing_object_is_a_permanent_error_naming_it(store: S3Store, s3_bucket: str) -> None:
    with pytest.raises(ObjectMissing) as missing:
        store.read("originals/ef/ef34.jpg", max_bytes=100, display_name="IMG_9.jpg")

    assert f"s3://{s3_bucket}/p/originals/ef/ef34.jpg" in str(missing.value)
    assert "missing" in str(missing.value)


def test_an_object_over_the_limit_is_refused_from_its_length_and_the_store_goes_on(
    store: S3Store,
) -> None:
    write(store, "originals/aa/big.jpg", b"x" * 5000)

    with pytest.raises(PermanentError, match=r"IMG_2\.jpg: file too large \(5,000 bytes"):
        store.read("originals/aa/big.jpg", max_bytes=4999, display_name="IMG_2.jpg")
    assert store.read("originals/aa/big.jpg", max_bytes=5000, display_name="x") == b"x" * 5000


def test_refused_credentials_are_the_store_being_unavailable_and_refreshed_ones_are_used(
    seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    secret = {"now": "not-the-secret"}  # what the credential source hands out
    refreshes: list[str] = []

    def refresh() -> dict[str, Any]:
        refreshes.append(secret["now"])
        # Always inside botocore's mandatory refresh window: every request asks again.
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)
        return {
            "access_key": ACCESS_KEY,
            "secret_key": secret["now"],
            "token": None,
            "expiry_time": expiry.isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    client = seaweedfs.client()
    signed = SignedRequests.of_client(client, credentials)
    store = S3Store(client, s3_bucket, "p", objects=signed)

    with pytest.raises(StoreUnavailable) as refused:
        write(store, "thumbs/aa/aa1.jpg", b"thumb")
    secret["now"] = SECRET_KEY
    write(store, "thumbs/aa/aa1.jpg", b"thumb")

    assert "refused writing" in str(refused.value)
    assert f"s3://{s3_bucket}/p/thumbs/aa/aa1.jpg" in str(refused.value)
    assert "SignatureDoesNotMatch" in str(refused.value)  # a 403
    assert refreshes[-1] == SECRET_KEY and len(refreshes) >= 3  # asked again per request
    assert seaweedfs.client().get_object(Bucket=s3_bucket, Key="p/thumbs/aa/aa1.jpg")[
        "Body"
    ].read() == (b"thumb")


def test_a_blip_is_retried_once_and_a_second_failure_is_the_store_being_unavailable(
    tmp_path: Path, proxy: TcpProxy, s3_bucket: str
) -> None:
    store = store_at(tmp_path, proxy.url, s3_bucket)
    write(store, "thumbs/bb/bb1.jpg", b"first")  # a pooled connection to cut

    proxy.refuse_next(1)
    write(store, "thumbs/bb/bb2.jpg", b"second")
    proxy.refuse_next(1)
    read = store.read("thumbs/bb/bb2.jpg", max_bytes=100, display_name="x")
    assert (proxy.refused, read) == (2, b"second")

    proxy.refuse_next(2)
    with pytest.raises(StoreUnavailable, match="unreachable for writing s3://"):
        write(store, "thumbs/bb/bb3.jpg", b"third")
    proxy.refuse_next(2)
    with pytest.raises(StoreUnavailable, match=r"unreachable for x \(s3://"):
        store.read("thumbs/bb/bb2.jpg", max_bytes=100, display_name="x")
    assert proxy.refused == 6


def test_a_file_body_is_sent_whole_again_on_a_retry(
    tmp_path: Path, proxy: TcpProxy, s3_bucket: str
) -> None:
    store = store_at(tmp_path, proxy.url, s3_bucket)
    write(store, "thumbs/cc/cc1.jpg", b"warm")
    content = bytes(range(256)) * 400

    proxy.refuse_next(1)
    assert store.upload_if_absent(io.BytesIO(content), len(content), "uploads/cc/cc2.jpg")

    assert proxy.refused == 1
    assert store.read("uploads/cc/cc2.jpg", max_bytes=10**6, display_name="x") == content
