"""Request dependencies: services, the authenticated user, admin checks, file helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from photoctl import users
from photoctl.api.app import Services


def services(request: Request) -> Services:
    return request.app.state.services


@dataclass(frozen=True)
class Caller:
    id: int
    name: str
    is_admin: bool


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise HTTPException(401, "Missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return authorization[7:].strip()


Svc = Annotated[Services, Depends(services)]


def caller(svc: Svc, authorization: Annotated[str | None, Header()] = None) -> Caller:
    token = _bearer(authorization)
    found = users.user_by_token(svc.database, token)
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
