"""Request dependencies: services, the authenticated user, admin checks, file helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from photoctl import users
from photoctl.api.app import Services


def services(request: Request) -> Services:
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


def bearer_token(credentials: BearerCredentials) -> str:
    """The token of the Authorization header; 401 when there is none."""
    if credentials is None or not credentials.credentials.strip():
        raise HTTPException(401, "Missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return credentials.credentials.strip()


Svc = Annotated[Services, Depends(services)]
BearerToken = Annotated[str, Depends(bearer_token)]


def caller(svc: Svc, token: BearerToken) -> Caller:
    found = users.user_by_token(svc.database, token, svc.settings.serve.login_token_ttl)
    if found is None:
        raise HTTPException(401, "Invalid token", headers={"WWW-Authenticate": "Bearer"})
    return Caller(*found)


CurrentUser = Annotated[Caller, Depends(caller)]


def admin(user: CurrentUser) -> Caller:
    if not user.is_admin:
        raise HTTPException(403, "Admins only")
    return user


AdminUser = Annotated[Caller, Depends(admin)]


def too_many(retry_after: float, what: str) -> HTTPException:
    return HTTPException(
        429,
        f"Too many {what}, try again later",
        headers={"Retry-After": str(int(retry_after + 0.999))},
    )
