"""A gate in front of every request body: authenticate and size-check before reading a byte.

FastAPI parses a request's body (spooling multipart files to a temporary file) before it runs
the route's dependencies, so a check done by the ``CurrentUser`` dependency comes after a
stranger's 400 MB has reached the disk. This pure ASGI middleware runs first: a request that
carries a body is refused with 401 when its bearer token is missing or wrong, and with 413 when
its declared ``Content-Length`` exceeds what its route accepts, without reading the body. A body
sent without a length (chunked) is counted as it is read and cut off with 413 at the limit.
A body that has not arrived whole ``serve.body_timeout_seconds`` after its request's headers is
cut off with 408 and the connection closed: a client trickling a selfie a byte at a time would
otherwise hold a socket (and a file descriptor) for as long as it likes.

A participant's post (event pages and galleries, /e/ and /g/ and their /api/ twins) carries no
bearer token: participant_gate.py checks it instead (cross-site posts, enrollment rates), on
every such post, with a body or without; the size limits are the same for everyone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from anyio import fail_after, to_thread
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from photoctl.api import participant_gate
from photoctl.api.deps import AUTHENTICATED, lookup_caller
from photoctl.api.services import Services
from photoctl.config import Settings
from photoctl.errors import TransientError

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Routes that take a body from callers without a token (login posts a name and a password).
PUBLIC_BODY_PATHS = frozenset({"/api/login"})
# Multipart framing (boundaries, part headers, a small album field) around the file itself.
MULTIPART_SLACK_BYTES = 64 * 1024
# Every other body is a small JSON document.
SMALL_BODY_BYTES = 64 * 1024
DB_RETRY_AFTER_SECONDS = 5


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body without a declared length passes its limit.

    An HTTPException, so FastAPI's body parsing lets it through to the 413 handler instead of
    turning it into a 400 "error parsing the body".
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit:,} bytes")


class BodyTimeout(HTTPException):
    """Raised from ``receive`` when the body is not complete by its deadline; an HTTPException
    for the same reason as BodyTooLarge. The connection is closed with the answer, so the rest
    of the body is never waited for."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408, f"request body not received within {seconds:g} seconds", {"Connection": "close"}
        )


def body_limit(path: str, settings: Settings) -> int:
    """The largest body a route accepts: an image (plus multipart framing) or a small JSON."""
    if path == "/api/photos":
        return settings.ingest.max_bytes + MULTIPART_SLACK_BYTES
    if path == "/api/me/selfie" or participant_gate.takes_selfie(path):
        return settings.serve.selfie_max_bytes + MULTIPART_SLACK_BYTES
    return SMALL_BODY_BYTES


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _has_body(scope: Scope) -> bool:
    # Any Transfer-Encoding means a body, whatever Content-Length says: h11 frames the body by
    # Transfer-Encoding, so "Content-Length: 0" beside "chunked" must not pass as bodiless.
    if _header(scope, b"transfer-encoding") is not None:
        return True
    length = _header(scope, b"content-length")
    return length is not None and length.strip() not in ("", "0")


class BodyGuard:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        services: Services = scope["app"].state.services
        seconds = services.settings.serve.body_timeout_seconds
        participant = participant_gate.is_participant_post(scope)
        if not participant and not _has_body(scope):
            # Counted all the same: a body the headers did not announce is cut off at once.
            await self.app(scope, _counting(receive, 0, seconds), send)
            return
        path = scope.get("path", "")
        refusal: Response | None = None
        if participant:
            refusal = await to_thread.run_sync(participant_gate.refusal, services, scope)
        elif path not in PUBLIC_BODY_PATHS:
            refusal = await to_thread.run_sync(self._authenticate, services, scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if not _has_body(scope):
            await self.app(scope, _counting(receive, 0, seconds), send)
            return
        limit = body_limit(path, services.settings)
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > limit
            except ValueError:
                await JSONResponse({"detail": "invalid Content-Length"}, 400)(scope, receive, send)
                return
            if too_large:
                # A participant reads a sentence, not the limit in bytes.
                answer = participant_gate.too_large(scope) if participant else _too_large(limit)
                await answer(scope, receive, send)
                return
        await self.app(scope, _counting(receive, limit, seconds), send)

    @staticmethod
    def _authenticate(services: Services, scope: Scope) -> JSONResponse | None:
        header = _header(scope, b"authorization") or ""
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise HTTPException(
                    401, "Missing bearer token", headers={"WWW-Authenticate": "Bearer"}
                )
            known = lookup_caller(services, token.strip())
        except HTTPException as error:
            return JSONResponse({"detail": error.detail}, error.status_code, headers=error.headers)
        except TransientError as error:
            log.warning("authentication before the body: %s", error)
            return JSONResponse(
                {"detail": "temporarily unavailable, try again later"},
                503,
                headers={"Retry-After": str(DB_RETRY_AFTER_SECONDS)},
            )
        # The route's CurrentUser takes it from here instead of asking the database again.
        scope.setdefault("state", {})[AUTHENTICATED] = (token.strip(), known)
        return None


def _too_large(limit: int) -> JSONResponse:
    # The body stays unread: the server closes the connection after this answer.
    return JSONResponse({"detail": f"request body larger than {limit:,} bytes"}, 413)


def _counting(receive: Receive, limit: int, seconds: float) -> Receive:
    """``receive`` cut off past ``limit`` bytes, or ``seconds`` from now while the body is
    incomplete (after it, a receive waits for the client to go away: never timed)."""
    seen = 0
    deadline = time.monotonic() + seconds
    complete = False

    async def counted() -> Message:
        nonlocal seen, complete
        if complete:
            return await receive()
        try:
            with fail_after(max(0.0, deadline - time.monotonic())):
                message = await receive()
        except TimeoutError:
            raise BodyTimeout(seconds) from None
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
            complete = not message.get("more_body", False)
        else:
            complete = True
        return message

    return counted
