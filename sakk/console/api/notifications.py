"""Notifications to the banks: listed, delivery status per bank, one with its attempts,
redelivered one at a time (in bulk: propose it, four eyes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from engine.ledger.notifications import STATUSES, NotificationFilter
from engine.ops.notifications import Redeliver, run_redelivery
from engine.read.notifications import (
    AttemptView,
    NotificationView,
    delivery_status,
    get_notification,
    list_notifications,
)
from sakk.console.api.common import (
    ActionIn,
    Cursor,
    DoneOut,
    Instant,
    Limit,
    Out,
    actor,
    done_out,
    now,
    reading,
)
from sakk.console.auth import Principal, require_any, require_operator
from sakk.console.errors import ErrorBody

router = APIRouter(tags=["notifications"])
NotificationId = Annotated[str, Path(min_length=1, max_length=80)]
Status = Annotated[str | None, Query(pattern="^(" + "|".join(STATUSES) + ")$")]


class NotificationPage(Out):
    items: list[NotificationView]
    next_cursor: str | None


class NotificationOut(Out):
    notification: NotificationView
    attempts: list[AttemptView]


class DeliveryStatus(Out):
    """Per bank, how many notifications are in each status."""

    banks: dict[str, dict[str, int]]


@router.get(
    "/notifications", response_model=NotificationPage, summary="Notifications, oldest first"
)
def search(
    request: Request,
    who: Annotated[Principal, Depends(require_any)],
    status: Status = None,
    bank: Annotated[str | None, Query(min_length=1, max_length=8, pattern="^[0-9A-Za-z]+$")] = None,
    since: Instant | None = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> NotificationPage:
    which = NotificationFilter(status, bank, since)
    with reading(request) as conn:
        page = list_notifications(conn, who.audience, which, cursor, limit)
    return NotificationPage(items=list(page.items), next_cursor=page.next_cursor)


@router.get(
    "/notifications/status", response_model=DeliveryStatus, summary="Delivery status per bank"
)
def status_per_bank(
    request: Request, who: Annotated[Principal, Depends(require_any)]
) -> DeliveryStatus:
    with reading(request) as conn:
        return DeliveryStatus(banks=delivery_status(conn, who.audience))


@router.get(
    "/notifications/{notification_id}", response_model=NotificationOut,
    summary="One notification and its delivery attempts",
)  # fmt: skip
def one(
    request: Request,
    notification_id: NotificationId,
    who: Annotated[Principal, Depends(require_any)],
) -> NotificationOut:
    with reading(request) as conn:
        view, attempts = get_notification(conn, who.audience, notification_id)
    return NotificationOut(notification=view, attempts=attempts)


@router.post(
    "/notifications/{notification_id}/redeliver", response_model=DoneOut,
    summary="Put one given-up notification back on the delivery schedule",
    responses={409: {"model": ErrorBody, "description": "Refused by the action's rules"}},
)  # fmt: skip
def redeliver(
    request: Request,
    notification_id: NotificationId,
    body: ActionIn,
    who: Annotated[Principal, Depends(require_operator)],
) -> DoneOut:
    with reading(request) as conn:
        get_notification(conn, who.audience, notification_id)  # 404 when there is none
    horizon = request.app.state.settings.notify_horizon_s
    action = Redeliver(NotificationFilter(ids=(notification_id,)), who.name, horizon, body.reason)
    done = run_redelivery(request.app.state.engine, action, actor(who, body.reason), now(request))
    return done_out(action, done)
