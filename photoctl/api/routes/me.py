"""The caller's own enrollment.

A selfie is the one image serve decodes itself, next to requests that must stay fast: it is
rate-limited per user, refused from its header when its decode would be too large (the same
pixel guard as the workers, plus a bound on the decoded size), and decoded by at most
``serve.max_concurrent_decodes`` requests at once in each process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, UploadFile
from pydantic import BaseModel

from photoctl import users
from photoctl.api.deps import CurrentUser, Svc, too_many
from photoctl.errors import PermanentError, TransientError
from photoctl.imaging import check_decode_size

router = APIRouter(tags=["me"])

# How long a selfie waits for a decode slot before the client is asked to come back.
_DECODE_WAIT_SECONDS = 20.0
_CHUNK_BYTES = 1024 * 1024


class EnrollAnswer(BaseModel):
    matched_photos: int


@router.post(
    "/api/me/selfie",
    response_model=EnrollAnswer,
    responses={
        413: {"description": "Selfie too large"},
        422: {"description": "No face in the selfie, or not a usable image"},
        429: {"description": "Too many selfies"},
        503: {"description": "Face engine unavailable or busy"},
    },
)
def enroll_selfie(user: CurrentUser, svc: Svc, file: Annotated[UploadFile, File()]) -> EnrollAnswer:
    """Enroll (or replace) the caller's selfie; answers once their existing photos are matched."""
    wait = svc.limits.hit(svc.limits.selfie, "selfie", str(user.id))
    if wait is not None:
        raise too_many(wait, "selfies")
    # Built once per process (services.open_services), with what went wrong if it could not be.
    if svc.face_engine_error is not None:
        raise HTTPException(503, f"face engine unavailable: {svc.face_engine_error}")
    engine = svc.face_engine
    if engine is None:
        raise HTTPException(503, "no face engine is configured (faces.engine = none)")
    limit = svc.settings.serve.selfie_max_bytes
    handle, temporary = tempfile.mkstemp(suffix=".selfie")
    try:
        with os.fdopen(handle, "wb") as out:
            # Copied in chunks: the selfie is never held in memory twice.
            shutil.copyfileobj(file.file, out, _CHUNK_BYTES)
            if out.tell() > limit:
                raise HTTPException(413, f"selfie larger than {limit:,} bytes")
        check_decode_size(
            Path(temporary),
            preview_px=svc.settings.storage.preview_px,
            max_pixels=svc.settings.ingest.max_pixels,
            max_decoded_pixels=svc.settings.serve.max_decode_pixels,
            display_name="selfie",
            detail_px=engine.detail_px,
        )
        decodes = svc.decodes
        if not decodes.acquire(timeout=_DECODE_WAIT_SECONDS):
            raise HTTPException(
                503, "busy decoding other selfies, try again", headers={"Retry-After": "5"}
            )
        try:
            count = users.enroll(svc.database, engine, svc.settings, user.name, Path(temporary))
        finally:
            decodes.release()
    except PermanentError as error:
        message = str(error).replace(temporary, "selfie")
        raise HTTPException(422, message) from None
    except TransientError as error:
        raise HTTPException(
            503, f"try again later: {error}", headers={"Retry-After": "5"}
        ) from None
    finally:
        Path(temporary).unlink(missing_ok=True)
    svc.cache.drop_users([user.id])
    return EnrollAnswer(matched_photos=count)
