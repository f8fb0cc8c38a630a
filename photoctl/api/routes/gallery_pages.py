"""A participant's private gallery: ``/g/<token>`` and what can be done from it.

The token in the path is the only credential (its hash is what the database holds), so whoever
has the link sees the photos: the page says to bookmark it and never to share it. Every HTML
page has a JSON twin under /api/g/<token>. Forms post back here with the double-submit token
(csrf.py); the body guard has refused cross-site posts before (participant_gate.py). The images
and the zip are in gallery_files.py.

The grid of photos (HTML, and the JSON of its photos) is cached per participant with the user
tag the workers drop when they match someone, and dropped here on "not me", a new selfie and
erasure (gallery_grid.py); the rest of a page is read per request, in one query for the token,
its participant and event. The count of photos still processing is cached a few seconds for the
whole event, since every open gallery polls it. The JSON twin is written out directly (the
cached photos spliced in); GalleryOut is its schema.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from photoctl import events, participants
from photoctl.api import gallery_cookie, gallery_grid
from photoctl.api import participant_messages as messages
from photoctl.api.deps import Svc
from photoctl.api.gallery_grid import Grid
from photoctl.api.pages import error_page, form_token_ok, iso_date, render
from photoctl.api.participant_messages import Refused
from photoctl.api.routes.event_pages import EventOut, event_out, gallery_url, is_open
from photoctl.api.selfies import received_selfie
from photoctl.api.services import Services
from photoctl.errors import ConfigError, TransientError

router = APIRouter(tags=["participants"])
log = logging.getLogger(__name__)

PAGE_PHOTOS = 48
# What new_token-style tokens look like; anything else is not looked up at all.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,100}")
MAX_ID = 2**31 - 1
PhotoId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
Cursor = Annotated[int | None, Query(ge=0, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=200, description="Photos per page")]
_STALE_FORM = "This form has expired or came from another site. Go back, reload and try again."
ERASED = "Your face data has been deleted; this link no longer does anything but say so."
_NOT_ME_DONE = "You said this photo is not you, so it left your gallery and will not come back."


class PhotoLink(BaseModel):
    id: int
    filename: str
    taken_at: str | None
    width: int | None
    height: int | None
    page_url: str
    thumb_url: str
    preview_url: str
    original_url: str
    found_by: str | None = Field(
        default=None, description="Why the photo is in the gallery: face, bib or both"
    )


class GalleryOut(BaseModel):
    event: EventOut
    face_data_deleted_on: str | None
    erased_by: str | None
    processing: int
    photos: list[PhotoLink]
    next_cursor: int | None
    zip_url: str | None


class PhotoActions(BaseModel):
    id: int
    thumb_url: str
    preview_url: str
    original_url: str
    not_me_url: str


class NotMeOut(BaseModel):
    removed: bool


class SelfieOut(BaseModel):
    matched_photos: int


class ErasedOut(BaseModel):
    face_data_deleted_on: str | None


def holder(svc: Services, token: str) -> tuple[participants.Participant, events.Event]:
    """The participant holding this gallery token and their event; 404 for anyone else."""
    found = participants.gallery_holder(svc.database, token) if _TOKEN.fullmatch(token) else None
    if found is None:
        raise HTTPException(404, "No gallery at this link")
    return found


def deleted_on(participant: participants.Participant, event: events.Event) -> str | None:
    """When this participant's face data was deleted (by them or by the event's purge)."""
    if participant.erased_at is not None:
        return iso_date(participant.erased_at)
    return event.face_data_deleted_on


@dataclass(frozen=True)
class _Live:
    """What a gallery shows beside its grid, read per request (gallery_grid.py)."""

    face_data_deleted_on: str | None
    erased_by: str | None
    processing: int
    grid: Grid | None  # None once the face data is deleted


def _gallery(
    svc: Services,
    participant: participants.Participant,
    event: events.Event,
    cursor: int | None,
    limit: int = PAGE_PHOTOS,
) -> _Live:
    if participant.erased_at is not None:
        return _Live(deleted_on(participant, event), participant.erased_by, 0, None)
    if svc.processing is not None:
        processing = svc.processing.of(event.id)
    else:
        processing = participants.processing_count(svc.database, event.id)
    page = gallery_grid.grid(svc, participant.id, limit, cursor)
    return _Live(deleted_on(participant, event), participant.erased_by, processing, page)


def _gallery_json(live: _Live, event: events.Event, token: str) -> bytes:
    """GalleryOut as JSON, the cached photos spliced in as they are."""
    grid = live.grid
    head = json.dumps(
        {
            "event": event_out(event).model_dump(),
            "face_data_deleted_on": live.face_data_deleted_on,
            "erased_by": live.erased_by,
            "processing": live.processing,
        },
        separators=(",", ":"),
    )
    photos = grid.json_photos(token) if grid is not None else "[]"
    tail = {
        "next_cursor": grid.next_cursor if grid is not None else None,
        "zip_url": f"/g/{token}/zip" if grid is not None and grid.count else None,
    }
    return f'{head[:-1]},"photos":{photos},{json.dumps(tail, separators=(",", ":"))[1:]}'.encode()


def _html_error(request: Request, error: HTTPException, token: str | None = None) -> Response:
    page = error_page(
        request, error.status_code, str(error.detail), back_url=token and f"/g/{token}"
    )
    if error.headers:
        page.headers.update(error.headers)
    return page


@router.get("/g/{token}", response_class=HTMLResponse, include_in_schema=False)
def gallery_page(
    request: Request,
    token: str,
    svc: Svc,
    cursor: Cursor = None,
    welcome: bool = False,
    added: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    removed: bool = False,
    again: bool = False,
    refused: Annotated[str | None, Query(max_length=20)] = None,
    bib_added: bool = False,
    bib_refused: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    try:
        participant, event = holder(svc, token)
    except HTTPException as error:
        return _html_error(request, error)
    live = _gallery(svc, participant, event, cursor)
    return render(
        request,
        "gallery.html",
        token=token,
        event=event,
        event_open=is_open(event),
        gallery=live,
        grid=live.grid.page_html(token) if live.grid is not None and live.grid.count else None,
        link=gallery_url(svc, request, token),
        cursor=cursor,
        welcome=welcome,
        added=added,
        removed=removed,
        again=again,
        selfie_error=messages.GALLERY_REFUSALS.get(refused or ""),
        bibs=_bibs(svc, participant, event),
        bib_added=bib_added,
        bib_error=messages.BIB_REFUSALS.get(bib_refused or ""),
    )


def _bibs(
    svc: Services, participant: participants.Participant, event: events.Event
) -> list[str] | None:
    """The gallery's bibs; None where the event does not find photos by bib (no form)."""
    if participant.erased_at is not None or not participants.bib_search_open(event):
        return None
    return participants.bibs_of(svc.database, participant.id)


@router.get("/api/g/{token}", response_model=GalleryOut, responses={404: {}})
def gallery_json(
    token: str, svc: Svc, cursor: Cursor = None, limit: Limit = PAGE_PHOTOS
) -> Response:
    """The participant's matched photos, newest first, a page at a time, with how many of the
    event's photos are still being processed (poll while it is above 0)."""
    participant, event = holder(svc, token)
    live = _gallery(svc, participant, event, cursor, limit)
    return Response(_gallery_json(live, event, token), media_type="application/json")


def _matched_photo(svc: Services, token: str, photo_id: int) -> events.Event:
    participant, event = holder(svc, token)
    if participants.participant_photo(svc.database, participant.id, photo_id) is None:
        raise HTTPException(404, "This photo is not in your gallery")
    return event


@router.get("/g/{token}/photos/{photo_id}", response_class=HTMLResponse, include_in_schema=False)
def photo_page(request: Request, token: str, photo_id: PhotoId, svc: Svc) -> Response:
    try:
        event = _matched_photo(svc, token, photo_id)
    except HTTPException as error:
        if error.status_code == 404 and _said_not_me(svc, token, photo_id):
            # Back to the photo after "Not me": it says so, with no button that would act.
            _, event = holder(svc, token)
            return _photo_page(request, token, event, photo_id, 410, removed=_NOT_ME_DONE)
        return _html_error(request, error, token)
    return _photo_page(request, token, event, photo_id)


def _photo_page(
    request: Request,
    token: str,
    event: events.Event,
    photo_id: int,
    status_code: int = 200,
    removed: str | None = None,
) -> Response:
    return render(
        request,
        "photo.html",
        status_code,
        event=event,
        base=f"/g/{token}/photos/{photo_id}",
        back_url=f"/g/{token}",
        back_text="All your photos",
        heading="A photo of you",
        alt=f"A photo of {event.title} in which you were found",
        not_me_url=f"/g/{token}/not-me/{photo_id}",
        removed=removed,
    )


def _said_not_me(svc: Services, token: str, photo_id: int) -> bool:
    try:
        participant, _ = holder(svc, token)
    except HTTPException:
        return False
    return participants.said_not_me(svc.database, participant.id, photo_id)


@router.get("/api/g/{token}/photos/{photo_id}", response_model=PhotoActions, responses={404: {}})
def photo_json(token: str, photo_id: PhotoId, svc: Svc) -> PhotoActions:
    """One matched photo: where its images are, and where "not me" is posted."""
    _matched_photo(svc, token, photo_id)
    base = f"/g/{token}/photos/{photo_id}"
    return PhotoActions(
        id=photo_id,
        thumb_url=f"{base}/thumb",
        preview_url=f"{base}/preview",
        original_url=f"{base}/original",
        not_me_url=f"/api/g/{token}/not-me/{photo_id}",
    )


def _not_me(svc: Services, token: str, photo_id: int) -> bool:
    participant, _ = holder(svc, token)
    try:
        removed = participants.not_me(svc.database, participant.id, photo_id)
    except participants.ParticipantErased:
        raise HTTPException(410, ERASED) from None
    svc.cache.drop_users([participant.id])
    return removed


@router.post("/g/{token}/not-me/{photo_id}", include_in_schema=False)
def not_me_page(
    request: Request,
    token: str,
    photo_id: PhotoId,
    svc: Svc,
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    try:
        if not form_token_ok(request, csrf):
            raise HTTPException(403, _STALE_FORM)
        _not_me(svc, token, photo_id)
    except HTTPException as error:
        return _html_error(request, error, token)
    return RedirectResponse(f"/g/{token}?removed=1", status_code=303)


@router.post("/api/g/{token}/not-me/{photo_id}", response_model=NotMeOut)
def not_me_json(token: str, photo_id: PhotoId, svc: Svc) -> NotMeOut:
    """ "Not me": the match goes, and matching never makes it again."""
    return NotMeOut(removed=_not_me(svc, token, photo_id))


def _add_selfie(svc: Services, token: str, selfie: UploadFile | None) -> int:
    participant, _ = holder(svc, token)
    if participant.erased_at is not None:
        raise HTTPException(410, ERASED)
    wait = svc.limits.hit(svc.limits.selfie, "participant-selfie", str(participant.id))
    if wait is not None:
        raise Refused(
            429,
            messages.too_many_selfies(wait),
            messages.SELFIE,
            {"Retry-After": str(int(wait + 0.999))},
        )
    if selfie is None or not selfie.filename:
        raise Refused(422, messages.NO_SELFIE, messages.SELFIE)
    try:
        with received_selfie(svc, selfie) as (engine, path):
            try:
                count = participants.add_selfie(
                    svc.database, engine, svc.settings, participant.id, path
                )
            except participants.ParticipantErased:
                raise HTTPException(410, ERASED) from None
    except HTTPException as error:
        if error.status_code == 410:
            raise
        raise messages.selfie_refusal(error) from None
    svc.cache.drop_users([participant.id])
    return count


@router.post("/g/{token}/selfie", include_in_schema=False)
def add_selfie_page(
    request: Request,
    token: str,
    svc: Svc,
    selfie: Annotated[UploadFile | None, File()] = None,
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    try:
        if not form_token_ok(request, csrf):
            raise Refused(403, messages.STALE_FORM)
        count = _add_selfie(svc, token, selfie)
    except HTTPException as error:
        code = messages.gallery_refusal_code(error) if isinstance(error, Refused) else None
        if code is None:
            return _html_error(request, error, token)
        # Back on the gallery, the refusal next to the selfie input (post/redirect/get: a
        # reload shows it again rather than sending the selfie again).
        return RedirectResponse(f"/g/{token}?refused={code}#add-selfie", status_code=303)
    return RedirectResponse(f"/g/{token}?added={count}", status_code=303)


@router.post("/api/g/{token}/selfie", response_model=SelfieOut)
def add_selfie_json(token: str, svc: Svc, selfie: Annotated[UploadFile, File()]) -> SelfieOut:
    """Another selfie of the same person, for better recall; answers with new matches."""
    return SelfieOut(matched_photos=_add_selfie(svc, token, selfie))


def _erase(svc: Services, token: str) -> str | None:
    participant, event = holder(svc, token)
    if participant.erased_at is None:
        try:
            participants.erase_participant(
                svc.database, svc.face_engine, svc.settings, participant.id
            )
        except (ConfigError, TransientError) as error:
            # Rekognition holds the selfie and cannot be reached now: nothing was deleted yet.
            log.warning("erasing participant %s: %s", participant.id, error)
            raise HTTPException(
                503,
                "Your face data cannot be deleted right now; nothing was deleted. Try again later.",
                headers={"Retry-After": "60"},
            ) from None
    svc.cache.forget_users([participant.id])
    participant, event = holder(svc, token)
    return deleted_on(participant, event)


@router.get("/g/{token}/delete", response_class=HTMLResponse, include_in_schema=False)
def confirm_delete_page(request: Request, token: str, svc: Svc) -> Response:
    try:
        participant, event = holder(svc, token)
    except HTTPException as error:
        return _html_error(request, error)
    return render(
        request,
        "confirm_delete.html",
        token=token,
        event=event,
        erased=participant.erased_at is not None,
    )


@router.post("/g/{token}/delete", include_in_schema=False)
def delete_page(
    request: Request,
    token: str,
    svc: Svc,
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    try:
        if not form_token_ok(request, csrf):
            raise HTTPException(403, _STALE_FORM)
        _erase(svc, token)
        _, event = holder(svc, token)
    except HTTPException as error:
        return _html_error(request, error, token)
    response = RedirectResponse(f"/g/{token}", status_code=303)
    # This browser's way back to the gallery from the event page goes with the face data.
    gallery_cookie.forget(response, request, event.slug)
    return response


@router.post("/api/g/{token}/delete", response_model=ErasedOut)
def delete_json(token: str, svc: Svc) -> ErasedOut:
    """Delete the participant's face data now: selfies, embeddings, matches, the engine's faces
    and cached pages. The link stays, and says when."""
    return ErasedOut(face_data_deleted_on=_erase(svc, token))
