"""S3-compatible object storage behind storage.Store: the same keys, in a bucket under a prefix.

``storage.root = s3://bucket/prefix`` puts thumbnails, previews, uploads and copied originals at
``<prefix>/<key>``. An object appears whole or not at all (S3 has no partial objects), so the
disk store's temporary-file-and-rename dance has no counterpart here: a thumbnail or preview is
encoded into memory (tens of KiB) and sent in one PUT; uploads and originals are sent from a
local file, in parts once larger than ``storage.multipart_mb``.

Errors are translated at this boundary: a missing object is a PermanentError naming it (a job
fails with that reason); a store that cannot be reached, answers late (``storage.timeout_seconds``)
or answers with a server error is errors.StoreUnavailable, a TransientError (workers give the job
back with its attempt and wait for the store, as for a full disk; serve answers 503).
Credentials come from the usual AWS chain; one client per process and settings (clients are
thread-safe, but not shared across a fork, hence the pid in the cache key). With an
``endpoint_url`` (an S3-compatible server) the single-object PUTs and GETs, three or four a
photo, skip the client's per-call pipeline: s3_requests.SignedRequests signs them and sends them
on the same client's HTTP session, answering and failing as the client would.
"""

from __future__ import annotations

import contextlib
import functools
import io
import mimetypes
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from photoctl.errors import PermanentError, StoreUnavailable
from photoctl.imaging import SourceFile
from photoctl.s3_requests import SignedRequests
from photoctl.storage_settings import S3_SCHEME, StorageSettings, split_s3_url

_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_EXISTS_CODES = frozenset({"412", "PreconditionFailed"})  # a conditional PUT found the key taken


class ObjectMissing(PermanentError):
    """The object a photo or file refers to is not in the bucket."""


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """botocore's errors as photoctl's: ObjectMissing or StoreUnavailable, naming ``what``."""
    try:
        yield
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in _MISSING_CODES:
            raise ObjectMissing(f"{what}: object is missing from the bucket") from None
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        raise StoreUnavailable(f"object store refused {what}: {code or status}") from None
    except BotoCoreError as error:
        raise StoreUnavailable(f"object store unreachable for {what}: {error}") from None


@functools.lru_cache(maxsize=8)
def _connection(endpoint_url: str, region: str, timeout: float, pid: int) -> tuple[Any, Any]:
    """(client, what sends single-object PUTs and GETs): s3_requests.SignedRequests on the
    client's HTTP session when the endpoint is an S3-compatible server's, else the client."""
    session = boto3.session.Session()
    client = session.client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or None,
        config=Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            # One quick retry of a blip; anything longer is the job queue's backoff.
            retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            signature_version="s3v4",
            max_pool_connections=32,
            # No CRC of every body on top of what TCP and the content hash already give: a
            # third of a request's CPU (bench_storage.py).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    # AWS itself is left to the client: it knows virtual-hosted addressing, each region's
    # endpoint and the redirect of a bucket in another region.
    signed = SignedRequests.of_client(client, session.get_credentials()) if endpoint_url else None
    return client, signed or client


def _connection_for(storage: StorageSettings) -> tuple[Any, Any]:
    return _connection(storage.endpoint_url, storage.region, storage.timeout_seconds, os.getpid())


def client_for(storage: StorageSettings) -> Any:
    return _connection_for(storage)[0]


def store_for(storage: StorageSettings) -> S3Store:
    bucket, prefix = split_s3_url(storage.root)
    client, objects = _connection_for(storage)
    return S3Store(client, bucket, prefix, multipart_mb=storage.multipart_mb, objects=objects)


def object_url(bucket: str, key: str) -> str:
    return f"{S3_SCHEME}{bucket}/{key}"


class S3Store:
    """Keys under ``prefix`` in ``bucket`` (storage.Store)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str,
        *,
        multipart_mb: int = 16,
        objects: Any = None,
    ) -> None:
        self.client = client
        # Single-object PUTs and GETs (the hot requests) go here: SignedRequests or the client.
        self.objects = objects or client
        self.bucket = bucket
        self.prefix = prefix
        part = multipart_mb * 1024 * 1024
        self.transfer = TransferConfig(
            multipart_threshold=part, multipart_chunksize=part, max_concurrency=4
        )

    def object_key(self, stored_key: str) -> str:
        return f"{self.prefix}/{stored_key}" if self.prefix else stored_key

    def describe(self, stored_key: str) -> str:
        return object_url(self.bucket, self.object_key(stored_key))

    def location(self, stored_key: str) -> bytes:
        return self.describe(stored_key).encode()

    def key_of(self, location: bytes) -> str | None:
        base = self.location("")
        return location[len(base) :].decode() if location.startswith(base) else None

    @contextlib.contextmanager
    def writer(self, stored_key: str) -> Iterator[BinaryIO]:
        buffer = io.BytesIO()
        yield buffer
        with translated(f"writing {self.describe(stored_key)}"):
            self.objects.put_object(
                Bucket=self.bucket,
                Key=self.object_key(stored_key),
                Body=buffer.getvalue(),
                ContentType=_content_type(stored_key),
            )

    @contextlib.contextmanager
    def staging(self, kind: str) -> Iterator[tuple[BinaryIO, Path]]:
        handle, temporary = tempfile.mkstemp(prefix=f"photoctl-{kind}-", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as stream:
                yield stream, Path(temporary)
        finally:
            Path(temporary).unlink(missing_ok=True)

    def publish(self, temporary: Path, stored_key: str) -> bool:
        with open(temporary, "rb") as handle:
            return self.upload_if_absent(handle, os.fstat(handle.fileno()).st_size, stored_key)

    def upload_if_absent(self, source: BinaryIO, size: int, stored_key: str) -> bool:
        """Copy an open file to the key unless an object is there; False when one was.

        Below the multipart size it is one conditional PUT (If-None-Match: *; a server that
        ignores the condition overwrites the same content, since keys are content hashes); a
        larger file is looked up first, then sent in parts, several at once.
        """
        where = f"writing {self.describe(stored_key)}"
        if size < self.transfer.multipart_threshold:
            with translated(where):
                try:
                    self.objects.put_object(
                        Bucket=self.bucket,
                        Key=self.object_key(stored_key),
                        Body=source,
                        ContentType=_content_type(stored_key),
                        IfNoneMatch="*",
                    )
                except ClientError as error:
                    if error.response.get("Error", {}).get("Code") in _EXISTS_CODES:
                        return False
                    raise
            return True
        if self.exists(stored_key):
            return False
        with translated(where):
            self.client.upload_fileobj(
                source,
                self.bucket,
                self.object_key(stored_key),
                ExtraArgs={"ContentType": _content_type(stored_key)},
                Config=self.transfer,
            )
        return True

    def read(self, stored_key: str, *, max_bytes: int, display_name: str) -> bytes:
        return read_object(
            self.objects, self.bucket, self.object_key(stored_key), max_bytes, display_name
        ).data

    def delete(self, stored_key: str) -> None:
        with translated(f"deleting {self.describe(stored_key)}"):
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(stored_key))

    def exists(self, stored_key: str) -> bool:
        try:
            self.stat(stored_key)
        except ObjectMissing:
            return False
        return True

    def stat(self, stored_key: str) -> tuple[int, int]:
        with translated(f"looking up {self.describe(stored_key)}"):
            head = self.client.head_object(Bucket=self.bucket, Key=self.object_key(stored_key))
        return int(head["ContentLength"]), fingerprint(head["ETag"])

    def reachable(self) -> bool:
        """Does the bucket answer now? (A worker paused by an outage asks this to resume.)"""
        try:
            with translated(f"s3://{self.bucket}"):
                self.client.head_bucket(Bucket=self.bucket)
        except StoreUnavailable:
            return False
        return True

    def presigned_url(self, stored_key: str, seconds: int) -> str:
        """A URL that lets its holder GET the object for ``seconds`` (signed here, no request)."""
        with translated(f"signing {self.describe(stored_key)}"):
            url: str = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.object_key(stored_key)},
                ExpiresIn=seconds,
            )
        return url

    def open_stream(self, stored_key: str) -> tuple[Any, int]:
        """(body, size) of the object, for a response streamed through serve."""
        with translated(f"reading {self.describe(stored_key)}"):
            answer = self.client.get_object(Bucket=self.bucket, Key=self.object_key(stored_key))
        return answer["Body"], int(answer["ContentLength"])


def read_object(
    objects: Any, bucket: str, key: str, max_bytes: int, display_name: str
) -> SourceFile:
    """The object's bytes, refused (PermanentError) past ``max_bytes`` before any is read.

    ``objects`` is the client or a SignedRequests: both answer get_object alike.
    """
    where = object_url(bucket, key)
    with translated(f"{display_name} ({where})"):
        answer = objects.get_object(Bucket=bucket, Key=key)
        size = int(answer["ContentLength"])
        if size > max_bytes:
            answer["Body"].close()
            raise PermanentError(
                f"{display_name}: file too large ({size:,} bytes, limit {max_bytes:,})"
            )
        # One buffer, read from the socket as it comes: never a second copy.
        data = answer["Body"].read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PermanentError(f"{display_name}: file too large (grew past {max_bytes:,} bytes)")
    return SourceFile(data=data, size_bytes=len(data), mtime_ns=fingerprint(answer["ETag"]))


def read_url(
    storage: StorageSettings, url: str, *, max_bytes: int, display_name: str
) -> SourceFile:
    """An original stored at ``s3://bucket/key`` (any bucket the credentials can read)."""
    bucket, key = url[len(S3_SCHEME) :].split("/", 1)
    return read_object(_connection_for(storage)[1], bucket, key, max_bytes, display_name)


def fingerprint(etag: str) -> int:
    """An object's ETag as the number a source_files row keeps in ``mtime_ns``.

    For an ``s3://`` source file that column holds this, not a time: an object is unchanged
    when its size and ETag are (ingest skips it without reading, a worker trusts its hash), and
    an object's LastModified (whole seconds, reset by a copy) says less. 60 bits of the hex
    digest (a multipart ETag's "-N" part dropped) fit the BIGINT.
    """
    digits = "".join(c for c in etag.strip('"').split("-")[0] if c in "0123456789abcdef")
    return int(digits[:15] or "0", 16)


def _content_type(stored_key: str) -> str:
    return mimetypes.guess_type(stored_key)[0] or "application/octet-stream"
