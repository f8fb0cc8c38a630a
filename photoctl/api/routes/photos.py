"""Photos: the caller's matched photos, the gallery, image files, uploads."""

from __future__ import annotations

import errno
import hashlib
import json
import unicodedata
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from photoctl import catalog, db, gallery, queue, storage
from photoctl.api.deps import CurrentUser, Svc, only_photos_of, too_many
from photoctl.api.photo_files import open_photo
from photoctl.api.services import Services
from photoctl.cache import user_tag
from photoctl.errors import ConfigError
from photoctl.imaging import IMAGE_EXTENSIONS, looks_like_image
from photoctl.ingest import MAX_ALBUM_CHARS, check_album, ingest_upload

router = APIRouter(tags=["photos"])

_CHUNK_BYTES = 1024 * 1024


class PhotoOut(BaseModel):
    id: int
    filename: str
    album: str | None
    taken_at: str | None
    width: int | None
    height: int | None
    similarity: float | None
    thumb_url: str
    preview_url: str


class PhotoPage(BaseModel):
    photos: list[PhotoOut]
    next_cursor: int | None


class UploadAnswer(BaseModel):
    photo_id: int
    job_id: str | None
    duplicate: bool = False


Limit = Annotated[int, Query(ge=1, le=200, description="Photos per page")]
# Ids are 32-bit integers in the database: larger values are refused as invalid, not looked up.
MAX_ID = 2**31 - 1
Cursor = Annotated[
    int | None, Query(ge=0, le=MAX_ID, description="next_cursor of the previous page")
]
PhotoId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
# No control characters (a NUL cannot be stored in PostgreSQL text); ingest.check_album agrees.
_ALBUM_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
AlbumQuery = Annotated[
    str | None,
    Query(max_length=MAX_ALBUM_CHARS, pattern=_ALBUM_PATTERN, description="Album name"),
]
# Seconds a client should wait when storage is full: space comes back by an operator's hand.
_STORAGE_FULL_RETRY_SECONDS = 60
_MAX_FILENAME_CHARS = 255


def _page(svc: Services, items: list[gallery.PhotoItem], next_cursor: int | None) -> dict:
    prefix = svc.settings.serve.public_url.rstrip("/")
    return {
        "photos": [
            {
                **item.__dict__,
                "thumb_url": f"{prefix}/api/photos/{item.id}/thumb",
                "preview_url": f"{prefix}/api/photos/{item.id}/preview",
            }
            for item in items
        ],
        "next_cursor": next_cursor,
    }


def _json(page: dict) -> bytes:
    # What is cached: the answer as sent. Validating and serializing a cached page of 50 photos
    # against PhotoPage on every hit cost more than the rest of the request; it was made here,
    # of the same fields, and PhotoPage stays its schema.
    return json.dumps(page, separators=(",", ":")).encode()


@router.get("/api/my-photos", response_model=PhotoPage)
def my_photos(user: CurrentUser, svc: Svc, limit: Limit = 50, cursor: Cursor = None) -> Response:
    """Photos in which the caller was recognised, newest first (cached per user)."""

    def compute() -> bytes:
        with db.read(svc.database) as conn:
            return _json(_page(svc, *gallery.my_photos(conn, user.id, limit, cursor)))

    answer = svc.cache.get_or_compute(
        ("my-json", user.id, limit, cursor),
        svc.settings.cache.ttl_my_photos,
        compute,
        tag=user_tag(user.id),
    )
    return Response(answer, media_type="application/json")


@router.get("/api/all-photos", response_model=PhotoPage)
def all_photos(
    user: CurrentUser, svc: Svc, album: AlbumQuery = None, limit: Limit = 50, cursor: Cursor = None
) -> Response:
    """The gallery, newest first: every photo where serve.gallery = users (and for admins),
    otherwise the photos the caller appears in."""
    only_user = only_photos_of(user, svc.settings)

    def compute() -> bytes:
        with db.read(svc.database) as conn:
            return _json(_page(svc, *gallery.all_photos(conn, album, limit, cursor, only_user)))

    # Everyone's gallery (only_user None) is one entry for all callers; a restricted one is the
    # caller's own, dropped with their other entries when they are found in a new photo.
    answer = svc.cache.get_or_compute(
        ("all-json", only_user, album, limit, cursor),
        svc.settings.cache.ttl_all_photos,
        compute,
        tag=None if only_user is None else user_tag(only_user),
    )
    return Response(answer, media_type="application/json")


@router.get(
    "/api/photos/{photo_id}/{variant}",
    response_class=StreamingResponse,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "Not found"}},
)
def photo_file(
    photo_id: PhotoId, variant: Literal["thumb", "preview", "original"], user: CurrentUser, svc: Svc
) -> Response:
    """Image bytes, to a user who appears in the photo (any user where serve.gallery = users,
    and admins). A photo the caller may not see is a 404, as if it did not exist."""
    with db.read(svc.database) as conn:
        files = gallery.photo_files(conn, photo_id, only_photos_of(user, svc.settings))
    if files is None:
        raise HTTPException(404, "Photo not found")
    served = open_photo(svc, files, variant)
    return served.response(media_type=None if variant == "original" else "image/jpeg")


@router.post(
    "/api/photos",
    status_code=202,
    response_model=UploadAnswer,
    responses={
        413: {"description": "File too large"},
        415: {"description": "Not an image"},
        422: {"description": "Invalid album name or no file"},
        429: {"description": "Too many uploads"},
        503: {"description": "Queue is full"},
        507: {"description": "Storage is full"},
    },
)
def upload_photo(
    user: CurrentUser,
    svc: Svc,
    file: Annotated[UploadFile, File()],
    album_field: Annotated[
        str | None, Form(alias="album", description="Album name (or the album query parameter)")
    ] = None,
    album: AlbumQuery = None,
) -> UploadAnswer:
    """Store an uploaded photo and enqueue it; answers at once with its ids."""
    if album_field is not None and album is not None and album_field != album:
        raise HTTPException(422, "album: given as a form field and a query parameter, differently")
    try:
        album = check_album(album_field if album_field is not None else album)
    except ConfigError as error:
        raise HTTPException(422, f"album: {error}") from None
    wait = svc.limits.hit(svc.limits.upload, "upload", str(user.id))
    if wait is not None:
        raise too_many(wait, "uploads")
    # A cheap early refusal before the file is stored; the exact check is made again with the
    # insert, in one transaction (ingest._register).
    with db.read(svc.database) as conn:
        waiting = queue.waiting_count(conn)
    if waiting >= svc.settings.queue.max_size:
        raise _queue_full()
    try:
        stored_key, location, size, mtime_ns, digest, created = _store_upload(svc, file)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HTTPException(
                507,
                "Storage is full, try again later",
                headers={"Retry-After": str(_STORAGE_FULL_RETRY_SECONDS)},
            ) from None
        raise
    try:
        result = ingest_upload(
            svc.database,
            svc.settings,
            location,
            digest,
            size_bytes=size,
            mtime_ns=mtime_ns,
            album=album,
            uploaded_by=user.id,
            filename=_display_filename(file.filename),
            max_waiting=svc.settings.queue.max_size,
        )
    except queue.QueueFull:
        if created:
            _forget_unregistered(svc, stored_key, digest)
        raise _queue_full() from None
    return UploadAnswer(photo_id=result.photo_id, job_id=result.job_id, duplicate=result.duplicate)


def _queue_full() -> HTTPException:
    return HTTPException(503, "Queue is full, try again later", headers={"Retry-After": "30"})


def _display_filename(name: str | None) -> str | None:
    """The uploader's file name, for display only: its last part, without control characters."""
    if not name:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if unicodedata.category(char) != "Cc").strip()
    return name[:_MAX_FILENAME_CHARS] or None


def _forget_unregistered(svc: Services, stored_key: str, digest: str) -> None:
    """Remove a file this request stored when no photo refers to it (its job was refused)."""
    with db.read(svc.database) as conn:
        if catalog.existing_hashes(conn, [digest]):
            return
    storage.open_store(svc.settings).delete(stored_key)


def _store_upload(svc: Services, upload: UploadFile) -> tuple[str, bytes, int, int, str, bool]:
    """Stream the upload to a staging file, hashing and size-checking as it goes, then publish
    it at its key in the store (the storage root's folder, or its bucket).

    Returns (key, location for source_path, size and mtime as stored, sha256, whether this
    request created the file).
    """
    limit = svc.settings.ingest.max_bytes
    store = storage.open_store(svc.settings)
    digest = hashlib.sha256()
    size = 0
    with store.staging(storage.UPLOADS) as (out, temporary):
        head = upload.file.read(_CHUNK_BYTES)
        if not head:
            raise HTTPException(422, "file: empty upload")
        if not looks_like_image(head[:16]):
            raise HTTPException(415, "file: not an image (JPEG, PNG, WebP, TIFF, HEIC, GIF)")
        chunk = head
        while chunk:
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"file: larger than {limit:,} bytes")
            digest.update(chunk)
            out.write(chunk)
            chunk = upload.file.read(_CHUNK_BYTES)
        out.close()  # everything on disk before the link makes it visible
        hexdigest = digest.hexdigest()
        suffix = Path(upload.filename or "").suffix.lower()
        suffix = suffix if suffix in IMAGE_EXTENSIONS else ".upload"
        stored_key = storage.key(storage.UPLOADS, hexdigest, suffix)
        created = store.publish(temporary, stored_key)
    size, mtime_ns = store.stat(stored_key)
    return stored_key, store.location(stored_key), size, mtime_ns, hexdigest, created
