"""The object store's hot requests, signed with botocore's signer and sent on the client's HTTP
session, outside the client's per-call pipeline.

Every photo costs three or four single-object requests (a conditional PUT of the original at
ingest, then per job a GET of it and PUTs of its thumbnail and preview). Through the boto3
client each one spent 1.7-2.1 ms of CPU in botocore's per-call pipeline (event hooks, parameter
handling, endpoint rules, response parsing), more than the request itself; that made S3 storage
cost 1.7x local disk (scripts/bench_storage.py). ``SignedRequests`` builds exactly these
requests itself, signs them with botocore's own S3SigV4Auth (the signer the client uses) and
sends them on the client's URLLib3Session, so its connection pool, timeouts, TLS and proxy
settings and pid-keyed lifetime all stay the client's.

It mimics the two client calls it replaces (``put_object``, ``get_object``: the same keyword
arguments and answers) and fails like them: an error answer is a botocore ClientError carrying
the S3 error code (or the status) and the HTTP status, a request that could not be made is the
HTTP session's BotoCoreError, so object_store.translated() maps both as before. Like the client's
standard retry mode with max_attempts=2, a transient failure (connection error, timeout, 5xx,
429, or one of botocore's throttling and transient error codes) is tried once more after a
jittered pause (up to 50 ms, 1 s when throttled). Path-style addressing only: object_store uses
it when storage.endpoint_url names an S3-compatible server, and the client (which resolves AWS
endpoints) otherwise.
"""

from __future__ import annotations

import io
import random
import re
import time
from typing import Any, BinaryIO
from urllib.parse import quote

import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import (
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ResponseStreamingError,
)
from botocore.response import StreamingBody
from botocore.retries.standard import ThrottledRetryableChecker, TransientRetryableChecker

# What botocore's standard retry mode retries (its own lists, so that both paths agree).
_TRANSIENT_STATUS = frozenset(TransientRetryableChecker._TRANSIENT_STATUS_CODES)
_TRANSIENT_CODES = frozenset(TransientRetryableChecker._TRANSIENT_ERROR_CODES)
_THROTTLING_CODES = frozenset(ThrottledRetryableChecker._THROTTLED_ERROR_CODES)
_ATTEMPTS = 2
_PAUSE_SECONDS = 0.05  # botocore's non-throttling base scale
_THROTTLED_PAUSE_SECONDS = 1.0
_ERROR_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_ERROR_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")


class SignedRequests:
    """PutObject and GetObject of single objects at a path-style endpoint."""

    def __init__(self, endpoint_url: str, region: str, credentials: Any, http: Any) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")
        self.region = region
        self.credentials = credentials  # botocore's: refreshable ones are refreshed per request
        self.http = http

    @classmethod
    def of_client(cls, client: Any, credentials: Any) -> SignedRequests | None:
        """One for the client's endpoint, region and HTTP session; None if it has no session."""
        http = getattr(getattr(client, "_endpoint", None), "http_session", None)
        if http is None or not hasattr(http, "send"):
            return None  # a botocore whose client is built otherwise: the client path stays
        return cls(client.meta.endpoint_url, client.meta.region_name, credentials, http)

    def put_object(
        self,
        *,
        Bucket: str,  # noqa: N803 - the client's keyword names
        Key: str,  # noqa: N803
        Body: bytes | BinaryIO,  # noqa: N803
        ContentType: str,  # noqa: N803
        IfNoneMatch: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        headers: dict[str, Any] = {"Content-Type": ContentType}
        if IfNoneMatch is not None:
            headers["If-None-Match"] = IfNoneMatch
        if not isinstance(Body, bytes | bytearray | memoryview):  # an open file, from here on
            start = Body.tell()
            headers["Content-Length"] = str(Body.seek(0, io.SEEK_END) - start)
            Body.seek(start)
            # As the client sends a file: the server may answer (412 for a conditional PUT)
            # before the body is sent. Bytes, which is what botocore's connection looks for.
            headers["Expect"] = b"100-continue"
        else:
            headers["Content-Length"] = str(len(Body))
        response = self._request("PUT", Bucket, Key, headers, Body, "PutObject")
        return {"ETag": response.headers.get("ETag", "")}

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        """The answer as the client gives it: ContentLength, ETag and an unread Body."""
        response = self._request("GET", Bucket, Key, {}, b"", "GetObject")
        size = int(response.headers["Content-Length"])
        return {
            "ContentLength": size,
            "ETag": response.headers.get("ETag", ""),
            "Body": StreamingBody(response.raw, size),
        }

    def _request(
        self,
        method: str,
        bucket: str,
        key: str,
        headers: dict[str, Any],
        body: Any,
        operation: str,
    ) -> Any:
        """The 2xx response, a transient failure tried once more; raises when that fails too.

        A file body is sent from where it stands, again from there on the second attempt.
        """
        start = None if isinstance(body, bytes | bytearray | memoryview) else body.tell()
        for attempt in range(1, _ATTEMPTS + 1):
            if start is not None:
                body.seek(start)
            response = self._send(attempt, method, bucket, key, headers, body, operation)
            if response is not None:
                return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send(
        self,
        attempt: int,
        method: str,
        bucket: str,
        key: str,
        headers: dict[str, Any],
        body: Any,
        operation: str,
    ) -> Any:
        """The 2xx response, or None to try again; raises when this attempt's failure is final."""
        if self.credentials is None:
            raise NoCredentialsError()
        url = f"{self.endpoint_url}/{bucket}/{quote(key, safe='/~')}"
        request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
        # Signed anew for each attempt (its date); over plain HTTP the body's SHA-256 is signed.
        S3SigV4Auth(self.credentials.get_frozen_credentials(), "s3", self.region).add_auth(request)
        prepared = request.prepare()
        prepared.stream_output = method == "GET"
        try:
            response = self.http.send(prepared)
            status = response.status_code
            if status < 300:
                return response
            try:  # the error document (read here for a GET); this also frees the connection
                content = response.content
            except urllib3.exceptions.HTTPError as failure:
                raise ResponseStreamingError(error=failure) from None
        except (ConnectionError, HTTPClientError):
            if attempt == _ATTEMPTS:
                raise
            time.sleep(random.random() * _PAUSE_SECONDS)
            return None
        found = _ERROR_CODE.search(content)
        code = found.group(1).decode() if found else str(status)
        throttled = code in _THROTTLING_CODES or status == 429
        if attempt < _ATTEMPTS and (
            throttled or status in _TRANSIENT_STATUS or code in _TRANSIENT_CODES
        ):
            pause = _THROTTLED_PAUSE_SECONDS if throttled else _PAUSE_SECONDS
            time.sleep(random.random() * pause)
            return None
        message = _ERROR_MESSAGE.search(content)
        error = {"Code": code, "Message": message.group(1).decode() if message else ""}
        raise ClientError(
            {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
        )
