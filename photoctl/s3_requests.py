"""The object store's hot requests, signed here and sent on the client's own HTTP session.

Every photo costs three or four single-object requests (a conditional PUT of the original at
ingest, then per job a GET of it and PUTs of its thumbnail and preview). Through the boto3
client each one spent 1.7-2.1 ms of CPU in botocore's per-call pipeline (event hooks, parameter
handling, endpoint rules, signing, response parsing), more than the request itself; that made S3
storage cost 1.7x local disk (scripts/bench_storage.py). ``SignedRequests`` sends exactly these
requests with SigV4 computed here (the algorithm of botocore's S3SigV4Auth, checked against it in
tests/test_object_requests.py) on the client's URLLib3Session, so its connection pool, timeouts,
TLS and proxy settings and pid-keyed lifetime all stay the client's.

It mimics the two client calls it replaces (``put_object``, ``get_object``: the same keyword
arguments and answers) and fails like them: an error answer is a botocore ClientError carrying
the S3 error code (or the status) and the HTTP status, a request that could not be made is the
HTTP session's BotoCoreError, so object_store.translated() maps both as before. Like the client's
standard retry mode with max_attempts=2, a transient failure (connection error, timeout, 5xx,
429, throttling or RequestTimeout codes) is tried once more after a jittered pause (up to 50 ms,
1 s when throttled). Path-style addressing only: object_store uses it when storage.endpoint_url
names an S3-compatible server, and the client (which resolves AWS endpoints) otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
import time
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

import urllib3
from botocore.awsrequest import AWSPreparedRequest
from botocore.exceptions import (
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ResponseStreamingError,
)
from botocore.response import StreamingBody

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_HASH_CHUNK_BYTES = 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
# botocore.retries.standard's transient and throttling conditions.
_TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
_TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"}
)
_THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
_ATTEMPTS = 2
_PAUSE_SECONDS = 0.05  # botocore's non-throttling base scale
_THROTTLED_PAUSE_SECONDS = 1.0
# Sent but never signed (botocore's SIGNED_HEADERS_BLACKLIST): a proxy may change them.
_UNSIGNED = frozenset({"expect", "transfer-encoding", "user-agent", "x-amzn-trace-id"})
_ERROR_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_ERROR_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")


class SignedRequests:
    """PutObject and GetObject of single objects at a path-style endpoint."""

    def __init__(self, endpoint_url: str, region: str, credentials: Any, http: Any) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")
        self.host = host_header(endpoint_url)
        self.region = region
        self.credentials = credentials  # botocore's: refreshable ones are refreshed per request
        self.http = http
        self._signing_key = ("", "", b"")  # (secret, scope, key): derived once a day

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
        if isinstance(Body, bytes | bytearray | memoryview):
            start = None
            payload = hashlib.sha256(Body).hexdigest()
            size = len(Body)
        else:  # an open file, sent from where it stands (again on a retry)
            start = Body.tell()
            digest = hashlib.sha256()
            while chunk := Body.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
            payload = digest.hexdigest()
            size = Body.tell() - start
            # As the client sends a file: the server may answer (412 for a conditional PUT)
            # before the body is sent. Bytes, which is what botocore's connection looks for.
            headers["Expect"] = b"100-continue"
        headers["Content-Length"] = str(size)
        for attempt in range(1, _ATTEMPTS + 1):
            if start is not None:
                Body.seek(start)  # type: ignore[union-attr]
            response = self._send(attempt, "PUT", Bucket, Key, headers, Body, payload, "PutObject")
            if response is not None:
                return {"ETag": response.headers.get("ETag", "")}
        raise AssertionError("unreachable: the last attempt returns or raises")

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        """The answer as the client gives it: ContentLength, ETag and an unread Body."""
        for attempt in range(1, _ATTEMPTS + 1):
            response = self._send(attempt, "GET", Bucket, Key, {}, b"", _EMPTY_SHA256, "GetObject")
            if response is not None:
                size = int(response.headers["Content-Length"])
                return {
                    "ContentLength": size,
                    "ETag": response.headers.get("ETag", ""),
                    "Body": StreamingBody(response.raw, size),
                }
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send(
        self,
        attempt: int,
        method: str,
        bucket: str,
        key: str,
        headers: dict[str, Any],
        body: Any,
        payload: str,
        operation: str,
    ) -> Any:
        """The 2xx response, or None to try again; raises when this attempt's failure is final."""
        path = f"/{bucket}/{quote(key, safe='/~')}"
        signed = {**headers, **self.sign(method, path, headers, payload)}
        request = AWSPreparedRequest(
            method, self.endpoint_url + path, signed, body, method == "GET", context={}
        )
        try:
            response = self.http.send(request)
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

    def sign(
        self, method: str, path: str, headers: dict[str, Any], payload: str, now: float = 0.0
    ) -> dict[str, str]:
        """The SigV4 headers (X-Amz-*, Authorization) for a request with these headers.

        ``path`` is already quoted (S3 signs it as sent, without normalizing it); the headers
        given are signed (but those a proxy may change), with the host and the X-Amz ones.
        """
        if self.credentials is None:
            raise NoCredentialsError()
        frozen = self.credentials.get_frozen_credentials()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now or None))
        added = {"X-Amz-Date": stamp, "X-Amz-Content-SHA256": payload}
        if frozen.token:
            added["X-Amz-Security-Token"] = frozen.token
        signed = {
            name.lower(): " ".join(value.split())
            for name, value in headers.items()
            if name.lower() not in _UNSIGNED
        }
        signed.update((name.lower(), value) for name, value in added.items())
        signed["host"] = self.host
        names = sorted(signed)
        signed_names = ";".join(names)
        canonical = "\n".join(
            (
                method,
                path,
                "",  # no query string
                "".join(f"{name}:{signed[name]}\n" for name in names),
                signed_names,
                payload,
            )
        )
        scope = f"{stamp[:8]}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256",
                stamp,
                scope,
                hashlib.sha256(canonical.encode()).hexdigest(),
            )
        )
        signature = hmac.new(
            self._key(frozen.secret_key, scope), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        added["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )
        return added

    def _key(self, secret: str, scope: str) -> bytes:
        """The signing key of this secret and date; four HMACs, so kept until either changes."""
        cached_secret, cached_scope, key = self._signing_key
        if cached_secret == secret and cached_scope == scope:
            return key
        key = f"AWS4{secret}".encode()
        for part in scope.split("/"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self._signing_key = (secret, scope, key)
        return key


def host_header(endpoint_url: str) -> str:
    """The Host an HTTP client sends to this endpoint (botocore signs the same)."""
    parts = urlsplit(endpoint_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host
