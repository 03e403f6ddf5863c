"""Read-only reports over the ledger: per channel, per reason, per bank."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, case, func, select

from engine.ledger.database import read_only
from engine.ledger.models import (
    Account,
    AccountKind,
    Bank,
    HandledEvent,
    LedgerEntry,
    Notification,
    Payment,
    Posting,
)
from engine.ledger.postings import PAYMENT_POSTING_KINDS


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


def channel_summary(conn: Connection) -> list[ChannelLine]:
    p = Payment.__table__

    def count_state(state: str):  # type: ignore[no-untyped-def]
        return func.sum(case((p.c.state == state, 1), else_=0))

    rows = conn.execute(
        select(
            p.c.channel, p.c.currency, func.count(),
            count_state("SETTLED"), count_state("REJECTED"),
            count_state("FAILED"),
            func.sum(case((p.c.state == "SETTLED", p.c.amount_minor), else_=0)),
            func.sum(case((p.c.state == "SETTLED", p.c.fee_minor), else_=0)),
        ).group_by(p.c.channel, p.c.currency).order_by(p.c.channel, p.c.currency)
    )  # fmt: skip
    return [ChannelLine(r[0], r[1], *(int(v or 0) for v in r[2:])) for r in rows]


def reason_summary(conn: Connection) -> list[tuple[str, str, int]]:
    """(state, reason code, payments) for rejected and failed payments, most frequent first."""
    p = Payment.__table__
    rows = conn.execute(
        select(p.c.state, p.c.reason_code, func.count())
        .where(p.c.state.in_(("REJECTED", "FAILED")))
        .group_by(p.c.state, p.c.reason_code)
        .order_by(func.count().desc())
    )
    return [(r[0], r[1] or "", int(r[2])) for r in rows]


@dataclass(frozen=True)
class NetPosition:
    bank_code: str
    bank_name: str
    currency: str
    gross_debits_minor: int  # the bank's customers paid out to other banks
    gross_credits_minor: int  # other banks' customers paid in to this bank
    net_minor: int  # credits - debits: positive, the switch owes the bank


def net_positions(conn: Connection, window: str | None = None) -> list[NetPosition]:
    """Multilateral net position per bank, from the settlement accounts' entries, over
    every posting that moves money between banks: payments, captures, refunds, returns."""
    e, a, po, b = LedgerEntry.__table__, Account.__table__, Posting.__table__, Bank.__table__
    query = (
        select(
            a.c.bank_code, b.c.name, e.c.currency,
            func.sum(case((e.c.amount_minor > 0, e.c.amount_minor), else_=0)),
            func.sum(case((e.c.amount_minor < 0, -e.c.amount_minor), else_=0)),
        )
        .join(a, a.c.number == e.c.account_number)
        .join(b, b.c.code == a.c.bank_code)
        .join(po, po.c.posting_id == e.c.posting_id)
        .where(a.c.kind == AccountKind.SETTLEMENT.value, po.c.kind.in_(PAYMENT_POSTING_KINDS))
        .group_by(a.c.bank_code, b.c.name, e.c.currency)
        .order_by(a.c.bank_code, e.c.currency)
    )  # fmt: skip
    if window is not None:
        query = query.where(po.c.settlement_window == window)
    # The settlement account is credited when the bank's customer pays out (the bank owes).
    return [
        NetPosition(code, name, cur, int(owed or 0), int(due or 0), int(due or 0) - int(owed or 0))
        for code, name, cur, owed, due in conn.execute(query)
    ]


def processing_window(engine: Engine) -> tuple[datetime | None, datetime | None]:
    """Wall-clock span from the validator's first handled event to the last notification."""
    h, n = HandledEvent.__table__, Notification.__table__
    with read_only(engine).connect() as conn:
        first = conn.execute(
            select(func.min(h.c.handled_at)).where(h.c.consumer == "validator")
        ).scalar()
        last = conn.execute(select(func.max(n.c.finished_at))).scalar()
    return first, last
