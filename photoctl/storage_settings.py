"""The [storage] settings: where thumbnails, previews, uploads and copied originals live.

``root`` is a local folder (the default, ``<data dir>/storage``) or ``s3://bucket/prefix`` for
an S3-compatible object store (storage.py's LocalStore or object_store.py's S3Store). For S3,
credentials come from the usual AWS chain (environment, ~/.aws, an instance role); ``endpoint_url``
points at an S3-compatible server (SeaweedFS, MinIO, Ceph) instead of AWS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from photoctl.config_sources import setting_key as _key
from photoctl.errors import ConfigError

S3_SCHEME = "s3://"
SERVE_MODES = ("redirect", "stream")
# S3's bucket naming rules, loosely (S3-compatible servers accept a superset).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class StorageSettings:
    root: str = _key(
        "",
        "Where thumbnails, previews and uploads are written: a folder (empty means "
        "<data dir>/storage), or s3://bucket/prefix for S3-compatible object storage (then "
        "`ingest DIR` also copies originals there, so a worker on any machine can read them)",
    )
    thumb_px: int = _key(
        320, "Side of the square thumbnails (cut around the faces found)", minimum=16
    )
    preview_px: int = _key(1600, "Longest side of previews", minimum=64)
    jpeg_quality: int = _key(85, "JPEG quality of thumbnails and previews", minimum=1)
    endpoint_url: str = _key(
        "",
        "S3 storage: the endpoint of an S3-compatible server (e.g. http://seaweedfs:8333); "
        "empty means AWS S3. Credentials come from the usual AWS chain (AWS_ACCESS_KEY_ID, "
        "~/.aws, an instance role)",
    )
    region: str = _key("", "S3 storage: the region; empty means the AWS configuration's")
    serve: str = _key(
        "redirect",
        "S3 storage: serve answers image requests, after the same authorization, with a "
        "redirect to a short-lived presigned URL (redirect) or by streaming the bytes (stream)",
        choices=SERVE_MODES,
    )
    presign_seconds: int = _key(
        300, "S3 storage: how long a presigned image URL stays valid", minimum=1
    )
    timeout_seconds: float = _key(
        10.0,
        "S3 storage: connect and read timeout of one request; a store down or slower than "
        "this makes jobs retry later and uploads answer 503",
        minimum=0.1,
    )
    multipart_mb: int = _key(
        16, "S3 storage: originals larger than this are copied in parts of this size", minimum=5
    )

    @property
    def is_s3(self) -> bool:
        return self.root.startswith(S3_SCHEME)


def split_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix without slashes at its ends) of ``s3://bucket/prefix``; ConfigError."""
    if not url.startswith(S3_SCHEME):
        raise ConfigError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[len(S3_SCHEME) :].partition("/")
    if not _BUCKET.match(bucket):
        raise ConfigError(f"{url!r}: {bucket!r} is not a valid S3 bucket name")
    return bucket, prefix.strip("/")


def check_storage(storage: StorageSettings) -> None:
    """ConfigError for an s3:// root that names no valid bucket, or a stray endpoint."""
    if storage.is_s3:
        split_s3_url(storage.root)
    elif "://" in storage.root:
        raise ConfigError(
            f"storage.root must be a folder or an s3://bucket/prefix URL, got {storage.root!r}"
        )
    if storage.endpoint_url and not re.match(r"^https?://[^/\s]+", storage.endpoint_url):
        raise ConfigError(
            f"storage.endpoint_url must start with http:// or https://, "
            f"got {storage.endpoint_url!r}"
        )
