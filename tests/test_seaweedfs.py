"""The test suite's S3 server (testkit/seaweedfs.py) is a real one: boto3 works against it."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from testkit.seaweedfs import SeaweedFS

# One SeaweedFS for all of them: the S3 tests share an xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("seaweedfs")


def test_boto3_puts_gets_lists_deletes_and_presigns_against_seaweedfs(
    seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    client = seaweedfs.client()
    client.put_object(Bucket=s3_bucket, Key="thumbs/ab/ab12.jpg", Body=b"thumb bytes")
    client.put_object(Bucket=s3_bucket, Key="previews/ab/ab12.jpg", Body=b"preview bytes")

    got = client.get_object(Bucket=s3_bucket, Key="thumbs/ab/ab12.jpg")["Body"].read()
    listed = client.list_objects_v2(Bucket=s3_bucket, Prefix="thumbs/")
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": s3_bucket, "Key": "previews/ab/ab12.jpg"}, ExpiresIn=60
    )
    with urllib.request.urlopen(url, timeout=10) as answer:
        presigned = answer.read()
    client.delete_object(Bucket=s3_bucket, Key="thumbs/ab/ab12.jpg")

    assert got == b"thumb bytes"
    assert [item["Key"] for item in listed["Contents"]] == ["thumbs/ab/ab12.jpg"]
    assert presigned == b"preview bytes"
    with pytest.raises(ClientError) as gone:
        client.head_object(Bucket=s3_bucket, Key="thumbs/ab/ab12.jpg")
    assert gone.value.response["Error"]["Code"] in ("404", "NoSuchKey")


def test_a_url_presigned_with_a_wrong_secret_is_refused(
    seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    seaweedfs.client().put_object(Bucket=s3_bucket, Key="secret.jpg", Body=b"x")
    forged = seaweedfs.client(secret_key="not-the-secret").generate_presigned_url(
        "get_object", Params={"Bucket": s3_bucket, "Key": "secret.jpg"}, ExpiresIn=60
    )

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=10)

    assert refused.value.code == 403
