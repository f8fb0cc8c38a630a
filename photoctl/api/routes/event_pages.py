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
from photoctl.api import bib_access, gallery_cookie
from photoctl.api import participant_messages as messages
from photoctl.api.deps import Svc
from photoctl.api.pages import error_page, form_token_ok, render
from photoctl.api.participant_messages import Refused
from photoctl.api.selfies import received_selfie
from photoctl.api.services import Services

router = APIRouter(tags=["participants"])
MAX_ACCESS_CODE = 200


class EventOut(BaseModel):
    slug: str
    title: str
    date: str | None
    consent_text: str
    consent_version: str
    requires_access_code: bool
    open: bool  # the page takes enrollments now
    self_enrollment: bool  # the organizer's switch (off for the default event until opened)
    retention_days: int
    face_data_deleted_on: str | None
    # Who may find photos by bib on this event now: "public", "code" (with the access code in
    # X-Access-Code) or "off" (also for an event without bibs, or purged).
    bib_search: str = "off"


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
    return event.takes_enrollments


def not_open_reason(event: events.Event) -> str:
    """Why the event page takes no enrollment, in words for a participant."""
    if event.closed_at is None and event.purged_at is None and not event.self_enrollment:
        return "Enrollment on this page is not open. The organizer has not opened it."
    return "This event no longer takes new enrollments."


def event_out(event: events.Event) -> EventOut:
    return EventOut(
        slug=event.slug,
        title=event.title,
        date=event.date,
        consent_text=event.consent_text,
        consent_version=event.consent_version,
        requires_access_code=event.requires_access_code,
        open=is_open(event),
        self_enrollment=event.self_enrollment,
        retention_days=event.retention_days,
        face_data_deleted_on=event.face_data_deleted_on,
        bib_search=event.bib_search if participants.bib_search_open(event) else "off",
    )


def _enroll(
    svc: Services,
    event: events.Event,
    selfie: UploadFile | None,
    consented: bool,
    access_code: str | None,
) -> participants.Enrolled:
    """Enroll, or raise Refused with a participant's sentence and the field it is about."""
    if not is_open(event):
        raise Refused(403, not_open_reason(event))
    if not consented:
        raise Refused(422, messages.NO_CONSENT, messages.CONSENT)
    if event.requires_access_code and not (access_code or "").strip():
        raise Refused(403, messages.NO_CODE, messages.ACCESS_CODE)
    if len(access_code or "") > MAX_ACCESS_CODE:
        # Checked here, not by the form's validation: the page answers with its form.
        raise Refused(403, messages.WRONG_CODE, messages.ACCESS_CODE)
    if selfie is None or not selfie.filename:
        raise Refused(422, messages.NO_SELFIE, messages.SELFIE)
    try:
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
                raise Refused(422, messages.NO_CONSENT, messages.CONSENT) from None
            except participants.WrongAccessCode:
                raise Refused(403, messages.WRONG_CODE, messages.ACCESS_CODE) from None
            except participants.EventClosed as closed:
                raise Refused(403, not_open_reason(closed.event)) from None
    except HTTPException as error:
        raise messages.selfie_refusal(error) from None


def _event_form(
    request: Request,
    svc: Services,
    event: events.Event,
    status_code: int = 200,
    *,
    refused: Refused | None = None,
    access_code: str = "",
    consented: bool = False,
    another: bool = False,
) -> Response:
    """The event page: its form (with what was typed and the refusal next to its field), or,
    for a browser that already enrolled here, the way to its gallery (gallery_cookie.py) and
    to a form for another person, which names the gallery it does not mean to land on."""
    remembered = gallery_cookie.remembered(svc, request, event.id, event.slug)
    response = render(
        request,
        "event.html",
        status_code,
        event=event,
        open=is_open(event),
        closed_reason=not_open_reason(event),
        error=str(refused.detail) if refused is not None else None,
        error_field=refused.field if refused is not None else None,
        access_code=access_code,
        consented=consented,
        gallery=None if another else remembered,
        replaces=gallery_cookie.fingerprint(remembered) if another and remembered else None,
        bib_open=participants.bib_search_open(event),
        bib_needs_code=bib_access.needs_code(svc, request, event),
    )
    if refused is not None and refused.headers:
        response.headers.update(refused.headers)
    if gallery_cookie.held(request, event.slug) and remembered is None:
        # A gallery since erased (or purged, or of another database): the cookie goes too.
        gallery_cookie.forget(response, request, event.slug)
    return response


@router.get("/e/{slug}", response_class=HTMLResponse, include_in_schema=False)
def event_page(request: Request, slug: str, svc: Svc, another: bool = False) -> Response:
    try:
        event = _event(svc, slug)
    except HTTPException as error:
        return error_page(request, error.status_code, str(error.detail))
    return _event_form(request, svc, event, another=another)


@router.post("/e/{slug}", include_in_schema=False)
def enroll_page(
    request: Request,
    slug: str,
    svc: Svc,
    selfie: Annotated[UploadFile | None, File()] = None,
    consent: Annotated[str | None, Form()] = None,
    access_code: Annotated[str | None, Form()] = None,
    replaces: Annotated[str | None, Form(max_length=64)] = None,
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    try:
        event = _event(svc, slug)
    except HTTPException as error:
        return error_page(request, error.status_code, str(error.detail))
    try:
        if not form_token_ok(request, csrf):
            raise Refused(403, messages.STALE_FORM)
        # Sent again from this browser (back, reload, a second tap): the gallery it has, no
        # new one; unless the form was "another person", made while this browser had that one.
        token = gallery_cookie.remembered(svc, request, event.id, event.slug)
        if token is not None and replaces != gallery_cookie.fingerprint(token):
            return RedirectResponse(f"/g/{token}?again=1", status_code=303)
        enrolled = _enroll(svc, event, selfie, consent == "yes", access_code)
    except Refused as refused:
        return _event_form(
            request,
            svc,
            event,
            refused.status_code,
            refused=refused,
            access_code=(access_code or "").strip()[:MAX_ACCESS_CODE],
            consented=consent == "yes",
            another=replaces is not None,
        )
    response = RedirectResponse(f"/g/{enrolled.gallery_token}?welcome=1", status_code=303)
    gallery_cookie.remember(response, request, event.slug, enrolled.gallery_token)
    return response


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
