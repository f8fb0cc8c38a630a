"""What the body guard checks on a participant's post, in place of a bearer token.

Event pages and galleries are posted to by people without an account: the gallery token in the
path is their credential, checked by the route. Before the body is read the guard still refuses,
from the headers alone, a post another site made the browser send (csrf.py explains the checks)
and an enrollment over its rate (per client address, then per event), so neither costs serve a
spooled selfie. The size limits stay the guard's: a selfie route takes a selfie, the rest a
small form.

The client address is the socket's peer, or the address a proxy listed in
``serve.trusted_proxies`` saw (uvicorn's proxy-headers middleware, set up by api/serve.py);
an IPv6 client counts by its /64 (ratelimit.address_key).
An address is kept only as a rate-limit counter's key, which expires with its window; it is
never written to the database or the audit log.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from photoctl.api import csrf, pages, participant_messages
from photoctl.api.services import Services
from photoctl.ratelimit import address_key

Scope = MutableMapping[str, Any]

_ENROLL_PATH = re.compile(r"^/(?:api/)?e/([^/]+)$")
_SELFIE_PATH = re.compile(r"^/(?:api/)?g/[^/]+/selfie$")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_participant_post(scope: Scope) -> bool:
    return scope.get("method", "GET") not in _SAFE_METHODS and pages.is_participant_path(
        scope.get("path", "")
    )


def takes_selfie(path: str) -> bool:
    """Enrollment and "add another selfie": the posts that carry an image."""
    return bool(_ENROLL_PATH.match(path) or _SELFIE_PATH.match(path))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _refusal(
    scope: Scope,
    status: int,
    message: str,
    retry_after: float | None = None,
    back_url: str | None = None,
) -> Response:
    headers = {"Retry-After": str(int(retry_after + 0.999))} if retry_after is not None else {}
    if scope.get("path", "").startswith("/api/"):
        return JSONResponse({"detail": message}, status, headers=headers)
    page = pages.error_page(Request(scope), status, message, back_url=back_url)
    page.headers.update(headers)
    return page


def refusal(services: Services, scope: Scope) -> Response | None:
    """The answer to a participant post refused before its body is read, or None."""
    if csrf.cross_site(
        sec_fetch_site=_header(scope, b"sec-fetch-site"),
        origin=_header(scope, b"origin"),
        host=_header(scope, b"host"),
        public_url=services.settings.serve.public_url,
    ):
        return _refusal(scope, 403, "Forms posted from another site are refused.")
    enrolling = _ENROLL_PATH.match(scope.get("path", ""))
    if enrolling is None:
        return None
    limits = services.limits
    client = scope.get("client")
    address = address_key(client[0]) if client else "unknown"
    wait = limits.hit(limits.enroll_address, "enroll-address", address)
    if wait is None:
        wait = limits.hit(limits.enroll_event, "enroll-event", enrolling.group(1))
    if wait is not None:
        # When to try again, in words: the form cannot be kept (its body is never read).
        message = participant_messages.too_many_enrollments(wait)
        return _refusal(scope, 429, message, wait, back_url=scope.get("path"))
    return None


def too_large(scope: Scope) -> Response:
    """A participant's post whose declared size is over the limit: a sentence, and the way back."""
    path = scope.get("path", "")
    back = path.rsplit("/selfie", 1)[0] if _SELFIE_PATH.match(path) else path
    return _refusal(scope, 413, participant_messages.TOO_LARGE, back_url=back)
