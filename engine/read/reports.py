"""Summaries over the ledger: per channel, per reason, per bank (by the one position rule)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, case, func, select

from engine.domain.states import PaymentState
from engine.ledger.database import read_only
from engine.ledger.models import HandledEvent, Notification, Payment
from engine.read import positions
from engine.read.audience import Audience
from engine.read.exceptions import ReadError
from engine.read.payments import visible_to
from engine.read.positions import NetPosition, Window


@dataclass(frozen=True)
class ChannelLine:
    channel: str
    currency: str
    payments: int
    settled: int
    rejected: int
    failed: int
    settled_amount_minor: int
    fees_minor: int


def channel_summary(conn: Connection, audience: Audience | None = None) -> list[ChannelLine]:
    """Payments per channel and currency and their outcomes (``audience``: those it may see)."""
    p, SETTLED = Payment.__table__, PaymentState.SETTLED
    visible = [] if audience is None else visible_to(audience)

    def count_state(state: PaymentState):  # type: ignore[no-untyped-def]
        return func.sum(case((p.c.state == state, 1), else_=0))

    rows = conn.execute(
        select(
            p.c.channel, p.c.currency, func.count(),
            count_state(SETTLED), count_state(PaymentState.REJECTED),
            count_state(PaymentState.FAILED),
            func.sum(case((p.c.state == SETTLED, p.c.amount_minor), else_=0)),
            func.sum(case((p.c.state == SETTLED, p.c.fee_minor), else_=0)),
        ).where(*visible).group_by(p.c.channel, p.c.currency).order_by(p.c.channel, p.c.currency)
    )  # fmt: skip
    return [ChannelLine(r[0], r[1], *(int(v or 0) for v in r[2:])) for r in rows]


def reason_summary(
    conn: Connection, audience: Audience | None = None
) -> list[tuple[str, str, int]]:
    """(state, reason code, payments) for rejected and failed payments, most frequent first."""
    p = Payment.__table__
    visible = [] if audience is None else visible_to(audience)
    rows = conn.execute(
        select(p.c.state, p.c.reason_code, func.count())
        .where(p.c.state.in_((PaymentState.REJECTED, PaymentState.FAILED)), *visible)
        .group_by(p.c.state, p.c.reason_code)
        .order_by(func.count().desc())
    )
    return [(r[0], r[1] or "", int(r[2])) for r in rows]


def net_positions(conn: Connection, window: str | None = None) -> list[NetPosition]:
    """Each bank's net position over every window, or in the window labelled ``window``.

    By the one rule of :mod:`engine.read.positions`: a posting written after its
    window's close counts in the next open window, as the close and every window
    report count it.
    """
    if window is None:
        return positions.net_positions(conn)
    _, _, length = window.partition("/")
    hours = int(length.rstrip("h")) if length else positions.DEFAULT_WINDOW_HOURS
    return positions.net_positions(conn, Window.parse(window, hours))


def processing_window(engine: Engine) -> tuple[datetime | None, datetime | None]:
    """Wall-clock span from the validator's first handled event to the last notification."""
    h, n = HandledEvent.__table__, Notification.__table__
    with read_only(engine).connect() as conn:
        first = conn.execute(
            select(func.min(h.c.handled_at)).where(h.c.consumer == "validator")
        ).scalar()
        last = conn.execute(select(func.max(n.c.finished_at))).scalar()
    return first, last


MAX_RATE_MINUTES = 24 * 60  # a rate is asked over one day at most


@dataclass(frozen=True)
class MinuteLine:
    minute: datetime  # the minute's start, UTC
    channel: str
    state: str
    payments: int


def payments_per_minute(
    conn: Connection, audience: Audience, since: datetime, until: datetime
) -> list[MinuteLine]:
    """Payments that occurred in [since, until) per minute, channel and state (the overview's
    chart), among those ``audience`` may see; at most MAX_RATE_MINUTES minutes."""
    if not timedelta(0) < until - since <= timedelta(minutes=MAX_RATE_MINUTES):
        raise ReadError(f"a rate spans 1 to {MAX_RATE_MINUTES} minutes, since before until")
    p = Payment.__table__
    if conn.dialect.name == "postgresql":
        bucket = func.to_char(
            func.date_trunc("minute", func.timezone("UTC", p.c.occurred_at)), "YYYY-MM-DD HH24:MI"
        )
    else:
        bucket = func.strftime("%Y-%m-%d %H:%M", p.c.occurred_at)
    rows = conn.execute(
        select(bucket, p.c.channel, p.c.state, func.count())
        .where(p.c.occurred_at >= since, p.c.occurred_at < until, *visible_to(audience))
        .group_by(bucket, p.c.channel, p.c.state)
        .order_by(bucket, p.c.channel, p.c.state)
    )
    return [
        MinuteLine(datetime.fromisoformat(r[0]).replace(tzinfo=UTC), r[1], r[2], int(r[3]))
        for r in rows
    ]
