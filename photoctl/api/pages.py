"""The participant pages' shared parts: templates, the form token cookie, security headers.

Pages are server-rendered (Jinja2, autoescaped) with a little plain JavaScript and CSS served
from photoctl/api/static: no build step, no CDN, nothing from another site, so the Content
Security Policy can be ``default-src 'self'`` with no inline script or style at all.
``PageHeaders`` puts that policy (and the other headers below) on every participant route and
static file; /docs keeps its own inline scripts and so is left out of it.

Galleries are private to whoever holds the link: their pages and answers are ``no-store``, and
``Referrer-Policy: no-referrer`` keeps the token in the path from leaving with any request.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from photoctl.api import csrf

API_DIR = Path(__file__).resolve().parent
STATIC_DIR = API_DIR / "static"
TEMPLATES_DIR = API_DIR / "templates"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'; object-src 'none'"
)
# On every participant route, its JSON twins, the static files.
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
PARTICIPANT_PREFIXES = ("/e/", "/g/", "/api/e/", "/api/g/", "/static/")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_participant_path(path: str) -> bool:
    return path.startswith(PARTICIPANT_PREFIXES)


def with_security_headers(
    headers: list[tuple[bytes, bytes]], *, store: bool = False
) -> list[tuple[bytes, bytes]]:
    """``headers`` plus the security headers (and no-store unless ``store``) they lack."""
    headers = list(headers)
    present = {key.lower() for key, _ in headers}
    for name, value in SECURITY_HEADERS.items():
        if name.encode() not in present:
            headers.append((name.encode(), value.encode()))
    if b"cache-control" not in present and not store:
        headers.append((b"cache-control", b"no-store"))
    return headers


class PageHeaders:
    """ASGI middleware: the security headers on participant routes, whatever answers them
    (a route, the body guard's refusal, an error handler), and on every error answer.

    An error page may echo a path or a value a client chose, and the answer to a mistyped or
    probing URL is as much a page as any other, so no error goes out without the policy. (The
    500 handler runs outside every middleware and adds them itself: app.py.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        participant = is_participant_path(path)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and (
                participant or message["status"] >= 400
            ):
                message["headers"] = with_security_headers(
                    message.get("headers", []),
                    store=path.startswith("/static/") and message["status"] < 400,
                )
            await send(message)

        await self.app(scope, receive, with_headers)


def iso_date(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).date().isoformat()


@functools.cache
def _environment() -> jinja2.Environment:
    # Built on first use, not at import (nothing happens at import time).
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        # The templates ship with the package: compiled once, never stat()ed again per request.
        auto_reload=False,
    )
    environment.filters["iso_date"] = iso_date
    return environment


def render_fragment(name: str, **context: Any) -> str:
    """A template on its own (no form token): a part of a page that is cached."""
    return _environment().get_template(name).render(**context)


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The template as a response, with the form token its forms carry (and its cookie)."""
    cookie = request.cookies.get(csrf.COOKIE_NAME)
    token = csrf.issue_token(cookie)
    html = _environment().get_template(name).render(csrf_token=token, **context)
    response = HTMLResponse(html, status_code=status_code)
    if token != cookie:
        response.headers.append(
            "set-cookie", csrf.cookie_header(token, secure=request.url.scheme == "https")
        )
    return response


def error_page(request: Request, status_code: int, message: str, **context: Any) -> HTMLResponse:
    return render(
        request, "error.html", status_code, message=message, back_url=context.get("back_url")
    )


def form_token_ok(request: Request, field: str | None) -> bool:
    return csrf.form_token_ok(request.cookies.get(csrf.COOKIE_NAME), field)
