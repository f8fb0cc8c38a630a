"""A participant's own bib on their gallery: ``/g/<token>/bib`` and its JSON twin.

A participant of an event that finds photos by bib (participants.bib_search_open) adds the
number on their bib; their gallery then holds the photos where it was read beside those their
face matched, each marked with why (gallery_grid.html), and "Not me" takes out either kind for
good. Adding a bib shows its photos, so it is counted as a bib search (bib_access.py: per
address, per event; and in the audit's daily count) and a gallery holds at most
participants.MAX_BIBS; "delete my face data"
forgets them. The bib is never in a redirect's query or a log line.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from photoctl import bib_search, participants
from photoctl.api import bib_access
from photoctl.api import participant_messages as messages
from photoctl.api.deps import Svc
from photoctl.api.pages import error_page, form_token_ok
from photoctl.api.participant_messages import Refused
from photoctl.api.routes.gallery_pages import ERASED, holder
from photoctl.api.services import Services

router = APIRouter(tags=["participants"])

BIB_REFUSALS = messages.BIB_REFUSALS
BAD_BIB = messages.BAD_BIB
NO_BIBS = messages.NO_BIB_SEARCH
TOO_MANY_BIBS = messages.MAX_BIBS_NOTE


class BibIn(BaseModel):
    bib: str = Field(max_length=100, description="The number printed on the participant's bib")


class BibsOut(BaseModel):
    bibs: list[str] = Field(description="The gallery's bibs, as stored (no leading zeros)")


def _add(svc: Services, request: Request, token: str, typed: str) -> list[str]:
    participant, event = holder(svc, token)
    if participant.erased_at is not None:
        raise HTTPException(410, ERASED)
    if not participants.bib_search_open(event):
        raise Refused(403, NO_BIBS, "bib")
    bib_access.count_search(svc, request, event)
    try:
        participants.add_bib(svc.database, participant.id, typed)
    except participants.BadBib:
        raise Refused(422, BAD_BIB, "bib") from None
    except participants.TooManyBibs:
        raise Refused(409, TOO_MANY_BIBS, "bib") from None
    except participants.BibsClosed:
        raise Refused(403, NO_BIBS, "bib") from None
    except participants.ParticipantErased:
        raise HTTPException(410, ERASED) from None
    # It shows a bib's photos as a search does, and is counted as one in the audit log.
    bib_search.record_search(svc.database, event)
    svc.cache.drop_users([participant.id])
    return participants.bibs_of(svc.database, participant.id)


def _forget(svc: Services, token: str, typed: str) -> list[str]:
    participant, _ = holder(svc, token)
    if participant.erased_at is not None:
        raise HTTPException(410, ERASED)
    participants.forget_bib(svc.database, participant.id, typed)
    svc.cache.drop_users([participant.id])
    return participants.bibs_of(svc.database, participant.id)


def _refusal_code(error: HTTPException) -> str | None:
    if error.status_code == 429:
        return "busy"
    detail = str(error.detail)
    return next((code for code, text in BIB_REFUSALS.items() if text == detail), None)


@router.post("/g/{token}/bib", include_in_schema=False)
def add_bib_page(
    request: Request,
    token: str,
    svc: Svc,
    bib: Annotated[str, Form(max_length=100)] = "",
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    try:
        if not form_token_ok(request, csrf):
            raise Refused(403, messages.STALE_FORM)
        _add(svc, request, token, bib)
    except HTTPException as error:
        code = _refusal_code(error)
        if code is None:
            return error_page(request, error.status_code, str(error.detail), back_url=None)
        return RedirectResponse(f"/g/{token}?bib_refused={code}#bibs", status_code=303)
    return RedirectResponse(f"/g/{token}?bib_added=1#bibs", status_code=303)


@router.post("/g/{token}/bib/remove", include_in_schema=False)
def remove_bib_page(
    request: Request,
    token: str,
    svc: Svc,
    bib: Annotated[str, Form(max_length=100)] = "",
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    try:
        if not form_token_ok(request, csrf):
            raise Refused(403, messages.STALE_FORM)
        _forget(svc, token, bib)
    except HTTPException as error:
        return error_page(request, error.status_code, str(error.detail), back_url=f"/g/{token}")
    return RedirectResponse(f"/g/{token}#bibs", status_code=303)


@router.post(
    "/api/g/{token}/bib",
    response_model=BibsOut,
    responses={
        403: {"description": "The event does not find photos by bib"},
        409: {"description": "The gallery holds as many bibs as it may"},
        410: {"description": "The participant's face data was deleted"},
        422: {"description": "Not a bib number"},
        429: {"description": "Too many bib searches"},
    },
)
def add_bib_json(request: Request, token: str, body: BibIn, svc: Svc) -> BibsOut:
    """Add the participant's bib: their gallery then also holds the photos where it was read,
    each photo's ``found_by`` saying face, bib or both."""
    return BibsOut(bibs=_add(svc, request, token, body.bib))


@router.delete("/api/g/{token}/bib/{bib}", response_model=BibsOut)
def remove_bib_json(token: str, bib: str, svc: Svc) -> BibsOut:
    """Take a bib out of the gallery (its photos leave it, unless the face matched them)."""
    return BibsOut(bibs=_forget(svc, token, bib))
