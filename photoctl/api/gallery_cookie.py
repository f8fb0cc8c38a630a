"""The browser's memory of its gallery for an event: one enrollment per browser, not per tap.

A participant who goes back from their new gallery to the event page and sends the form again
(or taps twice, or reloads) would otherwise get a second gallery, with the first one's link
lost. So a successful enrollment from the page also sets a cookie named after the event
(``photoctl_gallery_<slug>``), holding the gallery token; an enrollment posted with it lands on
that same gallery without enrolling anyone, and the event page offers the gallery instead of
the form.

Why the token itself and not its hash: the page must send the browser to ``/g/<token>``, and
the database keeps only the hash, so nothing else could name the link. The cookie adds nothing
the browser does not hold already (the gallery's address is in its history, and the page asks
to bookmark it): ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (another site's post
does not carry it), and it lasts ``MAX_AGE_SECONDS``. Over HTTPS it is a ``__Host-`` cookie
(``Secure``, ``Path=/``, no ``Domain``): a sibling subdomain or a man in the middle cannot plant
one, which would otherwise send a person enrolling to the planter's gallery, where a selfie
they add would show the planter their photos. Over plain HTTP nothing can stop a planted
cookie, as nothing stops a rewritten page.

On a shared phone: "Someone else? Enroll another person" on the event page enrolls a new
participant and replaces the cookie, and "delete my face data" removes it. A cookie is only
ever followed to a participant of this event whose face data is not deleted (by them or by the
event's purge): an erased gallery's cookie is dropped, never used to enroll or restore anything.
"""

from __future__ import annotations

import hashlib

from fastapi import Request, Response

from photoctl import participants
from photoctl.api.services import Services

COOKIE_PREFIX = "photoctl_gallery_"
# Long enough to find the gallery again from the poster on the days after the event, short
# enough not to outlive a borrowed phone's owner forgetting about it for long.
MAX_AGE_SECONDS = 30 * 86400


def cookie_name(request: Request, slug: str) -> str:
    """The event's cookie: ``__Host-`` prefixed over HTTPS, where browsers enforce it."""
    name = f"{COOKIE_PREFIX}{slug}"
    return f"__Host-{name}" if request.url.scheme == "https" else name


def _set_cookie(request: Request, slug: str, value: str, max_age: int) -> str:
    attributes = ["Path=/", "HttpOnly", "SameSite=Strict", f"Max-Age={max_age}"]
    if request.url.scheme == "https":
        attributes.append("Secure")
    return f"{cookie_name(request, slug)}={value}; " + "; ".join(attributes)


def remember(response: Response, request: Request, slug: str, token: str) -> None:
    """Make this browser land on this gallery when it enrolls on the event's page again."""
    response.headers.append("set-cookie", _set_cookie(request, slug, token, MAX_AGE_SECONDS))


def forget(response: Response, request: Request, slug: str) -> None:
    """Drop the browser's gallery of this event (erased, or someone else is enrolling)."""
    response.headers.append("set-cookie", _set_cookie(request, slug, "", 0))


def held(request: Request, slug: str) -> str | None:
    """The token the browser's cookie for the event holds, whatever it names."""
    return request.cookies.get(cookie_name(request, slug)) or None


def fingerprint(token: str) -> str:
    """What the "enroll another person" form says it replaces: the gallery it saw, by a short
    hash, so that the same form sent again (back, reload) finds its own new gallery instead."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def remembered(svc: Services, request: Request, event_id: int, slug: str) -> str | None:
    """The gallery token this browser holds for the event, when its gallery is still live."""
    token = held(request, slug)
    if not token:
        return None
    # Looked up by its hash, as a link's token is: whatever the cookie holds, the database sees
    # 64 hex digits.
    found = participants.gallery_holder(svc.database, token)
    if found is None:
        return None
    participant, event = found
    if event.id != event_id or participant.erased_at is not None:
        return None
    return token
