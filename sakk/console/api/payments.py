"""Payments: a search (every role; a bank finds its own only), one payment, its trace."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from engine.read.payments import PaymentFilter, PaymentView, get_payment, search_payments
from engine.read.trace import trace_payment
from sakk.app import TOPOLOGY
from sakk.console.api.common import DEFAULT_LIMIT, Cursor, Instant, Limit, Out, reading
from sakk.console.auth import Principal, require_any

router = APIRouter(tags=["payments"])

PaymentId = Annotated[str, Path(min_length=1, max_length=80, description="the switch's BANK:ID")]
Short = Annotated[str | None, Query(min_length=1, max_length=80)]
Code = Annotated[str | None, Query(min_length=1, max_length=8, pattern=r"^[0-9A-Za-z]+$")]


class PaymentPage(Out):
    items: list[PaymentView]
    next_cursor: str | None


class PaymentTraceOut(Out):
    """A payment's life as the caller may see it (``sakk trace``'s sections)."""

    payment: dict[str, Any]
    signer: str
    hold: dict[str, Any] | None
    steps: list[dict[str, Any]]
    events: list[dict[str, Any]]
    transitions: list[dict[str, Any]]
    postings: list[dict[str, Any]]
    entries: list[dict[str, Any]]
    notifications: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    redrives: list[dict[str, Any]]
    redeliveries: list[dict[str, Any]]


@router.get("/payments", response_model=PaymentPage, summary="Search payments, newest first")
def search(
    request: Request,
    who: Annotated[Principal, Depends(require_any)],
    payment_id: Short = None,
    bank_reference: Short = None,
    bank: Code = None,
    account_last4: Annotated[str | None, Query(pattern=r"^[0-9]{4}$")] = None,
    state: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    reason_code: Annotated[str | None, Query(min_length=1, max_length=8)] = None,
    channel: Annotated[str | None, Query(min_length=1, max_length=16)] = None,
    since: Instant | None = None,
    until: Instant | None = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> PaymentPage:
    which = PaymentFilter(
        payment_id, bank_reference, bank, account_last4, state, reason_code, channel, since, until
    )
    with reading(request) as conn:
        page = search_payments(conn, who.audience, which, cursor, limit)
    return PaymentPage(items=list(page.items), next_cursor=page.next_cursor)


@router.get("/payments/{payment_id}", response_model=PaymentView, summary="One payment")
def one(
    request: Request, payment_id: PaymentId, who: Annotated[Principal, Depends(require_any)]
) -> PaymentView:
    with reading(request) as conn:
        return get_payment(conn, who.audience, payment_id)


@router.get(
    "/payments/{payment_id}/trace", response_model=PaymentTraceOut,
    summary="A payment's whole life: hold, steps, postings, notifications and attempts",
)  # fmt: skip
def trace(
    request: Request, payment_id: PaymentId, who: Annotated[Principal, Depends(require_any)]
) -> PaymentTraceOut:
    with reading(request) as conn:
        view = trace_payment(conn, who.audience, payment_id, TOPOLOGY)
    sections = view.sections()
    return PaymentTraceOut(
        payment=_plain(view.payment), signer=view.signer(),
        hold=_plain(view.hold) if view.hold else None,
        **{k: [_plain(r) for r in v] for k, v in sections.items() if k != "hold"},
    )  # fmt: skip


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON can hold it: bytes as hex (digests, signatures), the rest as is."""
    return {k: v.hex() if isinstance(v, bytes | memoryview) else v for k, v in row.items()}
