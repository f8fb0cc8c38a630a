"""Request dependencies: services, the authenticated user, admin checks, who sees which photos."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from photoctl import users
from photoctl.api.services import Services
from photoctl.config import Settings

# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency in its
# thread pool, and the hand-off to a thread and back cost each request more than what they do.


async def services(request: Request) -> Services:
    """The process's services, opened by the app's lifespan (services.open_services)."""
    return request.app.state.services


@dataclass(frozen=True)
class Caller:
    id: int
    name: str
    is_admin: bool


# Declares the bearer scheme in the OpenAPI schema (Swagger UI's "Authorize" button). It does
# not answer by itself (auto_error=False): its own 403 would replace our 401 + WWW-Authenticate.
_bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An API token (`photoctl users add`/`users token`) or one from /api/login",
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)]


async def bearer_token(credentials: BearerCredentials) -> str:
    """The token of the Authorization header; 401 when there is none."""
    if credentials is None or not credentials.credentials.strip():
        raise HTTPException(401, "Missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return credentials.credentials.strip()


Svc = Annotated[Services, Depends(services)]
BearerToken = Annotated[str, Depends(bearer_token)]


# Where the body guard (guard.py) leaves the caller it authenticated, in the request's state.
AUTHENTICATED = "photoctl_caller"


def lookup_caller(svc: Services, token: str) -> Caller:
    """The user a token belongs to; 401 when it belongs to nobody (or has expired)."""
    found = users.user_by_token(svc.database, token, svc.settings.serve.login_token_ttl)
    if found is None:
        raise HTTPException(401, "Invalid token", headers={"WWW-Authenticate": "Bearer"})
    return Caller(*found)


async def caller(request: Request, svc: Svc, token: BearerToken) -> Caller:
    """The authenticated caller. A request with a body was authenticated by the body guard
    before its body was read, with this same token: that answer is used, not asked again."""
    known = getattr(request.state, AUTHENTICATED, None)
    if known is not None and known[0] == token:
        return known[1]
    return await run_in_threadpool(lookup_caller, svc, token)


CurrentUser = Annotated[Caller, Depends(caller)]


async def admin(user: CurrentUser) -> Caller:
    if not user.is_admin:
        raise HTTPException(403, "Admins only")
    return user


AdminUser = Annotated[Caller, Depends(admin)]


def only_photos_of(user: Caller, settings: Settings) -> int | None:
    """The one user whose photos ``user`` may see, or None when they may see every photo.

    The gallery rule, in one place for every route that lists or hands out photos: admins see
    everything, and so does every user where serve.gallery = users; otherwise a user sees the
    photos they were recognised in.
    """
    if user.is_admin or settings.serve.gallery == "users":
        return None
    return user.id


def too_many(retry_after: float, what: str) -> HTTPException:
    return HTTPException(
        429,
        f"Too many {what}, try again later",
        headers={"Retry-After": str(int(retry_after + 0.999))},
    )
