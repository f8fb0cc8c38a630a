"""A photo's image files for a response: the variant's path, opened by files.py's rules.

Every route that hands out a photo (the API's /api/photos/..., a gallery link's photos and its
zip) opens it here, so an original is always checked against the ingest roots and a thumbnail or
preview against the storage root in the same way.
"""

from __future__ import annotations

import os
from typing import Literal

from fastapi import HTTPException

from photoctl import catalog, db, gallery, storage
from photoctl.api.files import FileRefused, Served, open_served_file
from photoctl.api.object_files import ServedObject
from photoctl.api.services import Services
from photoctl.object_store import ObjectMissing, client_for
from photoctl.storage_settings import S3_SCHEME

Variant = Literal["thumb", "preview", "original"]


def open_photo(
    svc: Services, files: gallery.PhotoFiles, variant: Variant, *, stream: bool = False
) -> Served:
    """The variant's file, opened; 404 when it is gone or may not be served.

    On S3 storage (or for an original registered from a bucket) it is an object: answered with
    a redirect to a presigned URL or streamed, as ``storage.serve`` says (``stream`` forces the
    latter, for the zip).
    """
    settings = svc.settings
    if variant == "original":
        path = files.source_path
        if storage.is_object_url(path):
            return _object(svc, path.decode(), stream)
    else:
        stored = files.thumb_path if variant == "thumb" else files.preview_path
        if not stored:
            raise HTTPException(404, "Photo file is gone")
        if settings.storage.is_s3:
            return _object(svc, storage.open_store(settings).describe(stored), stream)
        path = os.fsencode(settings.storage_file(stored))

    def inside_ingest_root(real_path: bytes) -> bool:
        with db.read(svc.database) as conn:
            return catalog.inside_ingest_root(conn, real_path)

    try:
        return open_served_file(
            path,
            storage_root=svc.settings.storage_root,
            data_dir=svc.settings.data_dir,
            database_url=svc.settings.database_url,
            inside_ingest_root=inside_ingest_root if variant == "original" else None,
        )
    except FileRefused:
        raise HTTPException(404, "Photo file is gone") from None


def _object(svc: Services, url: str, stream: bool) -> ServedObject:
    bucket, key = url[len(S3_SCHEME) :].split("/", 1)
    settings = svc.settings.storage
    redirect = settings.serve == "redirect" and not stream
    served = ServedObject(
        client_for(settings),
        bucket,
        key,
        presign_seconds=settings.presign_seconds if redirect else None,
    )
    if not redirect:
        try:
            served.open()
        except ObjectMissing:
            raise HTTPException(404, "Photo file is gone") from None
    return served
