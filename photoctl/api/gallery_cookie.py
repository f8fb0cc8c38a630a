"""The browser's memory of its gallery for an event: one enrollment per browser, not per tap.

A participant who goes back from their new gallery to the event page and sends the form again
(or taps twice, or reloads) would otherwise get a second gallery, with the first one's link
lost. So a successful enrollment from the page also sets a cookie, scoped to that event's page
(``Path=/e/<slug>``), holding the gallery token; an enrollment posted with it lands on that same
gallery without enrolling anyone, and the event page offers the gallery instead of the form.

Why the token itself and not its hash: the page must send the browser to ``/g/<token>``, and
the database keeps only the hash, so nothing else could name the link. The cookie adds nothing
the browser does not hold already (the gallery's address is in its history, and the page asks
to bookmark it): ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (another site's post
does not carry it), ``Secure`` over HTTPS, and it lasts ``MAX_AGE_SECONDS``.

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

COOKIE_NAME = "photoctl_gallery"
# Long enough to find the gallery again from the poster on the days after the event, short
# enough not to outlive a borrowed phone's owner forgetting about it for long.
MAX_AGE_SECONDS = 30 * 86400


def _attributes(slug: str, secure: bool, max_age: int) -> str:
    attributes = [f"Path=/e/{slug}", "HttpOnly", "SameSite=Strict", f"Max-Age={max_age}"]
    if secure:
        attributes.append("Secure")
    return "; ".join(attributes)


def remember(response: Response, request: Request, slug: str, token: str) -> None:
    """Make this browser land on this gallery when it enrolls on the event's page again."""
    secure = request.url.scheme == "https"
    response.headers.append(
        "set-cookie", f"{COOKIE_NAME}={token}; {_attributes(slug, secure, MAX_AGE_SECONDS)}"
    )


def forget(response: Response, request: Request, slug: str) -> None:
    """Drop the browser's gallery of this event (erased, or someone else is enrolling)."""
    secure = request.url.scheme == "https"
    response.headers.append("set-cookie", f"{COOKIE_NAME}=; {_attributes(slug, secure, 0)}")


def fingerprint(token: str) -> str:
    """What the "enroll another person" form says it replaces: the gallery it saw, by a short
    hash, so that the same form sent again (back, reload) finds its own new gallery instead."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def remembered(svc: Services, request: Request, event_id: int) -> str | None:
    """The gallery token this browser holds for the event, when its gallery is still live."""
    token = request.cookies.get(COOKIE_NAME)
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
