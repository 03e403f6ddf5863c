"""The console's users and their API tokens, changed by operators as audited actions.

Each is an :class:`~engine.ops.action.Action` (load, decide, apply, with its audit record
holding the old and new values), so that four eyes can hold one as a proposal and run it
once approved. No action holds a secret: a password arrives as its argon2 hash
(:func:`hash_password`), a token as its id and the SHA-256 of its secret
(:func:`new_token`); the audit log names who changed what, never a hash.

Rules: a name is 1 to 64 letters, digits, ``.``, ``_``, ``-`` or ``@``; a bank user names
one bank the ledger knows, the others none; the last enabled operator is never disabled
nor given another role (nobody could manage users after).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, select

from engine.ledger import console as store
from engine.ledger.models import Bank, table_of
from engine.ops.action import Plan, Refused
from engine.read.audience import BANK_CODE, Role

USER_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1_024  # argon2 takes any length; a bound keeps hashing cheap to refuse
TOKEN_PREFIX = "sakk_"
TOKEN_ID_BYTES = 6  # 8 URL-safe characters: the public part, to find the row
TOKEN_SECRET_BYTES = 32
MAX_TOKEN_LABEL_CHARS = 64
MAX_TOKEN_TTL_S = 366 * 86_400

_HASHER = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters


class PasswordPolicyError(ValueError):
    """A password refused before it is hashed: too short or too long."""


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (refused when shorter than MIN_PASSWORD_CHARS)."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise PasswordPolicyError(
            f"a password is {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        )
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; with no hash (no such user) a dummy check runs anyway,
    so the time taken does not tell that the name is unknown."""
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class NewToken:
    """A token as issued: ``text`` is shown once to whoever asked, then only its hash is kept."""

    token_id: str
    secret_hash: str
    text: str


def new_token() -> NewToken:
    token_id = secrets.token_urlsafe(TOKEN_ID_BYTES)
    secret = secrets.token_urlsafe(TOKEN_SECRET_BYTES)
    return NewToken(token_id, store.secret_digest(secret), f"{TOKEN_PREFIX}{token_id}.{secret}")


def parse_token(text: str) -> tuple[str, str] | None:
    """(token id, secret) of a bearer token's text, or None when it is not one of ours."""
    if not text.startswith(TOKEN_PREFIX) or len(text) > 200:
        return None
    token_id, dot, secret = text[len(TOKEN_PREFIX) :].partition(".")
    return (token_id, secret) if dot and token_id and secret else None


@dataclass(frozen=True)
class _State:
    user: store.UserRecord | None
    enabled_operators: int
    bank_known: bool


def _load(conn: Connection, name: str, bank_code: str | None) -> _State:
    banks = table_of(Bank)
    known = bank_code is not None and conn.execute(
        select(banks.c.code).where(banks.c.code == bank_code)
    ).first() is not None  # fmt: skip
    return _State(store.get_user(conn, name), store.count_users(conn, Role.OPERATOR.value), known)


def _check_role(role: str, bank_code: str | None, bank_known: bool) -> str | None:
    if role not in {r.value for r in Role}:
        return f"role {role!r}: expected operator, auditor or bank"
    if (role == Role.BANK.value) != (bank_code is not None):
        return "a bank user names exactly one bank (--bank); operators and auditors none"
    if bank_code is not None and not (BANK_CODE.match(bank_code) and bank_known):
        return f"no bank {bank_code!r} in the ledger's reference data"
    return None


def _last_operator(state: _State) -> bool:
    u = state.user
    return (
        u is not None and u.role == Role.OPERATOR.value and not u.disabled
        and state.enabled_operators <= 1
    )  # fmt: skip


@dataclass(frozen=True)
class CreateUser:
    name: ClassVar[str] = "user.create"
    user_name: str
    role: str
    bank_code: str | None
    password_hash: str
    created_by: str

    def load(self, conn: Connection) -> _State:
        return _load(conn, self.user_name, self.bank_code)

    def decide(self, state: _State, at: datetime) -> Plan | Refused:
        if not USER_NAME.match(self.user_name):
            return Refused(f"user name {self.user_name!r}: 1 to 64 letters, digits or ._@-")
        if state.user is not None:
            return Refused(f"user {self.user_name} exists already")
        wrong = _check_role(self.role, self.bank_code, state.bank_known)
        if wrong:
            return Refused(wrong)
        new = {"name": self.user_name, "role": self.role, "bank_code": self.bank_code,
               "disabled": False}  # fmt: skip
        return Plan(f"user {self.user_name}", None, new, at)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> store.UserRecord:
        user = store.UserRecord(
            self.user_name, self.role, self.bank_code, False, plan.changes, self.created_by,
            plan.changes,
        )  # fmt: skip
        store.insert_user(conn, user, self.password_hash)
        return user


def _existing(state: _State, name: str) -> store.UserRecord | Refused:
    return state.user if state.user is not None else Refused(f"no user {name}")


@dataclass(frozen=True)
class ChangeRole:
    """Give a user another role (and bank); its sessions end."""

    name: ClassVar[str] = "user.role"
    user_name: str
    role: str
    bank_code: str | None

    def load(self, conn: Connection) -> _State:
        return _load(conn, self.user_name, self.bank_code)

    def decide(self, state: _State, at: datetime) -> Plan | Refused:
        user = _existing(state, self.user_name)
        if isinstance(user, Refused):
            return user
        wrong = _check_role(self.role, self.bank_code, state.bank_known)
        if wrong:
            return Refused(wrong)
        old = {"role": user.role, "bank_code": user.bank_code}
        new = {"role": self.role, "bank_code": self.bank_code}
        if old == new:
            return Plan(f"user {self.user_name}", old, new, noop=True)
        if self.role != Role.OPERATOR.value and _last_operator(state):
            return Refused(f"{self.user_name} is the last enabled operator")
        return Plan(f"user {self.user_name}", old, new, at)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> None:
        store.update_user(conn, self.user_name, plan.changes, **plan.new)


@dataclass(frozen=True)
class SetDisabled:
    """Disable a user (its sessions end, its tokens stop working) or enable it again."""

    name: ClassVar[str] = "user.disable"
    user_name: str
    disabled: bool = True

    def load(self, conn: Connection) -> _State:
        return _load(conn, self.user_name, None)

    def decide(self, state: _State, at: datetime) -> Plan | Refused:
        user = _existing(state, self.user_name)
        if isinstance(user, Refused):
            return user
        old, new = {"disabled": user.disabled}, {"disabled": self.disabled}
        if old == new:
            return Plan(f"user {self.user_name}", old, new, noop=True)
        if self.disabled and _last_operator(state):
            return Refused(f"{self.user_name} is the last enabled operator")
        return Plan(f"user {self.user_name}", old, new, at)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> None:
        store.update_user(conn, self.user_name, plan.changes, disabled=self.disabled)


@dataclass(frozen=True)
class ResetPassword:
    """Set a user's password (given as its hash); its sessions end."""

    name: ClassVar[str] = "user.password"
    user_name: str
    password_hash: str

    def load(self, conn: Connection) -> _State:
        return _load(conn, self.user_name, None)

    def decide(self, state: _State, at: datetime) -> Plan | Refused:
        user = _existing(state, self.user_name)
        if isinstance(user, Refused):
            return user
        # The log says the password changed; it never keeps a hash of it.
        return Plan(f"user {self.user_name}", {"password": "old"}, {"password": "reset"}, at)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> None:
        store.update_user(conn, self.user_name, plan.changes, password_hash=self.password_hash)


@dataclass(frozen=True)
class IssueToken:
    """An API token for a user's machine; ``ttl_s`` None: until revoked."""

    name: ClassVar[str] = "user.token.issue"
    user_name: str
    token_id: str
    secret_hash: str
    label: str
    issued_by: str
    ttl_s: int | None = None

    def load(self, conn: Connection) -> _State:
        return _load(conn, self.user_name, None)

    def decide(self, state: _State, at: datetime) -> Plan | Refused:
        user = _existing(state, self.user_name)
        if isinstance(user, Refused):
            return user
        if not 1 <= len(self.label) <= MAX_TOKEN_LABEL_CHARS:
            return Refused(f"a token's label is 1 to {MAX_TOKEN_LABEL_CHARS} characters")
        if self.ttl_s is not None and not 1 <= self.ttl_s <= MAX_TOKEN_TTL_S:
            return Refused(f"a token lives 1 to {MAX_TOKEN_TTL_S} seconds")
        expires = None if self.ttl_s is None else at + timedelta(seconds=self.ttl_s)
        new = {"token_id": self.token_id, "label": self.label,
               "expires_at": None if expires is None else expires.isoformat()}  # fmt: skip
        return Plan(f"user {self.user_name}", None, new, (at, expires))

    def apply(self, conn: Connection, plan: Plan, seq: int) -> store.TokenRecord:
        at, expires = plan.changes
        token = store.TokenRecord(
            self.token_id, self.user_name, self.label, at, self.issued_by, expires, None
        )
        store.insert_token(conn, token, self.secret_hash)
        return token


@dataclass(frozen=True)
class RevokeToken:
    name: ClassVar[str] = "user.token.revoke"
    token_id: str

    def load(self, conn: Connection) -> store.TokenRecord | None:
        return store.get_token(conn, self.token_id)

    def decide(self, token: store.TokenRecord | None, at: datetime) -> Plan | Refused:
        if token is None:
            return Refused(f"no token {self.token_id}")
        target = f"token {self.token_id} of {token.user_name}"
        if token.revoked_at is not None:
            return Plan(target, {"revoked": True}, {"revoked": True}, noop=True)
        return Plan(target, {"revoked": False}, {"revoked": True}, at)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> Any:
        store.revoke_token(conn, self.token_id, plan.changes)
