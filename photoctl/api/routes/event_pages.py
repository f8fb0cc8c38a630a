"""An event's page: what it is, how faces are used, and the form that enrolls a participant.

``/e/<slug>`` is the page a poster's QR code opens; its POST enrolls and lands on the private
gallery. ``/api/e/<slug>`` is its JSON twin for another front-end. Both go through
``_enroll``: consent and an open event are checked before the selfie is touched, the selfie
through the guards every selfie shares (selfies.py), the access code by the backend before the
selfie is decoded. The body guard has already refused cross-site posts and enrollments over
their rate (participant_gate.py); the HTML form also carries a double-submit token (csrf.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel

from photoctl import events, participants
from photoctl.api.deps import Svc
from photoctl.api.pages import error_page, form_token_ok, render
from photoctl.api.selfies import received_selfie
from photoctl.api.services import Services

router = APIRouter(tags=["participants"])

_STALE_FORM = "This form has expired or came from another site. Reload the page and try again."


class EventOut(BaseModel):
    slug: str
    title: str
    date: str | None
    consent_text: str
    consent_version: str
    requires_access_code: bool
    open: bool
    retention_days: int
    face_data_deleted_on: str | None


class EnrolledOut(BaseModel):
    gallery_token: str
    gallery_url: str
    matched_photos: int


def gallery_url(svc: Services, request: Request, token: str) -> str:
    """The link a participant bookmarks: under serve.public_url when set."""
    base = svc.settings.serve.public_url.rstrip("/") or str(request.base_url).rstrip("/")
    return f"{base}/g/{token}"


def _event(svc: Services, slug: str) -> events.Event:
    # A slug events.check_slug would refuse is not looked up (a NUL is an error in PostgreSQL).
    event = events.get_event(svc.database, slug) if events.SLUG.fullmatch(slug) else None
    if event is None:
        raise HTTPException(404, "No such event")
    return event


def is_open(event: events.Event) -> bool:
    return event.closed_at is None and event.purged_at is None


def event_out(event: events.Event) -> EventOut:
    return EventOut(
        slug=event.slug,
        title=event.title,
        date=event.date,
        consent_text=event.consent_text,
        consent_version=event.consent_version,
        requires_access_code=event.requires_access_code,
        open=is_open(event),
        retention_days=event.retention_days,
        face_data_deleted_on=event.face_data_deleted_on,
    )


def _enroll(
    svc: Services,
    event: events.Event,
    selfie: UploadFile | None,
    consented: bool,
    access_code: str | None,
) -> participants.Enrolled:
    if not is_open(event):
        raise HTTPException(403, "This event no longer takes new enrollments.")
    if not consented:
        raise HTTPException(
            422, "Tick the box to agree to how your face is used: without it we cannot find you."
        )
    if event.requires_access_code and not (access_code or "").strip():
        raise HTTPException(403, "This event asks for its access code.")
    if selfie is None or not selfie.filename:
        raise HTTPException(422, "Choose or take a selfie first.")
    with received_selfie(svc, selfie) as (engine, path):
        try:
            return participants.enroll_participant(
                svc.database,
                engine,
                svc.settings,
                event,
                path,
                consented=consented,
                access_code=(access_code or "").strip() or None,
            )
        except participants.ConsentRequired:
            raise HTTPException(422, "Tick the box to agree first.") from None
        except participants.WrongAccessCode:
            raise HTTPException(403, "That access code is not right for this event.") from None
        except participants.EventClosed:
            raise HTTPException(403, "This event no longer takes new enrollments.") from None


@router.get("/e/{slug}", response_class=HTMLResponse, include_in_schema=False)
def event_page(request: Request, slug: str, svc: Svc) -> HTMLResponse:
    try:
        event = _event(svc, slug)
    except HTTPException as error:
        return error_page(request, error.status_code, str(error.detail))
    return render(request, "event.html", event=event, open=is_open(event), error=None)


@router.post("/e/{slug}", include_in_schema=False)
def enroll_page(
    request: Request,
    slug: str,
    svc: Svc,
    selfie: Annotated[UploadFile | None, File()] = None,
    consent: Annotated[str | None, Form()] = None,
    access_code: Annotated[str | None, Form(max_length=200)] = None,
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    try:
        event = _event(svc, slug)
    except HTTPException as error:
        return error_page(request, error.status_code, str(error.detail))
    try:
        if not form_token_ok(request, csrf):
            raise HTTPException(403, _STALE_FORM)
        enrolled = _enroll(svc, event, selfie, consent == "yes", access_code)
    except HTTPException as error:
        response = render(
            request,
            "event.html",
            error.status_code,
            event=event,
            open=is_open(event),
            error=str(error.detail),
        )
        if error.headers:
            response.headers.update(error.headers)
        return response
    return RedirectResponse(f"/g/{enrolled.gallery_token}?welcome=1", status_code=303)


@router.get("/api/e/{slug}", response_model=EventOut, responses={404: {}})
def event_json(slug: str, svc: Svc) -> EventOut:
    """The event: its consent text and whether enrolling asks for an access code."""
    return event_out(_event(svc, slug))


@router.post(
    "/api/e/{slug}",
    status_code=201,
    response_model=EnrolledOut,
    responses={
        403: {"description": "Wrong access code, event closed, or posted from another site"},
        404: {"description": "No such event"},
        413: {"description": "Selfie too large"},
        422: {"description": "No consent, no face in the selfie, or not a usable image"},
        429: {"description": "Too many enrollments"},
        503: {"description": "Face engine unavailable or busy"},
    },
)
def enroll_json(
    request: Request,
    slug: str,
    svc: Svc,
    selfie: Annotated[UploadFile, File()],
    consent: Annotated[bool, Form(description="The participant agreed to the consent text")],
    access_code: Annotated[str | None, Form(max_length=200)] = None,
) -> EnrolledOut:
    """Enroll a participant with a selfie; answers with their private gallery's token once
    the event's photos are matched. The token is shown this once and stored only as a hash."""
    enrolled = _enroll(svc, _event(svc, slug), selfie, consent, access_code)
    return EnrolledOut(
        gallery_token=enrolled.gallery_token,
        gallery_url=gallery_url(svc, request, enrolled.gallery_token),
        matched_photos=enrolled.matched_photos,
    )
