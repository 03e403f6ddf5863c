"""Who is asking: a browser session (cookie) or a machine (bearer token), and its role.

Every route depends on one of :func:`require_operator`, :func:`require_reader` or
:func:`require_any`; the server decides, never the page. A browser session is a random
id in the ``sakk_session`` cookie (``HttpOnly``, ``SameSite=Strict``, ``Secure`` unless
configured off), kept as its SHA-256 with its CSRF token and its end; every request that
changes something with a cookie carries that token (header ``X-CSRF-Token`` or form field
``csrf_token``). A bearer token (``Authorization: Bearer sakk_...``) needs no CSRF token:
a browser never sends it on its own.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from engine.ledger import console as store
from engine.ops.users import parse_token, verify_password
from engine.read.audience import Audience, Role
from sakk.console.config import ConsoleConfig
from sakk.console.errors import ConsoleError, forbidden, unauthenticated

SESSION_COOKIE = "sakk_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_ID_BYTES = 32
MAX_COOKIE_CHARS = 128


@dataclass(frozen=True)
class Principal:
    """A signed-in user as the routes see it."""

    name: str
    role: Role
    bank_code: str | None
    csrf_token: str | None = None  # a browser session's; None for a bearer token
    via_token: bool = False

    @property
    def audience(self) -> Audience:
        return Audience(self.role, self.bank_code)

    def as_dict(self) -> dict[str, str | None]:
        return {"name": self.name, "role": self.role.value, "bank_code": self.bank_code}


def _principal_of(found: store.SessionUser, via_token: bool) -> Principal:
    user = found.user
    return Principal(user.name, Role(user.role), user.bank_code, found.csrf_token, via_token)


class LoginLimiter:
    """Refused sign-ins per name and per client address in a sliding window.

    At ``max_failures`` within ``window_s`` further attempts on that name or from that
    address are refused (429) without checking the password, until the oldest ages out.
    Kept in this process's memory, at most ``tracked_keys`` keys (the least recent go):
    one console process per ledger (docs/console.md says so).
    """

    def __init__(self, max_failures: int, window_s: int, tracked_keys: int) -> None:
        self.max_failures, self.window_s, self.tracked_keys = max_failures, window_s, tracked_keys
        self._failures: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, at: datetime) -> deque[datetime]:
        times = self._failures.get(key) or deque()
        while times and times[0] <= at - timedelta(seconds=self.window_s):
            times.popleft()
        return times

    def blocked(self, keys: list[str], at: datetime) -> bool:
        with self._lock:
            return any(len(self._recent(k, at)) >= self.max_failures for k in keys)

    def failed(self, keys: list[str], at: datetime) -> None:
        with self._lock:
            for key in keys:
                times = self._recent(key, at)
                times.append(at)
                self._failures[key] = times
                self._failures.move_to_end(key)
            while len(self._failures) > self.tracked_keys:
                self._failures.popitem(last=False)

    def succeeded(self, name_key: str) -> None:
        with self._lock:
            self._failures.pop(name_key, None)


@dataclass(frozen=True)
class NewSession:
    session_id: str
    principal: Principal
    expires_at: datetime


def login_keys(name: str, address: str) -> list[str]:
    return [f"name:{name.lower()}", f"addr:{address}"]


def sign_in(
    engine: Engine, config: ConsoleConfig, limiter: LoginLimiter, name: str, password: str,
    address: str, at: datetime,
) -> NewSession:  # fmt: skip
    """A new session for ``name`` if its password matches; else 401, or 429 when limited."""
    keys = login_keys(name, address)
    if limiter.blocked(keys, at):
        raise ConsoleError(
            429, "too_many_attempts",
            f"too many refused sign-ins: try again within {config.login_window_s} s",
        )  # fmt: skip
    with engine.connect() as conn:
        stored = store.password_hash_of(conn, name)
        user = store.get_user(conn, name) if stored else None
    matches = verify_password(stored, password)  # an argon2 check even for an unknown name
    if user is None or not matches:
        limiter.failed(keys, at)
        raise unauthenticated("wrong name or password")
    limiter.succeeded(keys[0])
    session_id, csrf = secrets.token_urlsafe(SESSION_ID_BYTES), secrets.token_urlsafe(32)
    expires = at + timedelta(seconds=config.session_ttl_s)
    with engine.begin() as conn:
        store.purge_expired_sessions(conn, at)
        store.create_session(conn, session_id, name, csrf, at, expires)
    principal = Principal(user.name, Role(user.role), user.bank_code, csrf)
    return NewSession(session_id, principal, expires)


def sign_out(engine: Engine, session_id: str) -> None:
    with engine.begin() as conn:
        store.end_session(conn, session_id)


def _lookup(engine: Engine, request: Request, at: datetime) -> Principal | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, text = header.partition(" ")
        parsed = parse_token(text.strip()) if scheme.lower() == "bearer" else None
        if parsed is None:
            raise unauthenticated("an Authorization header holds Bearer and a console token")
        with engine.connect() as conn:
            found = store.token_user(conn, parsed[0], parsed[1], at)
        if found is None:
            raise unauthenticated("token unknown, revoked or expired")
        return _principal_of(found, via_token=True)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or len(cookie) > MAX_COOKIE_CHARS:
        return None
    with engine.connect() as conn:
        found = store.session_user(conn, cookie, at)
    return None if found is None else _principal_of(found, via_token=False)


async def _check_csrf(request: Request, who: Principal) -> None:
    if who.via_token or request.method in SAFE_METHODS:
        return
    given = request.headers.get(CSRF_HEADER)
    content_type = request.headers.get("content-type", "")
    if given is None and content_type.startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not given or not who.csrf_token or not hmac.compare_digest(given, who.csrf_token):
        raise forbidden(f"missing or wrong CSRF token (header {CSRF_HEADER} or {CSRF_FIELD})")


async def principal(request: Request) -> Principal:
    """The signed-in caller (401 when none); a cookie's unsafe request also needs its CSRF."""
    state = request.app.state
    who = await run_in_threadpool(_lookup, state.engine, request, state.clock())
    if who is None:
        raise unauthenticated()
    await _check_csrf(request, who)
    return who


def _require(*roles: Role) -> Callable[[Principal], Principal]:
    allowed = " or ".join(r.value for r in roles)

    def check(who: Principal = Depends(principal)) -> Principal:  # noqa: B008
        if who.role not in roles:
            raise forbidden(f"{who.role.value} may not: this needs {allowed}")
        return who

    return check


require_operator = _require(Role.OPERATOR)
require_reader = _require(Role.OPERATOR, Role.AUDITOR)
require_any = _require(Role.OPERATOR, Role.AUDITOR, Role.BANK)
