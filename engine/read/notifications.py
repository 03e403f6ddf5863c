"""Notifications as an audience may see them: listed oldest first, a page at a time.

Never their payload (it holds account numbers). A bank sees the notifications sent
to itself only; an operator sees the last error with account-like digit runs masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from engine.ledger.models import Notification
from engine.ledger.notifications import NotificationFilter
from engine.masking import mask_text
from engine.read.audience import Audience
from engine.read.paging import DEFAULT_PAGE, Page, check_limit, decode_cursor, page_of
from engine.times import as_utc

LIST = "notifications"  # the cursor's query name


@dataclass(frozen=True)
class NotificationView:
    notification_id: str
    payment_id: str
    outcome: str
    recipient_bank: str
    status: str
    attempts: int
    round: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    finished_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _view(row: Any, audience: Audience) -> NotificationView:
    error = row.last_error
    if error is not None and not audience.unmasked():
        error = mask_text(error)
    return NotificationView(
        row.notification_id, row.payment_id, row.outcome, row.recipient_bank, row.status,
        int(row.attempts), int(row.round), error, as_utc(row.created_at),
        as_utc(row.next_attempt_at) if row.next_attempt_at else None,
        as_utc(row.finished_at) if row.finished_at else None,
    )  # fmt: skip


def list_notifications(
    conn: Connection,
    audience: Audience,
    which: NotificationFilter,
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> Page[NotificationView]:
    """Notifications matching ``which`` that ``audience`` may see, oldest first."""
    check_limit(limit)
    t = Notification.__table__
    query = select(*(t.c[name] for name in NotificationView.__dataclass_fields__)).where(
        *which.where()
    )
    if not audience.sees_every_bank():
        query = query.where(t.c.recipient_bank == audience.bank_code)
    if cursor is not None:
        at, notification_id = decode_cursor(LIST, cursor)
        query = query.where(
            or_(
                t.c.created_at > at,
                and_(t.c.created_at == at, t.c.notification_id > notification_id),
            )
        )
    query = query.order_by(t.c.created_at, t.c.notification_id).limit(limit + 1)
    views = [_view(r, audience) for r in conn.execute(query)]
    return page_of(LIST, views, limit, lambda v: (v.created_at, v.notification_id))
