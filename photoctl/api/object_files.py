"""A photo's image in an object store, for a response: a redirect to a presigned URL, or its
bytes streamed through serve (``storage.serve``).

The caller has authorized the request already (photo_files.py is reached only after the same
checks as a file on disk). A redirect costs serve no request to the store (the URL is signed
locally) and lets the store send the bytes; the URL works for ``storage.presign_seconds``, so the
redirect itself is never cached longer than that. The zip of a gallery streams, whatever the
setting. The object's name is its key, written by photoctl: there is no symlink to guard against.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from typing import Any

from fastapi.responses import RedirectResponse, Response, StreamingResponse

from photoctl.api.download_names import content_disposition
from photoctl.object_store import translated

_CHUNK_BYTES = 256 * 1024


class ServedObject:
    """An object to answer with; ``size`` is known once ``open`` has started the GET."""

    def __init__(
        self, client: Any, bucket: str, key: str, *, presign_seconds: int | None = None
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.name = key.rsplit("/", 1)[-1]
        self.presign_seconds = presign_seconds  # None: stream
        self.size = 0
        self._body: Any = None

    def open(self) -> ServedObject:
        """Start the GET (ObjectMissing, StoreUnavailable): its size is then known."""
        with translated(f"reading s3://{self.bucket}/{self.key}"):
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key)
        self._body, self.size = answer["Body"], int(answer["ContentLength"])
        return self

    def response(self, media_type: str | None = None, download_name: str | None = None) -> Response:
        if self.presign_seconds is not None:
            return self._redirect(download_name)
        if self._body is None:
            self.open()
        media_type = media_type or mimetypes.guess_type(self.name)[0] or "application/octet-stream"
        headers = {"Content-Length": str(self.size)}
        if download_name:
            headers["Content-Disposition"] = content_disposition(download_name)
        return StreamingResponse(self.chunks(), media_type=media_type, headers=headers)

    def _redirect(self, download_name: str | None) -> RedirectResponse:
        params = {"Bucket": self.bucket, "Key": self.key}
        if download_name:
            params["ResponseContentDisposition"] = content_disposition(download_name)
        seconds = self.presign_seconds or 1
        with translated(f"signing s3://{self.bucket}/{self.key}"):
            url = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds)
        # A browser may reuse the redirect while the URL is valid, no longer.
        cache = f"private, max-age={max(0, seconds // 2)}"
        return RedirectResponse(url, status_code=302, headers={"Cache-Control": cache})

    def chunks(self) -> Iterator[bytes]:
        if self._body is None:
            self.open()
        try:
            with translated(f"reading s3://{self.bucket}/{self.key}"):
                yield from self._body.iter_chunks(_CHUNK_BYTES)
        finally:
            self._body.close()
