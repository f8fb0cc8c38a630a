"""Finding an event's photos by bib number: ``/e/<slug>/bibs/<number>`` and its JSON twin.

The event page's form (a GET, then a redirect to the number's page; a POST with the access code
where the event asks for one, see bib_access.py) lands on the result page: the grid of the photos
where that bib was read, their previews and originals, and "Download all". It is read-only:
"Not me" belongs to a participant's own gallery, where a bib added to it (gallery_bibs.py) puts
the same photos. The grid and the images reuse the gallery's templates and code
(gallery_grid.py, gallery_files.py). ``GET /api/e/<slug>/bibs/<number>`` answers the same as
JSON, the access code in the ``X-Access-Code`` header where needed.

Every search is rate-limited (bib_access.py) and counted for the audit log as a number per day,
never which bib (bib_search.py). A number that no photo shows, on the start list or not, is the
same empty answer: same status, same shape, the same query. The bib is never logged: serve's log
lines carry the path with it replaced (log_redaction.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from photoctl import bib_search, events
from photoctl.api import bib_access, gallery_grid
from photoctl.api import participant_messages as messages
from photoctl.api.deps import Svc
from photoctl.api.pages import error_page, form_token_ok, render
from photoctl.api.participant_messages import Refused
from photoctl.api.photo_files import Variant
from photoctl.api.routes.gallery_files import photo_response, zip_members, zip_response
from photoctl.api.routes.gallery_pages import PAGE_PHOTOS, Cursor, Limit, PhotoId, PhotoLink
from photoctl.api.services import Services
from photoctl.bibs.lookup import normalize_bib

router = APIRouter(tags=["participants"])

NO_SEARCH = messages.NO_BIB_SEARCH
BAD_BIB = messages.BAD_BIB


class BibPhoto(PhotoLink):
    """A gallery's photo link, found by a bib: the same fields, in nobody's gallery."""

    found_by: str | None = Field(default=None, description="Always null: nobody's gallery")


class BibPhotosOut(BaseModel):
    bib: str = Field(description="The number as searched: no spaces, no leading zeros")
    photos: list[BibPhoto]
    next_cursor: int | None
    zip_url: str | None


def _event(svc: Services, slug: str) -> events.Event:
    """The event, if it lets anyone find photos by bib; 404 otherwise (off, purged, no bibs)."""
    event = events.get_event(svc.database, slug) if events.SLUG.fullmatch(slug) else None
    if event is None:
        raise HTTPException(404, "No such event")
    if not bib_search.bib_search_open(event):
        raise HTTPException(404, NO_SEARCH)
    return event


def _bib(typed: str) -> str:
    bib = normalize_bib(typed)
    if bib is None:
        raise Refused(422, BAD_BIB, "bib")
    return bib


def _base(event: events.Event, bib: str, api: bool = False) -> str:
    return f"{'/api' if api else ''}/e/{event.slug}/bibs/{bib}"


def _search(
    svc: Services,
    request: Request,
    slug: str,
    typed: str,
    cursor: int | None,
    limit: int,
) -> tuple[events.Event, str, gallery_grid.Grid]:
    """One search: the event, the number, counted, allowed, then the page of photos."""
    event = _event(svc, slug)
    bib = _bib(typed)
    bib_access.count_search(svc, request, event)
    bib_access.allowed(svc, request, event, counted=True)
    if cursor is None:  # a new search, not the next page of one
        bib_search.record_search(svc.database, event)
    items, next_cursor = bib_search.bib_photos(svc.database, event, bib, limit, cursor)
    # The JSON's links are the pages' own, as a gallery's JSON's are: a photo's page_url is a
    # page, and its images answer the X-Access-Code header as their /api/ twins do.
    base = _base(event, bib)
    grid = gallery_grid.build(items, cursor, next_cursor, html_base=base, json_base=base)
    return event, bib, grid


def _page(
    request: Request,
    svc: Services,
    event: events.Event,
    status_code: int = 200,
    **context: object,
) -> Response:
    context.setdefault("bib", "")
    context.setdefault("grid", None)
    context.setdefault("error", None)
    context.setdefault("error_field", None)
    context.setdefault("searched", False)
    context.setdefault("cursor", None)
    needs_code = bib_access.needs_code(svc, request, event)
    return render(
        request, "bib.html", status_code, event=event, bib_needs_code=needs_code, **context
    )


def _refused_page(
    request: Request, svc: Services, slug: str, error: HTTPException, typed: str = ""
) -> Response:
    if error.status_code == 404:
        return error_page(request, 404, str(error.detail))
    event = events.get_event(svc.database, slug)
    if event is None:
        return error_page(request, 404, "No such event")
    field = error.field if isinstance(error, Refused) else None
    page = _page(
        request,
        svc,
        event,
        error.status_code,
        bib=typed[:40],
        error=str(error.detail),
        error_field=field,
    )
    if error.headers:
        page.headers.update(error.headers)
    return page


@router.get("/e/{slug}/bibs", include_in_schema=False)
def search_form(
    request: Request,
    slug: str,
    svc: Svc,
    bib: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    """The event page's form, sent as a GET: to the number's own page (post/redirect/get)."""
    try:
        event = _event(svc, slug)
        return RedirectResponse(f"{_base(event, _bib(bib))}", status_code=303)
    except HTTPException as error:
        return _refused_page(request, svc, slug, error, bib)


@router.post("/e/{slug}/bibs", include_in_schema=False)
def search_with_code(
    request: Request,
    slug: str,
    svc: Svc,
    bib: Annotated[str, Form(max_length=100)] = "",
    access_code: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    """The form of an event that asks for its access code: checked (and counted) once, then a
    pass for this browser and the number's page."""
    try:
        if not form_token_ok(request, csrf):
            raise Refused(403, messages.STALE_FORM)
        event = _event(svc, slug)
        number = _bib(bib)
        bib_access.count_search(svc, request, event)
        if not access_code.strip():
            raise Refused(403, bib_access.CODE_NEEDED, messages.ACCESS_CODE)
        if not bib_access.code_matches(svc, event, access_code.strip()):
            raise Refused(403, messages.WRONG_CODE, messages.ACCESS_CODE)
    except HTTPException as error:
        return _refused_page(request, svc, slug, error, bib)
    response = RedirectResponse(_base(event, number), status_code=303)
    bib_access.give_pass(svc, request, response, event)
    return response


@router.get("/e/{slug}/bibs/{bib}", response_class=HTMLResponse, include_in_schema=False)
def bib_page(request: Request, slug: str, bib: str, svc: Svc, cursor: Cursor = None) -> Response:
    try:
        event, number, grid = _search(svc, request, slug, bib, cursor, PAGE_PHOTOS)
    except HTTPException as error:
        return _refused_page(request, svc, slug, error, bib)
    return _page(
        request,
        svc,
        event,
        bib=number,
        grid=grid.page_html("") if grid.count else None,
        searched=True,
        cursor=cursor,
    )


@router.get(
    "/api/e/{slug}/bibs/{bib}",
    response_model=BibPhotosOut,
    responses={
        403: {
            "description": "The event asks for its access code (X-Access-Code): missing or wrong"
        },
        404: {"description": "No such event, or it does not find photos by bib"},
        422: {"description": "Not a bib number"},
        429: {"description": "Too many searches"},
    },
)
def bib_json(
    request: Request,
    slug: str,
    bib: str,
    svc: Svc,
    cursor: Cursor = None,
    limit: Limit = PAGE_PHOTOS,
) -> Response:
    """The photos of the event where this bib number was read, newest first, a page at a time.
    A number no photo shows (whether or not it is on the start list) answers an empty list."""
    _, number, grid = _search(svc, request, slug, bib, cursor, limit)
    tail = BibPhotosOut(bib=number, photos=[], next_cursor=grid.next_cursor, zip_url=None)
    if grid.count:
        tail.zip_url = f"{_base(_event(svc, slug), number, api=True)}/zip"
    head = tail.model_dump_json()
    body = head.replace('"photos":[]', f'"photos":{grid.json_photos("")}', 1)
    return Response(body, media_type="application/json")


def _shown(
    svc: Services, request: Request, slug: str, typed: str, photo_id: int
) -> tuple[events.Event, str]:
    """The event and number of a photo of a bib's page, if this request may see it."""
    event = _event(svc, slug)
    bib = _bib(typed)
    bib_access.allowed(svc, request, event, counted=False)
    if bib_search.bib_photo(svc.database, event, bib, photo_id) is None:
        raise HTTPException(404, "Photo not found")
    return event, bib


@router.get(
    "/e/{slug}/bibs/{bib}/photos/{photo_id}", response_class=HTMLResponse, include_in_schema=False
)
def bib_photo_page(request: Request, slug: str, bib: str, photo_id: PhotoId, svc: Svc) -> Response:
    try:
        event, number = _shown(svc, request, slug, bib, photo_id)
    except HTTPException as error:
        return _refused_page(request, svc, slug, error, bib)
    base = _base(event, number)
    return render(
        request,
        "photo.html",
        event=event,
        base=f"{base}/photos/{photo_id}",
        back_url=base,
        back_text=f"All photos of bib {number}",
        heading=f"A photo with bib {number}",
        alt=f"A photo of {event.title} where bib {number} was read",
        not_me_url=None,
        removed=None,
    )


@router.get("/e/{slug}/bibs/{bib}/photos/{photo_id}/{variant}", include_in_schema=False)
@router.get(
    "/api/e/{slug}/bibs/{bib}/photos/{photo_id}/{variant}",
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "Not found"}},
)
def bib_photo_file(
    request: Request, slug: str, bib: str, photo_id: PhotoId, variant: Variant, svc: Svc
) -> Response:
    """A photo's thumbnail, preview or original, while the bib is read in it."""
    event, number = _shown(svc, request, slug, bib, photo_id)
    files = bib_search.bib_photo(svc.database, event, number, photo_id)
    if files is None:
        raise HTTPException(404, "Photo not found")
    return photo_response(svc, files, variant)


@router.get("/e/{slug}/bibs/{bib}/zip", include_in_schema=False)
@router.get(
    "/api/e/{slug}/bibs/{bib}/zip",
    responses={200: {"content": {"application/zip": {}}}, 404: {"description": "Not found"}},
)
def bib_zip(request: Request, slug: str, bib: str, svc: Svc) -> Response:
    """Every photo where the bib was read, in one zip of the originals, streamed."""
    event = _event(svc, slug)
    number = _bib(bib)
    bib_access.allowed(svc, request, event, counted=False)
    members = zip_members(
        svc,
        lambda limit, cursor: bib_search.bib_photos(svc.database, event, number, limit, cursor),
        lambda photo_id: bib_search.bib_photo(svc.database, event, number, photo_id),
        "original",
    )
    return zip_response(members, f"{event.slug}-bib-{number}.zip")
