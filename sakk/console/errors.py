"""The console's errors: JSON ``{"error": code, "message": text}`` on the API.

A bank asking for another bank's payment gets the very body of a payment that does not
exist: the read side raises the same :class:`~engine.read.exceptions.NotVisibleError`
with the same words for both, and it is answered here unchanged.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from engine.audit.window_lifecycle import TransitionRefused
from engine.ops.action import ActionRefusedError
from engine.read.exceptions import NotVisibleError, ReadError

API_PREFIX = "/api/"


class ErrorBody(BaseModel):
    error: str
    message: str


class ConsoleError(Exception):
    """An answer other than success: its HTTP status, a stable code and words for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def unauthenticated(message: str = "sign in first (a session or a bearer token)") -> ConsoleError:
    return ConsoleError(401, "unauthenticated", message)


def forbidden(message: str) -> ConsoleError:
    return ConsoleError(403, "forbidden", message)


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


# Statuses every API route may answer with, documented once in the OpenAPI document.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad request (a filter, a cursor, a page size)"},
    401: {"model": ErrorBody, "description": "Not signed in"},
    403: {"model": ErrorBody, "description": "Signed in, but this role may not"},
    404: {"model": ErrorBody, "description": "Not found (or not visible to this caller)"},
}


def _console_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConsoleError)
    if exc.status == 401 and not request.url.path.startswith(API_PREFIX):
        back = f"?next={quote(request.url.path)}" if request.method == "GET" else ""
        return RedirectResponse(f"/login{back}", status_code=303)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    response = error_response(exc.status, exc.code, exc.message)
    if headers:
        response.headers.update(headers)
    return response


def _not_visible(request: Request, exc: Exception) -> Response:
    return error_response(404, "not_found", str(exc))


def _read_error(request: Request, exc: Exception) -> Response:
    return error_response(400, "bad_request", str(exc))


def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ActionRefusedError)
    return error_response(409, "refused", exc.reason, action=exc.action)


def _conflict(request: Request, exc: Exception) -> Response:
    return error_response(409, "refused", str(exc))


def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Never echo what was sent (a password, an account number): where and what was wrong only.
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()]  # fmt: skip
    words = "; ".join(f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}" for d in detail)
    return error_response(422, "invalid_request", words[:1_000], detail=detail)


def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.status_code, "error"
    )
    response = error_response(exc.status_code, code, str(exc.detail))
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(allowed_methods(request))
    return response


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of this path answers (several routes may share a path)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        regex, _, _ = compile_path(str(route.path))
        if regex.match(request.url.path):
            methods |= set(getattr(route.route, "methods", None) or ())
    return sorted(methods)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ConsoleError, _console_error)
    app.add_exception_handler(NotVisibleError, _not_visible)
    app.add_exception_handler(ReadError, _read_error)
    app.add_exception_handler(ActionRefusedError, _refused)
    app.add_exception_handler(TransitionRefused, _conflict)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
