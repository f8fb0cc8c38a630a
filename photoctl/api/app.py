"""The FastAPI application: routes, middleware and error answers around one ``Services``.

Nothing is built at import time. ``create_app(settings)`` is what tests call; ``app_from_env``
is the factory uvicorn imports in each of its worker processes (``photoctl serve`` passes the
data dir, database URL and config file through the environment). The lifespan opens the
process's services (services.py) and closes them at shutdown.

Imports point one way: app -> routes -> deps -> services; nothing imports this module back.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from photoctl import config
from photoctl.api import http_protocol
from photoctl.api.guard import DB_RETRY_AFTER_SECONDS, BodyGuard
from photoctl.api.log_redaction import redact_paths, redact_serve_logs
from photoctl.api.pages import (
    STATIC_DIR,
    ASGIApp,
    Message,
    PageHeaders,
    Receive,
    Scope,
    Send,
    with_security_headers,
)
from photoctl.api.routes import (
    admin,
    auth,
    bib_pages,
    event_pages,
    gallery_bibs,
    gallery_files,
    gallery_pages,
    health,
    me,
    photos,
)
from photoctl.api.services import open_services
from photoctl.config import Settings
from photoctl.errors import TransientError
from photoctl.imaging import return_large_buffers_to_the_system
from photoctl.logs import setup_logging

log = logging.getLogger(__name__)


class ServedBy:
    """ASGI middleware: the X-Photoctl-Worker header (this process's id) on every answer.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs each
    request through a task group and a memory stream, which cost every request ~0.1 ms of CPU
    for one header."""

    def __init__(self, app: ASGIApp, process_id: str) -> None:
        self.app = app
        self.header = (b"x-photoctl-worker", process_id.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), self.header]
            await send(message)

        await self.app(scope, receive, stamped)


class RelativeSlashRedirects:
    """ASGI middleware: the router's trailing-slash redirect (307) names a path, not a host.

    Starlette builds that redirect's Location from the request's Host header, so ``/healthz/``
    with ``Host: evil.example`` answered ``Location: http://evil.example/healthz``, which a cache
    or proxy in front could hand to everyone. Only that redirect answers 307 here (routes answer
    302 and 303), so a 307's Location is cut to its path and query, with one leading slash (two
    would name a host again).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def relative(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 307:
                message["headers"] = [
                    (key, _path_only(value) if key.lower() == b"location" else value)
                    for key, value in message.get("headers", ())
                ]
            await send(message)

        await self.app(scope, receive, relative)


def _path_only(location: bytes) -> bytes:
    parts = urlsplit(location)
    path = b"/" + parts.path.lstrip(b"/")
    return path + (b"?" + parts.query if parts.query else b"")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with open_services(settings) as services:
            app.state.services = services
            # Large buffers (decoded selfies) are given back to the system when freed.
            return_large_buffers_to_the_system()
            yield

    # /docs and /redoc with their assets served from the fastapi-offline package: they work on
    # a network without access to a CDN, and the API's pages load nothing from elsewhere.
    app = FastAPIOffline(
        static_url="/docs-static",
        # Swagger UI would otherwise show a badge image from validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
        title="photoctl",
        version="0.1.0",
        lifespan=lifespan,
        description="Event photos: your matched photos, the gallery, uploads, admin.",
    )
    for module in (
        health,
        auth,
        photos,
        me,
        admin,
        event_pages,
        bib_pages,
        gallery_pages,
        gallery_bibs,
        gallery_files,
    ):
        app.include_router(module.router)
    # The participant pages' script and style sheet, shipped inside the package.
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # Authenticates and size-checks a request before anything reads its body. Added first, so
    # it sits inside served_by: its BaseHTTPMiddleware runs the app in a task group, and an
    # error raised from a receive it wrapped would reach FastAPI as an exception group (400).
    app.add_middleware(BodyGuard)
    # Outside the guard, so its refusals of participant posts carry the pages' headers too.
    app.add_middleware(PageHeaders)
    # Which uvicorn worker answered: operators (and tests) can tell processes apart.
    app.add_middleware(ServedBy, process_id=str(os.getpid()))
    app.add_middleware(RelativeSlashRedirects)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": error.detail},
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg')}"
            for e in error.errors()
        )
        return JSONResponse({"detail": problems or "invalid request"}, status_code=422)

    @app.exception_handler(TransientError)
    async def unavailable(request: Request, error: TransientError) -> JSONResponse:
        # The database is unreachable or busy (db.translate_errors): the client may retry.
        log.warning("%s %s: %s", request.method, redact_paths(request.url.path), error)
        return JSONResponse(
            {"detail": "temporarily unavailable, try again later"},
            status_code=503,
            headers={"Retry-After": str(DB_RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        # The path may hold a gallery token: logged without it.
        log.exception("unhandled error on %s %s", request.method, redact_paths(request.url.path))
        # Starlette answers this outside every middleware: the headers PageHeaders would add.
        response = JSONResponse({"detail": "internal error"}, status_code=500)
        response.raw_headers[:] = with_security_headers(response.raw_headers)
        return response

    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory: settings from the environment and config file, as the CLI gave them."""
    settings = config.load()
    setup_logging(settings)
    redact_serve_logs()
    http_protocol.configure(settings)
    app = create_app(settings)
    freeze_startup_heap()
    return app


def freeze_startup_heap() -> None:
    """Leave what the imports and the app built (~160,000 objects, nearly all kept for the
    process's life) out of every later garbage collection.

    A full collection walks every tracked object: 40-90 ms for this heap, during which serve
    answers nobody, and scripts/bench_serve.py --probe caught one in a 30 s window (90 ms, every
    request in flight waiting for it). Frozen, the heap is still freed by reference counting;
    only cycles among these objects would never be collected, and they live as long as the
    process anyway. Only serve's own processes do this (tests build many apps in one process).
    """
    gc.collect()
    gc.freeze()
