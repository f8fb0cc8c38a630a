"""A photo's image files for a response: the variant's path, opened by files.py's rules.

Every route that hands out a photo (the API's /api/photos/..., a gallery link's photos and its
zip) opens it here, so an original is always checked against the ingest roots and a thumbnail or
preview against the storage root in the same way.
"""

from __future__ import annotations

import os
from typing import Literal

from fastapi import HTTPException

from photoctl import catalog, db, gallery
from photoctl.api.files import FileRefused, ServedFile, open_served_file
from photoctl.api.services import Services

Variant = Literal["thumb", "preview", "original"]


def open_photo(svc: Services, files: gallery.PhotoFiles, variant: Variant) -> ServedFile:
    """The variant's file, opened; 404 when it is gone or may not be served."""
    if variant == "original":
        path = files.source_path
    else:
        stored = files.thumb_path if variant == "thumb" else files.preview_path
        if not stored:
            raise HTTPException(404, "Photo file is gone")
        path = os.fsencode(svc.settings.storage_file(stored))

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
