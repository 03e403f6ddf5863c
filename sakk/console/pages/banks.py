"""Banks and their signing keys (a bank user: its own); the reference data (fees, channel
limits, approved schemas) for operators and auditors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from engine.ledger.reference import read_fee_schedule, read_limits
from engine.read.reference import approved_schemas, bank_keys, list_banks
from sakk.console.api.common import reading
from sakk.console.auth import Principal, require_any
from sakk.console.pages.render import READERS, need, page, shown_as_page

router = APIRouter(include_in_schema=False)


@router.get("/banks", response_class=HTMLResponse)
def banks(request: Request, who: Annotated[Principal, Depends(require_any)]) -> HTMLResponse:
    with shown_as_page(who), reading(request) as conn:
        members = list_banks(conn, who.audience)
        keys = bank_keys(conn, who.audience)
    return page(request, who, "banks.html", "Banks and keys", banks=members, keys=keys)


@router.get("/reference", response_class=HTMLResponse)
def reference(request: Request, who: Annotated[Principal, Depends(require_any)]) -> HTMLResponse:
    need(who, READERS)
    with shown_as_page(who), reading(request) as conn:
        fees = read_fee_schedule(conn)
        limits = read_limits(conn)
        schemas = approved_schemas(conn)
    fee_rows = [
        {"channel": channel, "payment_type": kind, "currency": currency, "fixed_minor": fixed,
         "rate_bps": rate, "max_minor": most}
        for (channel, kind, currency), (fixed, rate, most) in sorted(fees.rules.items())
    ]  # fmt: skip
    limit_rows = [
        {"channel": channel, "currency": currency, "max_amount_minor": most,
         "hold_expiry_s": limits.hold_expiry_s.get((channel, currency))}
        for (channel, currency), most in sorted(limits.max_amount_minor.items())
    ]  # fmt: skip
    return page(
        request, who, "reference.html", "Reference data", fees=fee_rows, limits=limit_rows,
        schemas=schemas,
    )  # fmt: skip
