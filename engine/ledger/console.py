"""The console's users, sessions and API tokens, as stored.

Secrets are never kept: a password as its argon2 hash (``engine.ops.users``), a session
id and a token's secret part as their SHA-256 (both are 32 random bytes, so a fast hash
is enough: nothing to guess). Operators change users through ``engine.ops.users``'s
audited actions; this module is their storage and the sign-in's lookups.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from engine.ledger.models import ApiToken, ConsoleSession, ConsoleUser, table_of
from engine.times import as_utc

USERS, SESSIONS, TOKENS = table_of(ConsoleUser), table_of(ConsoleSession), table_of(ApiToken)
MAX_USERS_LISTED = 10_000


@dataclass(frozen=True)
class UserRecord:
    name: str
    role: str
    bank_code: str | None
    disabled: bool
    created_at: datetime
    created_by: str
    changed_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """What the audit log and the API show of a user (never its password's hash)."""
        return {"name": self.name, "role": self.role, "bank_code": self.bank_code,
                "disabled": self.disabled}  # fmt: skip


@dataclass(frozen=True)
class TokenRecord:
    token_id: str
    user_name: str
    label: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _user(row: Any) -> UserRecord:
    return UserRecord(
        row.name, row.role, row.bank_code, bool(row.disabled), as_utc(row.created_at),
        row.created_by, as_utc(row.changed_at),
    )  # fmt: skip


_USER_COLUMNS = [USERS.c[n] for n in UserRecord.__dataclass_fields__]


def get_user(conn: Connection, name: str) -> UserRecord | None:
    row = conn.execute(select(*_USER_COLUMNS).where(USERS.c.name == name)).one_or_none()
    return None if row is None else _user(row)


def password_hash_of(conn: Connection, name: str) -> str | None:
    """The stored hash of an enabled user's password (None: no such user, or disabled)."""
    return conn.execute(
        select(USERS.c.password_hash).where(USERS.c.name == name, USERS.c.disabled.is_(False))
    ).scalar_one_or_none()


def list_users(conn: Connection) -> list[UserRecord]:
    query = select(*_USER_COLUMNS).order_by(USERS.c.name).limit(MAX_USERS_LISTED)
    return [_user(r) for r in conn.execute(query)]


def count_users(conn: Connection, role: str | None = None) -> int:
    query = select(USERS.c.name).where(USERS.c.disabled.is_(False))
    if role is not None:
        query = query.where(USERS.c.role == role)
    return len(conn.execute(query).all())


def insert_user(conn: Connection, user: UserRecord, password_hash: str) -> None:
    conn.execute(insert(USERS).values(
        name=user.name, role=user.role, bank_code=user.bank_code, password_hash=password_hash,
        disabled=user.disabled, created_at=user.created_at, created_by=user.created_by,
        changed_at=user.changed_at,
    ))  # fmt: skip


def update_user(conn: Connection, name: str, at: datetime, **values: Any) -> None:
    """Change a user's role, bank, disabled flag or password hash; its sessions end."""
    conn.execute(update(USERS).where(USERS.c.name == name).values(changed_at=at, **values))
    end_sessions_of(conn, name)


# Sessions ----------------------------------------------------------------------------


def create_session(
    conn: Connection, session_id: str, user_name: str, csrf_token: str, at: datetime,
    expires_at: datetime,
) -> None:  # fmt: skip
    conn.execute(insert(SESSIONS).values(
        id_hash=secret_digest(session_id), user_name=user_name, csrf_token=csrf_token,
        created_at=at, expires_at=expires_at,
    ))  # fmt: skip


@dataclass(frozen=True)
class SessionUser:
    """Who a session or a token belongs to, as the sign-in found them."""

    user: UserRecord
    csrf_token: str | None  # a session's; None for a token (no CSRF for bearer requests)
    expires_at: datetime | None


def session_user(conn: Connection, session_id: str, at: datetime) -> SessionUser | None:
    """The enabled user of an unexpired session, with its CSRF token; else None."""
    row = conn.execute(
        select(SESSIONS.c.csrf_token, SESSIONS.c.expires_at, *_USER_COLUMNS)
        .join(USERS, USERS.c.name == SESSIONS.c.user_name)
        .where(SESSIONS.c.id_hash == secret_digest(session_id), USERS.c.disabled.is_(False))
    ).one_or_none()
    if row is None or as_utc(row.expires_at) <= as_utc(at):
        return None
    return SessionUser(_user(row), row.csrf_token, as_utc(row.expires_at))


def end_session(conn: Connection, session_id: str) -> None:
    conn.execute(delete(SESSIONS).where(SESSIONS.c.id_hash == secret_digest(session_id)))


def end_sessions_of(conn: Connection, user_name: str) -> None:
    conn.execute(delete(SESSIONS).where(SESSIONS.c.user_name == user_name))


def purge_expired_sessions(conn: Connection, at: datetime) -> int:
    return conn.execute(delete(SESSIONS).where(SESSIONS.c.expires_at <= at)).rowcount or 0


# API tokens --------------------------------------------------------------------------


def insert_token(conn: Connection, token: TokenRecord, secret_hash: str) -> None:
    conn.execute(insert(TOKENS).values(
        token_id=token.token_id, secret_hash=secret_hash, user_name=token.user_name,
        label=token.label, created_at=token.created_at, created_by=token.created_by,
        expires_at=token.expires_at, revoked_at=None,
    ))  # fmt: skip


def _token(row: Any) -> TokenRecord:
    def when(v: datetime | None) -> datetime | None:
        return None if v is None else as_utc(v)

    return TokenRecord(
        row.token_id, row.user_name, row.label, as_utc(row.created_at), row.created_by,
        when(row.expires_at), when(row.revoked_at),
    )  # fmt: skip


_TOKEN_COLUMNS = [TOKENS.c[n] for n in TokenRecord.__dataclass_fields__]


def get_token(conn: Connection, token_id: str) -> TokenRecord | None:
    row = conn.execute(select(*_TOKEN_COLUMNS).where(TOKENS.c.token_id == token_id)).one_or_none()
    return None if row is None else _token(row)


def list_tokens(conn: Connection, user_name: str | None = None) -> list[TokenRecord]:
    query = select(*_TOKEN_COLUMNS).order_by(TOKENS.c.created_at, TOKENS.c.token_id)
    if user_name is not None:
        query = query.where(TOKENS.c.user_name == user_name)
    return [_token(r) for r in conn.execute(query.limit(MAX_USERS_LISTED))]


def revoke_token(conn: Connection, token_id: str, at: datetime) -> None:
    conn.execute(update(TOKENS).where(TOKENS.c.token_id == token_id).values(revoked_at=at))


def token_user(conn: Connection, token_id: str, secret: str, at: datetime) -> SessionUser | None:
    """The enabled user of a valid, unrevoked, unexpired token; else None."""
    row = conn.execute(
        select(TOKENS.c.secret_hash, TOKENS.c.expires_at, TOKENS.c.revoked_at, *_USER_COLUMNS)
        .join(USERS, USERS.c.name == TOKENS.c.user_name)
        .where(TOKENS.c.token_id == token_id, USERS.c.disabled.is_(False))
    ).one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_hash, secret_digest(secret)):
        return None
    if row.expires_at is not None and as_utc(row.expires_at) <= as_utc(at):
        return None
    return SessionUser(_user(row), None, None if row.expires_at is None else as_utc(row.expires_at))
