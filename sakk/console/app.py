"""The console's application: its routes, its errors, its state (the ledger, the clock)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response
from sqlalchemy import Engine

from engine.config import Settings, load_settings
from engine.ledger.database import make_engine
from sakk.console import errors, login, pages
from sakk.console.auth import SAFE_METHODS, LoginLimiter
from sakk.console.config import ConsoleConfig
from sakk.console.routes import api_router

API_TITLE = "Sakk console API"
API_VERSION = "1"
OPENAPI_URL = "/api/v1/openapi.json"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: under no-referrer a browser sends ``Origin: null`` with
    # the console's own forms, and the same-origin check below would refuse every one.
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
}


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    config: ConsoleConfig,
    engine: Engine | None = None,
    clock: Callable[[], datetime] = utc_now,
    settings: Settings | None = None,
) -> FastAPI:
    """The console over the ledger at ``config.database_url`` (or ``engine``, already open).

    ``settings``: the switch's (its broker, for a redrive or a window's close to publish);
    without them, the defaults: no broker, so those actions record only or are refused.
    """
    app = FastAPI(
        title=API_TITLE, version=API_VERSION, openapi_url=OPENAPI_URL,
        docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None,  # no CDN scripts
        description="Operators, auditors and each bank: what they see and do (docs/console.md).",
    )  # fmt: skip
    app.state.config = config
    app.state.engine = engine or make_engine(config.database_url, pool_size=config.db_pool_size)
    app.state.clock = clock
    app.state.settings = settings or load_settings(environ={}, database_url=config.database_url)
    app.state.limiter = LoginLimiter(
        config.login_max_failures, config.login_window_s, config.login_tracked_keys
    )
    errors.install(app)
    app.include_router(api_router)
    app.include_router(login.router)
    pages.install(app)
    _middleware(app, config)
    return app


def same_origin(request: Request) -> bool:
    """Whether a request that changes something came from this site (or names no origin:
    not a browser, or one that sends none; the session's CSRF token still stands)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


def _middleware(app: FastAPI, config: ConsoleConfig) -> None:
    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > config.max_body_bytes):
            return errors.error_response(
                413, "too_large", f"a request body is at most {config.max_body_bytes} bytes"
            )
        if request.method not in SAFE_METHODS and not same_origin(request):
            return errors.error_response(
                403, "forbidden", "a change must come from the console's own pages"
            )
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if request.url.path.startswith(errors.API_PREFIX):
            response.headers["Cache-Control"] = "no-store"
        return response
