"""Banks (a bank user: the directory, its own delivery settings and keys) and their keys; the
reference data (fees, channel limits, approved schemas) for operators and auditors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from engine.ops.keys import RevokeKey
from engine.read.reference import approved_schemas, bank_keys, current_reference
from engine.read.reference import banks as list_banks
from sakk.console.api.common import now, reading
from sakk.console.auth import Principal, require_any
from sakk.console.pages.proposals import Reason, proposed
from sakk.console.pages.render import Operator, Reader, page, shown_as_page

router = APIRouter(include_in_schema=False)


@router.get("/banks", response_class=HTMLResponse)
def banks(request: Request, who: Annotated[Principal, Depends(require_any)]) -> HTMLResponse:
    with shown_as_page(who), reading(request) as conn:
        members = list_banks(conn, who.audience)
        keys = bank_keys(conn, who.audience)
    return page(request, who, "banks.html", "Banks and keys", banks=members, keys=keys)


@router.get("/reference", response_class=HTMLResponse)
def reference(request: Request, who: Reader) -> HTMLResponse:
    with shown_as_page(who), reading(request) as conn:
        now_in_force = current_reference(conn)
        schemas = approved_schemas(conn)
    return page(
        request, who, "reference.html", "Reference data", fees=now_in_force["fees"],
        limits=now_in_force["limits"], schemas=schemas,
    )  # fmt: skip


@router.post("/banks/keys/revoke", response_class=HTMLResponse)
def propose_revoke(
    request: Request,
    who: Operator,
    bank: Annotated[str, Form(min_length=1, max_length=8, pattern=r"^[0-9A-Za-z]+$")],
    key_id: Annotated[str, Form(min_length=1, max_length=64)],
    reason: Reason = "",
) -> HTMLResponse:
    """Propose revoking a bank's key from now on: its messages signed with it are refused
    once a second operator approves."""
    return proposed(request, who, RevokeKey(bank, key_id, now(request)), reason.strip())
