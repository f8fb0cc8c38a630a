"""Cross-site posting: refused twice, once from the headers and once by a form token.

Why two checks, and why these. The participant pages carry no ambient credential a cross-site
post could ride on (a gallery token is in the path, and an attacker who knows it needs no
forgery), but an enrollment can be forged: another site can post *its* selfie to an event from
the visitor's browser and land them on a gallery that is not theirs, and a forged "delete my
face data" or "not me" from a page that learned a link would do harm. So:

1. **Fetch metadata and Origin, before the body is read** (``cross_site``, called by the body
   guard). Every current browser sends ``Sec-Fetch-Site`` or ``Origin`` on a POST; a value other
   than this site's is refused with 403 before a 32 MB selfie is spooled. This alone would do
   for browsers from the last few years, and costs no state.
2. **A double-submit token** (``issue_token`` / ``form_token_ok``) for the HTML forms: a random
   value in a ``SameSite=Strict; HttpOnly`` cookie and the same value in a hidden field, compared
   in constant time. It covers browsers that send neither header, and needs no server secret
   shared by serve's worker processes (a signed token would). Its known weakness, a sibling
   subdomain or a man in the middle writing the cookie, is what check 1 covers.

The JSON twins under /api/ get check 1 only: a front-end of another origin, or a script, posts
without a cookie, and with no browser headers at all there is no browser to forge with.
"""

from __future__ import annotations

import hmac
import re
import secrets
from urllib.parse import urlsplit

COOKIE_NAME = "photoctl_csrf"
FIELD_NAME = "csrf"
# Long enough to be unguessable; the value is only ever compared with its cookie.
_TOKEN_BYTES = 24
_SAME_ORIGIN = {"same-origin", "none"}  # "none": typed or bookmarked by the user
# What issue_token makes (token_urlsafe): anything else in the cookie is replaced, so the value
# written into a page and a Set-Cookie header is always plain.
_SOUND_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def cross_site(
    *, sec_fetch_site: str | None, origin: str | None, host: str | None, public_url: str
) -> bool:
    """True when the browser says the request comes from another site than this one.

    This site is the request's own Host (any scheme: a TLS proxy in front changes it) or the
    origin of ``serve.public_url``. A request with neither header is not called cross-site.
    """
    if sec_fetch_site is not None:
        return sec_fetch_site.strip().lower() not in _SAME_ORIGIN
    if origin is None:
        return False
    origin = origin.strip().lower()
    allowed = set()
    if host:
        allowed |= {f"http://{host.lower()}", f"https://{host.lower()}"}
    public = _origin_of(public_url) if public_url else None
    if public:
        allowed.add(public)
    # "null" (a sandboxed frame, a redirect across sites) is never this site.
    return origin not in allowed


def issue_token(existing: str | None) -> str:
    """The form token for a page: the browser's cookie when it has a sound one, else a new one."""
    if existing and _SOUND_TOKEN.fullmatch(existing):
        return existing
    return secrets.token_urlsafe(_TOKEN_BYTES)


def form_token_ok(cookie: str | None, field: str | None) -> bool:
    """Whether the hidden field repeats the cookie (both present, equal in constant time)."""
    if not cookie or not field:
        return False
    return hmac.compare_digest(cookie.encode(), field.encode())


def cookie_header(token: str, *, secure: bool) -> str:
    """The Set-Cookie value: the whole site, never sent with another site's requests."""
    attributes = ["Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=31536000"]
    if secure:
        attributes.append("Secure")
    return f"{COOKIE_NAME}={token}; " + "; ".join(attributes)
