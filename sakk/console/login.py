"""The sign-in form (``/login``) and signing out (``/logout``) for browsers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from sakk.console.api.session import clear_session_cookie, client_address, set_session_cookie
from sakk.console.auth import SESSION_COOKIE, Principal, principal, sign_in, sign_out
from sakk.console.errors import ConsoleError

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (never ``//host``)."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target[:500]
    return "/"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:  # noqa: A002
    return TEMPLATES.TemplateResponse(
        request, "login.html", {"next": safe_next(next), "error": None}
    )


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    name: Annotated[str, Form(min_length=1, max_length=64)],
    password: Annotated[str, Form(min_length=1, max_length=1_024)],
    next: Annotated[str | None, Form(max_length=500)] = None,  # noqa: A002
) -> Response:
    state = request.app.state
    try:
        new = sign_in(
            state.engine, state.config, state.limiter, name, password, client_address(request),
            state.clock(),
        )  # fmt: skip
    except ConsoleError as exc:
        context = {"next": safe_next(next), "error": exc.message}
        return TEMPLATES.TemplateResponse(request, "login.html", context, status_code=exc.status)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(request, response, new.session_id, new.expires_at)
    return response


@router.post("/logout")
def logout(request: Request, who: Annotated[Principal, Depends(principal)]) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and not who.via_token:
        sign_out(request.app.state.engine, cookie)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(request, response)
    return response
