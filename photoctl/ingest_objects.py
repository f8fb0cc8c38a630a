"""Ingest and object storage: originals copied into the bucket, and buckets as ingest roots.

On S3 storage (``storage.root = s3://...``) ``ingest DIR`` copies each new original to
``originals/ab/<hash><suffix>`` in the storage bucket (content-addressed: the copy is skipped
when the object is there already; large files go up in parts), and the photo's source_path is
that object's URL, so a worker on any machine can read it. The local path is still remembered as
the source file, so a re-run skips unchanged files without reading them.

``ingest s3://bucket/prefix`` registers the images already in a bucket, where they are: each
object's URL is its source file, with its size and ETag (object_store.fingerprint) standing
for a file's size and mtime, so a re-run skips unchanged objects without reading them; new and
changed ones are read once (streamed through the hash, never held whole) and deduplicated by
content hash like files. Keys under the storage's own thumbnails and previews are never taken.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO

from sqlalchemy import Engine

from photoctl import catalog, db, storage
from photoctl.catalog import NewFile
from photoctl.config import Settings
from photoctl.errors import PermanentError
from photoctl.imaging import IMAGE_EXTENSIONS, looks_like_image
from photoctl.ingest_report import IngestReport
from photoctl.storage_settings import S3_SCHEME, split_s3_url

if TYPE_CHECKING:
    from photoctl.object_store import S3Store

_READ_THREADS = 4
_CHUNK_BYTES = 1024 * 1024


def is_bucket_root(root: str | bytes) -> bool:
    return os.fsencode(root).startswith(S3_SCHEME.encode())


def original_copier(settings: Settings) -> S3Store | None:
    """The storage bucket originals are copied into, or None on local storage."""
    if not settings.storage.is_s3:
        return None
    from photoctl.object_store import store_for  # boto3 only where S3 is used

    return store_for(settings.storage)


def copy_original(store: S3Store, handle: BinaryIO, path: bytes, digest: str) -> bytes:
    """Copy an open original to its content-addressed key unless it is there; its URL."""
    suffix = os.fsdecode(os.path.splitext(path)[1]).lower()
    stored_key = storage.key(
        storage.ORIGINALS, digest, suffix if suffix in IMAGE_EXTENSIONS else ""
    )
    handle.seek(0)
    store.upload_if_absent(handle, os.fstat(handle.fileno()).st_size, stored_key)
    return store.location(stored_key)


def scan_buckets(
    engine: Engine | None, settings: Settings, urls: Sequence[str], report: IngestReport
) -> list[NewFile]:
    """The new or changed image objects under ``urls``, hashed; errors go to the report."""
    from photoctl.object_store import client_for, fingerprint, object_url

    client = client_for(settings.storage)
    listed: list[tuple[str, str, int, int]] = []  # bucket, key, size, fingerprint
    for url in urls:
        bucket, prefix = split_s3_url(url)
        for item in _list(client, bucket, prefix, _own_derived_prefixes(settings, bucket)):
            listed.append((bucket, item["Key"], int(item["Size"]), fingerprint(item["ETag"])))
    report.found += len(listed)
    known: dict[bytes, tuple[int, int]] = {}
    if engine is not None:
        with db.read(engine) as conn:
            known = catalog.known_files(conn, [object_url(b, k).encode() for b, k, _, _ in listed])
    to_read = []
    for bucket, key, size, print_ in listed:
        name = object_url(bucket, key)
        if known.get(name.encode()) == (size, print_):
            report.unchanged += 1
        elif size == 0:
            report.errors.append((name, "empty file"))
        elif size > settings.ingest.max_bytes:
            report.errors.append(
                (name, f"file too large ({size:,} bytes, limit {settings.ingest.max_bytes:,})")
            )
        else:
            to_read.append((bucket, key))
    hashed: list[NewFile] = []
    with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
        for name, result in pool.map(lambda item: _hash_object(client, *item), to_read):
            if isinstance(result, str):
                report.errors.append((name, result))
            else:
                hashed.append(result)
    return hashed


def _own_derived_prefixes(settings: Settings, bucket: str) -> tuple[str, ...]:
    if not settings.storage.is_s3:
        return ()
    own_bucket, own_prefix = split_s3_url(settings.storage.root)
    if own_bucket != bucket:
        return ()
    base = f"{own_prefix}/" if own_prefix else ""
    return tuple(f"{base}{kind}/" for kind in (storage.THUMBS, storage.PREVIEWS))


def _list(client: Any, bucket: str, prefix: str, skipped: tuple[str, ...]) -> list[dict]:
    from photoctl.object_store import translated

    found = []
    with translated(f"listing {S3_SCHEME}{bucket}/{prefix}"):
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""
        )
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"]
                if key.startswith(skipped) or os.path.splitext(key)[1].lower() not in (
                    IMAGE_EXTENSIONS
                ):
                    continue
                found.append(item)
    return found


def _hash_object(client: Any, bucket: str, key: str) -> tuple[str, NewFile | str]:
    """(name, the object as a new file) or (name, why it was not taken); streamed, not held."""
    from photoctl.object_store import fingerprint, object_url, translated

    name = object_url(bucket, key)
    digest = hashlib.sha256()
    try:
        with translated(name):
            answer = client.get_object(Bucket=bucket, Key=key)
            size = 0
            for chunk in answer["Body"].iter_chunks(_CHUNK_BYTES):
                if size == 0 and not looks_like_image(chunk[:16]):
                    answer["Body"].close()
                    return name, "not an image (content is not JPEG, PNG, WebP, TIFF, HEIC or GIF)"
                size += len(chunk)
                digest.update(chunk)
    except PermanentError as error:  # deleted since the listing
        return name, str(error)
    # The ETag of this GET, not the listing's: the bytes hashed are the ones it names.
    return name, NewFile(name.encode(), size, fingerprint(answer["ETag"]), digest.hexdigest())
