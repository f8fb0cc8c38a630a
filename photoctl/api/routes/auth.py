"""Login with name and password, rate limited per name and per client address; logout."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from photoctl import users
from photoctl.api.deps import BearerToken, CurrentUser, Svc, too_many
from photoctl.ratelimit import address_key

router = APIRouter(tags=["auth"])


class Credentials(BaseModel):
    # No user's name holds a NUL (a command line cannot carry one), and PostgreSQL text cannot
    # store one: such a name is refused before it is looked up, not a server error.
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$")
    password: str = Field(min_length=1, max_length=1000)


class TokenAnswer(BaseModel):
    token: str


@router.post(
    "/api/login",
    response_model=TokenAnswer,
    responses={
        401: {"description": "Wrong name or password"},
        429: {"description": "Too many attempts"},
    },
)
def login(credentials: Credentials, request: Request, svc: Svc) -> TokenAnswer:
    """A new API token for a user with a password (see `photoctl users add --password`)."""
    address = address_key(request.client.host) if request.client else "unknown"
    limits = svc.limits
    waits = [
        limits.hit(limits.login, "login-name", credentials.name),
        limits.hit(limits.login, "login-address", address),
    ]
    blocked = [wait for wait in waits if wait is not None]
    if blocked:
        raise too_many(max(blocked), "login attempts")
    token = users.login(
        svc.database, credentials.name, credentials.password, svc.settings.serve.login_token_ttl
    )
    if token is None:
        raise HTTPException(401, "Invalid name or password")
    return TokenAnswer(token=token)


@router.post(
    "/api/logout",
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "The login token no longer works"},
        400: {"description": "The token is an API token (rotate it with `photoctl users token`)"},
        401: {"description": "Missing, invalid or expired token"},
    },
)
def logout(_: CurrentUser, token: BearerToken, svc: Svc) -> Response:
    """Revoke the login token this request presents (a token from /api/login)."""
    if not users.logout(svc.database, token):
        raise HTTPException(400, "Not a login token; API tokens are replaced by `users token`")
    return Response(status_code=204)
