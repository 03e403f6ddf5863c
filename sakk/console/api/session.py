"""Signing in and out from a script or a page's own requests (JSON); ``/login`` is the form."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from sakk.console.auth import SESSION_COOKIE, Principal, principal, sign_in, sign_out
from sakk.console.errors import ErrorBody

router = APIRouter(tags=["session"])


class Credentials(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1_024)


class SessionOut(BaseModel):
    name: str
    role: str
    bank_code: str | None
    csrf_token: str | None  # send it back as X-CSRF-Token on every change (None: bearer)


def _out(who: Principal) -> SessionOut:
    return SessionOut(
        name=who.name, role=who.role.value, bank_code=who.bank_code, csrf_token=who.csrf_token
    )


def set_session_cookie(
    request: Request, response: Response, session_id: str, expires_at: datetime
) -> None:
    config = request.app.state.config
    response.set_cookie(
        SESSION_COOKIE, session_id, max_age=config.session_ttl_s, expires=expires_at,
        path="/", secure=config.secure_cookies, httponly=True, samesite="strict",
    )  # fmt: skip


def clear_session_cookie(request: Request, response: Response) -> None:
    config = request.app.state.config
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=config.secure_cookies, httponly=True, samesite="strict"
    )


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post(
    "/session", response_model=SessionOut, summary="Sign in: sets the session cookie",
    responses={429: {"model": ErrorBody, "description": "Too many refused sign-ins"}},
)  # fmt: skip
def create(request: Request, response: Response, credentials: Credentials) -> SessionOut:
    state = request.app.state
    new = sign_in(
        state.engine, state.config, state.limiter, credentials.name, credentials.password,
        client_address(request), state.clock(),
    )  # fmt: skip
    set_session_cookie(request, response, new.session_id, new.expires_at)
    return _out(new.principal)


@router.get("/session", response_model=SessionOut, summary="Who is signed in")
def show(who: Annotated[Principal, Depends(principal)]) -> SessionOut:
    return _out(who)


@router.delete("/session", status_code=204, summary="Sign out (needs the CSRF token)")
def delete(
    request: Request, response: Response, who: Annotated[Principal, Depends(principal)]
) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and not who.via_token:
        sign_out(request.app.state.engine, cookie)
    response = Response(status_code=204)
    clear_session_cookie(request, response)
    return response
