"""The caller's own enrollment."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, UploadFile
from pydantic import BaseModel

from photoctl import faces, users
from photoctl.api.deps import CurrentUser, Svc
from photoctl.errors import ConfigError, PermanentError, TransientError

router = APIRouter(tags=["me"])


class EnrollAnswer(BaseModel):
    matched_photos: int


@router.post(
    "/api/me/selfie",
    response_model=EnrollAnswer,
    responses={
        422: {"description": "No face in the selfie"},
        503: {"description": "Face engine unavailable"},
    },
)
def enroll_selfie(user: CurrentUser, svc: Svc, file: Annotated[UploadFile, File()]) -> EnrollAnswer:
    """Enroll (or replace) the caller's selfie; answers once their existing photos are matched."""
    try:
        engine = faces.make_engine(svc.settings.faces.engine, svc.settings, svc.database)
    except ConfigError as error:
        raise HTTPException(503, f"face engine unavailable: {error}") from None
    if engine is None:
        raise HTTPException(503, "no face engine is configured (faces.engine = none)")
    handle, temporary = tempfile.mkstemp(suffix=".selfie")
    try:
        with os.fdopen(handle, "wb") as out:
            data = file.file.read(svc.settings.ingest.max_bytes + 1)
            if len(data) > svc.settings.ingest.max_bytes:
                raise HTTPException(413, "selfie too large")
            out.write(data)
        count = users.enroll(svc.database, engine, svc.settings, user.name, Path(temporary))
    except PermanentError as error:
        message = str(error).replace(temporary, "selfie")
        raise HTTPException(422, message) from None
    except TransientError as error:
        raise HTTPException(503, f"try again later: {error}") from None
    finally:
        Path(temporary).unlink(missing_ok=True)
    svc.cache.drop_users([user.id])
    return EnrollAnswer(matched_photos=count)
