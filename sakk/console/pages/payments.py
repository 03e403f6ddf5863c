"""Payments: a search (by bank reference, id, bank, account's last four digits, state,
reason code, channel, time range) and one payment's whole life, as ``sakk trace`` shows it.

A bank user finds only its own payments, and another bank's payment is "not found" in
the very words of one that does not exist (the read side decides both).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse

from engine.audit.exceptions import AuditError
from engine.read.exceptions import ReadError
from engine.read.payments import PaymentFilter, search_payments
from engine.read.trace import trace_payment
from engine.times import parse_instant
from sakk.app import TOPOLOGY
from sakk.console.api.common import reading
from sakk.console.auth import Principal, require_any
from sakk.console.pages.render import PageError, page, shown_as_page

router = APIRouter(include_in_schema=False)

PAGE_ROWS = 50  # payments a results page lists
MAX_FIELD_CHARS = 80
FIELDS = ("bank_reference", "payment_id", "bank", "account_last4", "state", "reason_code",
          "channel", "since", "until")  # fmt: skip
STATES = ("VALIDATED", "SETTLED", "REJECTED", "FAILED", "AUTHORIZED", "CAPTURED", "VOIDED",
          "EXPIRED", "REFUNDED", "RETURNED")  # fmt: skip
CHANNELS = ("WEB", "ECOM", "MOBILE", "ATM", "POS", "BRANCH", "EGOV")
Field = Annotated[str, Query(max_length=MAX_FIELD_CHARS)]


def _instant(name: str, text: str) -> datetime | None:
    if not text:
        return None
    try:
        return parse_instant(text)
    except AuditError as exc:
        raise ReadError(f"{name}: {exc}") from exc


def search_filter(asked: dict[str, str]) -> PaymentFilter:
    """The search a form asked for: blank fields ask nothing; times are UTC unless zoned."""
    given = {k: v.strip() or None for k, v in asked.items() if k not in ("since", "until")}
    return PaymentFilter(
        **given,
        since=_instant("since", asked["since"].strip()),
        until=_instant("until", asked["until"].strip()),
    )


@router.get("/payments", response_class=HTMLResponse)
def payments(
    request: Request,
    who: Annotated[Principal, Depends(require_any)],
    bank_reference: Field = "", payment_id: Field = "", bank: Field = "",
    account_last4: Field = "", state: Field = "", reason_code: Field = "", channel: Field = "",
    since: Field = "", until: Field = "",
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> HTMLResponse:  # fmt: skip
    asked = {name: value for name, value in locals().items() if name in FIELDS}
    rows, next_cursor, error = [], None, None
    try:
        which = search_filter(asked)
        with shown_as_page(who), reading(request) as conn:
            found = search_payments(conn, who.audience, which, cursor, PAGE_ROWS)
        rows, next_cursor = list(found.items), found.next_cursor
    except ReadError as exc:
        error = str(exc)
    except PageError as exc:
        error = exc.message
    query = urlencode({k: v for k, v in asked.items() if v})
    return page(
        request, who, "payments.html", "Payments", status_code=400 if error else 200,
        asked=asked, rows=rows, next_cursor=next_cursor, query=query, error=error,
        states=STATES, channels=CHANNELS,
    )  # fmt: skip


@router.get("/payments/{payment_id}", response_class=HTMLResponse)
def payment(
    request: Request,
    payment_id: Annotated[str, Path(min_length=1, max_length=MAX_FIELD_CHARS)],
    who: Annotated[Principal, Depends(require_any)],
) -> HTMLResponse:
    with shown_as_page(who), reading(request) as conn:
        view = trace_payment(conn, who.audience, payment_id, TOPOLOGY)
    attempts: dict[str, list[dict[str, Any]]] = {}
    for attempt in view.attempts:
        attempts.setdefault(attempt["notification_id"], []).append(attempt)
    return page(
        request, who, "payment.html", f"Payment {view.payment_id}",
        trace=view, p=view.payment, signer=view.signer(), attempts=attempts,
        sees_every_bank=who.audience.sees_every_bank(),
    )  # fmt: skip
