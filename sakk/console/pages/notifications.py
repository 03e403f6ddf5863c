"""Notifications: how many per bank and status, the list with their attempts, and sending a
given-up one again (redeliver, one operator; in bulk it is a proposal for four eyes).

A bank user sees the notifications sent to itself only (the read side keeps it so).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse

from engine.domain.notifications import NotificationStatus
from engine.ledger.notifications import NotificationFilter, RedeliveryError, RedeliveryReport
from engine.ops.action import Actor
from engine.ops.notifications import Redeliver, run_redelivery
from engine.read.activity import notification_counts
from engine.read.exceptions import ReadError
from engine.read.notifications import list_notifications
from sakk.console.api.common import engine_of, now, reading
from sakk.console.auth import Principal, require_any
from sakk.console.pages.proposals import proposed
from sakk.console.pages.render import Operator, PageError, page, settings_of, shown_as_page

router = APIRouter(include_in_schema=False)
PAGE_ROWS = 100
MAX_ID_CHARS = 64
STATUSES = tuple(s.value for s in NotificationStatus)


def _filter(status: str, bank: str, who: Principal) -> NotificationFilter:
    try:
        return NotificationFilter(status=status or None, bank=bank or None)
    except ValueError as exc:
        raise PageError(400, str(exc), who) from exc


def _listing(
    request: Request, who: Principal, status: str, bank: str, cursor: str | None,
    notice: str | None = None,
) -> HTMLResponse:  # fmt: skip
    which = _filter(status, bank, who)
    with shown_as_page(who), reading(request) as conn:
        counts = notification_counts(conn, who.audience)
        found = list_notifications(conn, who.audience, which, cursor, PAGE_ROWS)
    query = "&".join(f"{k}={v}" for k, v in (("status", status), ("bank", bank)) if v)
    return page(
        request, who, "notifications.html", "Notifications", counts=counts,
        rows=list(found.items), next_cursor=found.next_cursor, status=status, bank_filter=bank,
        statuses=STATUSES, query=query, notice=notice,
    )  # fmt: skip


@router.get("/notifications", response_class=HTMLResponse)
def notifications(
    request: Request,
    who: Annotated[Principal, Depends(require_any)],
    status: Annotated[str, Query(max_length=16)] = "",
    bank: Annotated[str, Query(max_length=8)] = "",
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> HTMLResponse:
    return _listing(request, who, status, bank, cursor)


@router.post("/notifications/redeliver", response_class=HTMLResponse)
def redeliver(
    request: Request,
    who: Operator,
    notification_id: Annotated[str, Form(min_length=1, max_length=MAX_ID_CHARS)],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> HTMLResponse:
    """Send one given-up notification again (several at once: a proposal, four eyes)."""
    which = NotificationFilter(ids=(notification_id,))
    action = Redeliver(which, who.name, settings_of(request).notify_horizon_s, reason or None)
    try:
        with shown_as_page(who):
            done = run_redelivery(
                engine_of(request), action, Actor(who.name, reason or None), now(request)
            )
    except (RedeliveryError, ReadError) as exc:
        raise PageError(409, str(exc), who) from exc
    report: RedeliveryReport = done.result
    if report.redelivered:
        notice = f"notification {notification_id} is on the delivery schedule again"
    else:
        why = report.unchanged.get(notification_id, "not found")
        notice = f"notification {notification_id} unchanged: {why}"
    return _listing(request, who, "", "", None, notice)


@router.post("/notifications/redeliver-all", response_class=HTMLResponse)
def propose_bulk_redelivery(
    request: Request,
    who: Operator,
    bank: Annotated[str, Form(min_length=1, max_length=8, pattern=r"^[0-9A-Za-z]+$")],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> HTMLResponse:
    """Propose sending again every given-up notification of ``bank`` (its endpoint is back):
    in bulk, a second operator approves it."""
    which = NotificationFilter(status=NotificationStatus.FAILED.value, bank=bank)
    action = Redeliver(which, who.name, settings_of(request).notify_horizon_s, reason or None)
    return proposed(request, who, action, reason.strip())
