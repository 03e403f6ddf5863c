"""What the console's overview shows: payments per minute by channel and outcome, and the
notifications still waiting, per bank; each as the audience may see it.

Both are counts grouped in the database (never rows), over a bounded span: at most
:data:`MAX_MINUTES` minutes of payments, so the overview costs the same on a ledger of a
million payments as on a ledger of a thousand. A bank audience counts only its own
payments (payer's or payee's bank) and the notifications sent to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, func, select
from sqlalchemy.sql.elements import ColumnElement

from engine.ledger.models import Notification, Payment
from engine.read.audience import Audience
from engine.read.exceptions import ReadError
from engine.read.payments import visible_to
from engine.times import as_utc

MAX_MINUTES = 24 * 60  # the longest span the per-minute counts cover
MINUTE_FORMAT = "%Y-%m-%dT%H:%M"


@dataclass(frozen=True)
class MinuteCount:
    minute: datetime  # the minute's start, UTC
    channel: str
    state: str  # the payment's outcome so far (SETTLED, REJECTED, FAILED, AUTHORIZED, ...)
    payments: int


@dataclass(frozen=True)
class NotificationCount:
    recipient_bank: str
    status: str  # PENDING (waiting), DELIVERED, FAILED (given up)
    notifications: int


def _minute_of(conn: Connection, column: ColumnElement[datetime]) -> ColumnElement[str]:
    """The minute a time falls in, as text both databases sort and group the same."""
    if conn.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI')
    return func.strftime(MINUTE_FORMAT, column)


def payments_per_minute(
    conn: Connection, audience: Audience, since: datetime, until: datetime
) -> list[MinuteCount]:
    """Payments that occurred in [since, until), counted per minute, channel and state."""
    if not timedelta(0) < until - since <= timedelta(minutes=MAX_MINUTES):
        raise ReadError(f"per-minute counts cover 1 to {MAX_MINUTES} minutes, since before until")
    p = Payment.__table__
    minute = _minute_of(conn, p.c.occurred_at).label("minute")
    rows = conn.execute(
        select(minute, p.c.channel, p.c.state, func.count())
        .where(p.c.occurred_at >= since, p.c.occurred_at < until, *visible_to(audience))
        .group_by(minute, p.c.channel, p.c.state)
        .order_by(minute, p.c.channel, p.c.state)
    )
    return [
        MinuteCount(
            datetime.strptime(r[0], MINUTE_FORMAT).replace(tzinfo=UTC), r[1], r[2], int(r[3])
        )
        for r in rows
    ]


def latest_payment_at(conn: Connection, audience: Audience) -> datetime | None:
    """When the newest payment this audience may see occurred (the overview ends there)."""
    p = Payment.__table__
    found = conn.execute(select(func.max(p.c.occurred_at)).where(*visible_to(audience)))
    latest = found.scalar_one_or_none()
    if latest is None:
        return None
    return as_utc(latest)


def notification_counts(conn: Connection, audience: Audience) -> list[NotificationCount]:
    """Notifications per recipient bank and status (a bank: its own only)."""
    n = Notification.__table__
    query = select(n.c.recipient_bank, n.c.status, func.count()).group_by(
        n.c.recipient_bank, n.c.status
    )
    if not audience.sees_every_bank():
        query = query.where(n.c.recipient_bank == audience.bank_code)
    rows = conn.execute(query.order_by(n.c.recipient_bank, n.c.status))
    return [NotificationCount(r[0], r[1], int(r[2])) for r in rows]
