"""The caller's own enrollment.

The selfie goes through the guards every selfie route shares (selfies.py); this route adds its
per-user rate limit.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from pydantic import BaseModel

from photoctl import users
from photoctl.api.deps import CurrentUser, Svc, too_many
from photoctl.api.selfies import received_selfie

router = APIRouter(tags=["me"])


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
    with received_selfie(svc, file) as (engine, selfie):
        count = users.enroll(svc.database, engine, svc.settings, user.name, selfie)
    svc.cache.drop_users([user.id])
    return EnrollAnswer(matched_photos=count)
