"""Notifications as an audience may see them: listed oldest first, a page at a time.

Never their payload (it holds account numbers). A bank sees the notifications sent
to itself only; an operator sees the last error with account-like digit runs masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from engine.ledger.models import Notification, NotificationAttempt
from engine.ledger.notifications import NotificationFilter
from engine.masking import mask_text
from engine.read.audience import Audience
from engine.read.exceptions import NotVisibleError
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
    query = query.where(*_visible(audience))
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


def _visible(audience: Audience) -> list[Any]:
    t = Notification.__table__
    return [] if audience.sees_every_bank() else [t.c.recipient_bank == audience.bank_code]


@dataclass(frozen=True)
class AttemptView:
    number: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None


MAX_ATTEMPTS_SHOWN = 1_000


def get_notification(
    conn: Connection, audience: Audience, notification_id: str
) -> tuple[NotificationView, list[AttemptView]]:
    """One notification with its delivery attempts; another bank's is as missing as none."""
    t, a = Notification.__table__, NotificationAttempt.__table__
    row = conn.execute(
        select(*(t.c[name] for name in NotificationView.__dataclass_fields__)).where(
            t.c.notification_id == notification_id, *_visible(audience)
        )
    ).one_or_none()
    if row is None:
        raise NotVisibleError(f"no notification {notification_id}")
    attempts = conn.execute(
        select(a.c.number, a.c.started_at, a.c.duration_ms, a.c.status_code, a.c.error)
        .where(a.c.notification_id == notification_id)
        .order_by(a.c.number, a.c.id)
        .limit(MAX_ATTEMPTS_SHOWN)
    )
    whole = audience.unmasked()
    return _view(row, audience), [
        AttemptView(int(r.number), as_utc(r.started_at), int(r.duration_ms), r.status_code,
                    r.error if whole or r.error is None else mask_text(r.error))
        for r in attempts
    ]  # fmt: skip


def delivery_status(conn: Connection, audience: Audience) -> dict[str, dict[str, int]]:
    """How many notifications each bank has in each status (a bank: its own only)."""
    t = Notification.__table__
    query = (
        select(t.c.recipient_bank, t.c.status, func.count())
        .where(*_visible(audience))
        .group_by(t.c.recipient_bank, t.c.status)
    )
    out: dict[str, dict[str, int]] = {}
    for bank, status, count in conn.execute(query):
        out.setdefault(bank, {})[status] = int(count)
    return dict(sorted(out.items()))
