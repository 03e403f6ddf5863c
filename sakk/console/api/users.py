"""Console users and their API tokens, as operators and auditors read them.

Changing them (add, role, disable, password, tokens) is a four-eyes proposal
(``/api/v1/proposals``) of the actions in ``engine.ops.users``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from engine.ledger.console import list_tokens, list_users
from sakk.console.api.common import Out, reading
from sakk.console.auth import Principal, require_reader

router = APIRouter(tags=["users"])


class UserOut(Out):
    name: str
    role: str
    bank_code: str | None
    disabled: bool
    created_at: datetime
    created_by: str
    changed_at: datetime


class TokenOut(Out):
    token_id: str
    user_name: str
    label: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None


class UserList(Out):
    users: list[UserOut]


class TokenList(Out):
    tokens: list[TokenOut]


@router.get("/users", response_model=UserList, summary="Console users and their roles")
def users(request: Request, who: Annotated[Principal, Depends(require_reader)]) -> UserList:
    with reading(request) as conn:
        found = list_users(conn)
    return UserList(users=[UserOut(**vars(u)) for u in found])


@router.get("/tokens", response_model=TokenList, summary="API tokens (never their secret)")
def tokens(request: Request, who: Annotated[Principal, Depends(require_reader)]) -> TokenList:
    with reading(request) as conn:
        found = list_tokens(conn)
    return TokenList(tokens=[TokenOut(**vars(t)) for t in found])
