"""Who may see an event's photos by bib: the rate limits and, where asked, the access code.

A bib is printed on a runner's chest, in every photo of them: not a secret. So every search
(the result page, its JSON twin, a bib added to a gallery) is counted per client address and per
event (``serve.bib_search_rate_per_address``, ``..._per_event``) before anything is looked up,
and a number that is not on the start list answers as one no photo shows.

Where the organizer chose ``bib_search = code``, the event's access code is needed too: in the
``X-Access-Code`` header (the JSON twin, and any image or zip route), or typed once in the page's
form, which then gives the browser a pass for the event (a cookie, ``photoctl_bibs_<slug>``,
``HttpOnly``, ``SameSite=Strict``, ``PASS_SECONDS``; the cache keeps only its SHA-256, with the
event's id). Checking a code costs an scrypt, so a code seen in a header is counted against the
search limits before it is checked (a guess is a search), and a right one is remembered by this
process for CODE_MEMO_SECONDS under a keyed hash, so the 48 thumbnails of a page cost one scrypt,
not 48.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from fastapi import Request, Response

from photoctl import events
from photoctl.api import participant_messages as messages
from photoctl.api.participant_messages import Refused
from photoctl.api.services import Services
from photoctl.ratelimit import address_key

COOKIE_PREFIX = "photoctl_bibs_"
PASS_SECONDS = 12 * 3600  # the day of the race, and the evening after it
CODE_MEMO_SECONDS = 600.0
_CODE_MEMO_MAX = 4096
_memo_key = secrets.token_bytes(32)  # this process's only: a memo is never written anywhere
_memo: dict[bytes, float] = {}
_memo_lock = threading.Lock()

CODE_NEEDED = "This event's photos are found by bib number with its access code: type it too."


def too_many_searches(seconds: float) -> str:
    when = messages.retry_in_words(seconds)
    return f"Too many searches by bib number from here. Please try again {when}."


def count_search(svc: Services, request: Request, event: events.Event) -> None:
    """Count one search against the address's and the event's limits; Refused 429 past either."""
    limits = svc.limits
    client = request.client
    address = address_key(client.host) if client else "unknown"
    wait = limits.hit_all(limits.bib_address, "bib-address", address)
    if wait is None:
        wait = limits.hit_all(limits.bib_event, "bib-event", event.slug)
    if wait is not None:
        raise Refused(429, too_many_searches(wait), None, {"Retry-After": str(int(wait + 0.999))})


def cookie_name(request: Request, slug: str) -> str:
    name = f"{COOKIE_PREFIX}{slug}"
    return f"__Host-{name}" if request.url.scheme == "https" else name


def _pass_key(value: str) -> tuple[str, str]:
    return ("bib-pass", hashlib.sha256(value.encode()).hexdigest())


def give_pass(svc: Services, request: Request, response: Response, event: events.Event) -> None:
    """The browser typed the right code: let it see this event's bib pages for a while."""
    value = secrets.token_urlsafe(24)
    svc.cache.get_or_compute(_pass_key(value), PASS_SECONDS, lambda: event.id)
    attributes = ["Path=/", "HttpOnly", "SameSite=Strict", f"Max-Age={PASS_SECONDS}"]
    if request.url.scheme == "https":
        attributes.append("Secure")
    response.headers.append(
        "set-cookie", f"{cookie_name(request, event.slug)}={value}; " + "; ".join(attributes)
    )


def has_pass(svc: Services, request: Request, event: events.Event) -> bool:
    value = request.cookies.get(cookie_name(request, event.slug))
    if not value or len(value) > 100:
        return False
    # ttl 0: a lookup only, nothing is stored for a pass that is not there.
    return svc.cache.get_or_compute(_pass_key(value), 0, lambda: None) == event.id


def needs_code(svc: Services, request: Request, event: events.Event) -> bool:
    """Whether this browser's form must carry the access code (the event asks, no pass yet)."""
    return event.bib_search == "code" and not has_pass(svc, request, event)


def _memo_digest(event: events.Event, code: str) -> bytes:
    return hmac.new(_memo_key, f"{event.id}:{code}".encode(), hashlib.sha256).digest()


def code_matches(svc: Services, event: events.Event, code: str) -> bool:
    """The access code check, an scrypt, remembered when right (see the module docstring)."""
    digest = _memo_digest(event, code)
    now = time.monotonic()
    with _memo_lock:
        if _memo.get(digest, 0.0) > now:
            return True
    if len(code) > 200 or not events.access_code_matches(svc.database, event, code):
        return False
    with _memo_lock:
        if len(_memo) >= _CODE_MEMO_MAX:
            _memo.clear()
        _memo[digest] = now + CODE_MEMO_SECONDS
    return True


def allowed(svc: Services, request: Request, event: events.Event, *, counted: bool) -> None:
    """Raise Refused (403, or 429) unless this request may see the event's bib photos.

    ``counted``: this request was counted as a search already; otherwise a code it brings is
    counted before it is checked.
    """
    if event.bib_search != "code" or has_pass(svc, request, event):
        return
    code = (request.headers.get("x-access-code") or "").strip()
    if not code:
        raise Refused(403, CODE_NEEDED, messages.ACCESS_CODE)
    digest = _memo_digest(event, code)
    with _memo_lock:
        known = _memo.get(digest, 0.0) > time.monotonic()
    if not known and not counted:
        count_search(svc, request, event)
    if not code_matches(svc, event, code):
        raise Refused(403, messages.WRONG_CODE, messages.ACCESS_CODE)
