"""Users and their roles: listed for operators and auditors; adding a user, changing a role,
disabling or enabling one are proposals a second operator approves (four eyes). A
proposal never holds a password: only its argon2 hash (``engine.ops.users``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from engine.ledger.console import list_users
from engine.ops.users import (
    ChangeRole,
    CreateUser,
    PasswordPolicyError,
    SetDisabled,
    hash_password,
)
from engine.read.audience import Role
from sakk.console.api.common import reading
from sakk.console.pages.proposals import Reason, proposed
from sakk.console.pages.render import Operator, PageError, Reader, page, shown_as_page

router = APIRouter(include_in_schema=False)
UserName = Annotated[str, Form(min_length=1, max_length=64)]
RoleName = Annotated[str, Form(pattern=r"^(operator|auditor|bank)$")]
BankCode = Annotated[str, Form(max_length=8)]
ROLES = tuple(r.value for r in Role)


@router.get("/users", response_class=HTMLResponse)
def users(request: Request, who: Reader) -> HTMLResponse:
    with shown_as_page(who), reading(request) as conn:
        found = list_users(conn)
    return page(request, who, "users.html", "Users", users=found, roles=ROLES)


@router.post("/users/add", response_class=HTMLResponse)
def add_user(
    request: Request,
    who: Operator,
    user_name: UserName,
    role: RoleName,
    password: Annotated[str, Form(min_length=1, max_length=1_024)],
    bank_code: BankCode = "",
    reason: Reason = "",
) -> HTMLResponse:
    try:
        hashed = hash_password(password)
    except PasswordPolicyError as exc:
        raise PageError(400, str(exc), who) from exc
    action = CreateUser(user_name, role, bank_code or None, hashed, who.name)
    return proposed(request, who, action, reason.strip())


@router.post("/users/role", response_class=HTMLResponse)
def change_role(
    request: Request,
    who: Operator,
    user_name: UserName,
    role: RoleName,
    bank_code: BankCode = "",
    reason: Reason = "",
) -> HTMLResponse:
    return proposed(request, who, ChangeRole(user_name, role, bank_code or None), reason.strip())


@router.post("/users/disabled", response_class=HTMLResponse)
def set_disabled(
    request: Request,
    who: Operator,
    user_name: UserName,
    disabled: Annotated[bool, Form()],
    reason: Reason = "",
) -> HTMLResponse:
    return proposed(request, who, SetDisabled(user_name, disabled), reason.strip())
