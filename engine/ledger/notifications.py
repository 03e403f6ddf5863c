"""Operators' view of notifications: list them, and send given-up ones again.

A redelivery is an audited request: who asked, when and why is stored with the new
round number. It only touches FAILED notifications, so asking twice does nothing the
second time. The notification keeps its ``notification_id`` (the bank deduplicates on
it) and goes back on the delivery schedule with a fresh horizon; when it finally
succeeds, the dispatcher announces it with a ``PaymentNotified`` of the new round.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from engine.ledger.models import Notification as NotificationRow
from engine.ledger.models import NotificationRedelivery, table_of

STATUSES = ("PENDING", "DELIVERED", "FAILED")
LIST_LIMIT_MAX = 10_000
REDELIVER_MAX = 100_000  # notifications one request may put back on the schedule
LISTED_COLUMNS = (
    "notification_id", "payment_id", "outcome", "recipient_bank", "status", "attempts",
    "round", "last_error", "created_at", "next_attempt_at", "finished_at",
)  # fmt: skip


class RedeliveryError(ValueError):
    """A redelivery request that names nothing, or names notifications that do not exist."""


@dataclass(frozen=True)
class NotificationFilter:
    status: str | None = None
    bank: str | None = None
    since: datetime | None = None
    ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise ValueError(f"status {self.status!r}: expected one of {STATUSES}")

    def where(self) -> list[Any]:
        t = table_of(NotificationRow)
        clauses = []
        if self.status:
            clauses.append(t.c.status == self.status)
        if self.bank:
            clauses.append(t.c.recipient_bank == self.bank)
        if self.since:
            clauses.append(t.c.created_at >= self.since)
        if self.ids:
            clauses.append(t.c.notification_id.in_(self.ids))
        return clauses


def list_notifications(
    conn: Connection, which: NotificationFilter, limit: int = 100
) -> list[dict[str, Any]]:
    """Notifications matching ``which``, oldest first; never their payload (account numbers)."""
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise ValueError(f"limit={limit}: expected 1..{LIST_LIMIT_MAX}")
    t = table_of(NotificationRow)
    rows = conn.execute(
        select(*(t.c[name] for name in LISTED_COLUMNS))
        .where(*which.where())
        .order_by(t.c.created_at, t.c.notification_id)
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


@dataclass
class RedeliveryReport:
    requested_by: str
    requested_at: datetime
    redelivered: list[str] = field(default_factory=list)
    unchanged: dict[str, str] = field(default_factory=dict)  # id -> why (its status)


def redeliver(
    engine: Engine | Connection,
    which: NotificationFilter,
    requested_by: str,
    now: datetime,
    horizon_s: int,
    reason: str | None = None,
) -> RedeliveryReport:
    """Put the FAILED notifications ``which`` names back on the schedule, due ``now``.

    Each change is guarded (still FAILED, same round) and recorded with the request in
    one transaction: two operators asking at once redeliver each notification once.
    """
    if not requested_by.strip():
        raise RedeliveryError("a redelivery names who asks for it")
    if not (which.ids or which.status or which.bank):
        raise RedeliveryError("name notification ids, or a --status and/or --bank to select")
    t = table_of(NotificationRow)
    report = RedeliveryReport(requested_by, now)
    # A Connection: the caller's transaction (an audited operator action, engine.ops).
    with engine.begin() if isinstance(engine, Engine) else nullcontext(engine) as conn:
        found = conn.execute(
            select(t.c.notification_id, t.c.status, t.c.round)
            .where(*which.where())
            .order_by(t.c.notification_id)
            .limit(REDELIVER_MAX + 1)
        ).all()
        if len(found) > REDELIVER_MAX:
            raise RedeliveryError(f"more than {REDELIVER_MAX} notifications: narrow the selection")
        missing = set(which.ids) - {nid for nid, _, _ in found}
        if missing:
            raise RedeliveryError(f"no such notification: {', '.join(sorted(missing))}")
        for nid, status, round_ in found:
            if status != "FAILED":
                report.unchanged[nid] = status
                continue
            if _reschedule(conn, nid, round_, now, horizon_s):
                conn.execute(
                    insert(NotificationRedelivery).values(
                        notification_id=nid,
                        round=round_ + 1,
                        requested_by=requested_by,
                        requested_at=now,
                        reason=reason,
                    )  # fmt: skip
                )
                report.redelivered.append(nid)
            else:
                report.unchanged[nid] = "changed meanwhile"
    return report


def _reschedule(conn: Connection, nid: str, round_: int, now: datetime, horizon_s: int) -> bool:
    t = table_of(NotificationRow)
    result = conn.execute(
        update(t)
        .where(t.c.notification_id == nid, t.c.status == "FAILED", t.c.round == round_)
        .values(
            status="PENDING",
            round=round_ + 1,
            next_attempt_at=now,
            deadline_at=now + timedelta(seconds=horizon_s),
            finished_at=None,
            announced_at=None,
            claim_token=None,
        )  # fmt: skip
    )
    return bool(result.rowcount == 1)


def redeliveries_of(conn: Connection, notification_ids: list[str]) -> list[dict[str, Any]]:
    """The audit trail of redelivery requests for these notifications, oldest first."""
    r = table_of(NotificationRedelivery)
    rows = conn.execute(
        select(r).where(r.c.notification_id.in_(notification_ids)).order_by(r.c.id)
    ).mappings()
    return [dict(row) for row in rows]
