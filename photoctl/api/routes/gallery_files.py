"""A gallery's images and its "download all" zip, for whoever holds the gallery link.

A photo is served only while it is matched to the link's participant ("not me" and erasure end
that at once); thumbnails, previews and originals are opened by the same rules as the API's
(photo_files.py). The zip streams (zipstream.py): its first bytes leave before the second photo
is opened, and serve holds one chunk of it at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import PurePath
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response, StreamingResponse

from photoctl import participants
from photoctl.api.deps import Svc
from photoctl.api.download_names import content_disposition
from photoctl.api.files import Served
from photoctl.api.photo_files import Variant, open_photo
from photoctl.api.routes.gallery_pages import PhotoId, holder
from photoctl.api.services import Services
from photoctl.api.zipstream import member_name, zip_chunks
from photoctl.bibs.lookup import GalleryItem
from photoctl.gallery import PhotoFiles

router = APIRouter(tags=["participants"])

# Photos asked of the database at a time while the zip is written.
_ZIP_BATCH = 200
_IMAGE_CACHE = "private, max-age=3600"


@router.get(
    "/g/{token}/photos/{photo_id}/{variant}",
    response_class=StreamingResponse,
    include_in_schema=False,
)
@router.get(
    "/api/g/{token}/photos/{photo_id}/{variant}",
    response_class=StreamingResponse,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "Not found"}},
)
def gallery_photo(token: str, photo_id: PhotoId, variant: Variant, svc: Svc) -> Response:
    """A photo's thumbnail, preview or original, while it is in the gallery (face or bib)."""
    participant, _ = holder(svc, token)
    files = participants.participant_photo(svc.database, participant.id, photo_id)
    if files is None:
        raise HTTPException(404, "Photo not found")
    return photo_response(svc, files, variant)


def photo_response(svc: Services, files: PhotoFiles, variant: Variant) -> Response:
    """One of a photo's images as a participant's page serves it (the bib pages too)."""
    served = open_photo(svc, files, variant)
    original = variant == "original"
    response = served.response(
        media_type=None if original else "image/jpeg",
        # Its own name: an original in a bucket or an upload is stored under its hash.
        download_name=(files.filename or served.name) if original else None,
    )
    if "Cache-Control" not in response.headers:  # a redirect says how long it may be reused
        response.headers["Cache-Control"] = _IMAGE_CACHE
    return response


Page = Callable[[int, int | None], tuple[list[GalleryItem], int | None]]


def zip_members(
    svc: Services,
    page: Page,
    files_of: Callable[[int], PhotoFiles | None],
    variant: Variant,
) -> Iterator[tuple[str, Served]]:
    """The members of a zip of the photos ``page`` lists, a batch at a time; a photo whose
    ``files_of`` is None by the time it is reached ("not me" meanwhile) is left out."""
    cursor: int | None = None
    while True:
        items, cursor = page(_ZIP_BATCH, cursor)
        for item in items:
            files = files_of(item.id)
            if files is None:
                continue
            try:
                served = open_photo(svc, files, variant, stream=True)
            except HTTPException:  # the file is gone: the rest of the zip is still worth having
                continue
            name = item.filename if variant == "original" else PurePath(item.filename).stem
            yield member_name(item.id, name + ("" if variant == "original" else ".jpg")), served
        if cursor is None:
            return


def zip_response(members: Iterator[tuple[str, Served]], name: str) -> StreamingResponse:
    return StreamingResponse(
        zip_chunks(members),
        media_type="application/zip",
        headers={"Content-Disposition": content_disposition(name), "Cache-Control": "no-store"},
    )


@router.get(
    "/g/{token}/zip",
    response_class=StreamingResponse,
    include_in_schema=False,
)
@router.get(
    "/api/g/{token}/zip",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}}, 404: {"description": "Not found"}},
)
def gallery_zip(
    token: str,
    svc: Svc,
    variant: Annotated[Literal["original", "preview"], Query()] = "original",
) -> StreamingResponse:
    """Every photo of the gallery in one zip, streamed as it is written (originals, or
    previews)."""
    participant, event = holder(svc, token)
    members = zip_members(
        svc,
        lambda limit, cursor: participants.participant_photos(
            svc.database, participant.id, limit, cursor
        ),
        lambda photo_id: participants.participant_photo(svc.database, participant.id, photo_id),
        variant,
    )
    return zip_response(members, f"{event.slug}-photos.zip")
