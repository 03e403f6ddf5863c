"""Sending given-up notifications again (``engine.read.notifications`` lists them).

A redelivery is an audited request: who asked, when and why is stored with the new
round number, both written as guarded rows by the recorder. It only touches FAILED
notifications, so asking twice does nothing the second time. The notification keeps
its ``notification_id`` (the bank deduplicates on it) and goes back on the delivery
schedule with a fresh horizon; when it finally succeeds, the dispatcher announces it
with a ``PaymentNotified`` of the new round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select

from engine.domain.notifications import NotificationStatus
from engine.ledger.models import Notification as NotificationRow
from engine.ledger.models import table_of
from engine.ledger.notification_writes import NotificationRedelivered, RedeliveryRequested
from engine.ledger.recorder import GuardFailed, Recorder

STATUSES = tuple(s.value for s in NotificationStatus)
REDELIVER_MAX = 100_000  # notifications one request may put back on the schedule
REDELIVER_TRIES_MAX = 3  # reads of a request whose notifications another writer changed


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


@dataclass
class RedeliveryReport:
    requested_by: str
    requested_at: datetime
    redelivered: list[str] = field(default_factory=list)
    unchanged: dict[str, str] = field(default_factory=dict)  # id -> why (its status)


def redeliver(
    engine: Engine,
    which: NotificationFilter,
    requested_by: str,
    now: datetime,
    horizon_s: int,
    reason: str | None = None,
) -> RedeliveryReport:
    """Put the FAILED notifications ``which`` names back on the schedule, due ``now``.

    One transaction (:func:`redeliver_within`), read again from the start when another
    writer changed one of its notifications meanwhile: the second operator of two asking
    at once finds them PENDING, and leaves them be.
    """
    for _ in range(REDELIVER_TRIES_MAX - 1):
        try:
            with engine.begin() as conn:
                return redeliver_within(conn, which, requested_by, now, horizon_s, reason)
        except GuardFailed:
            continue
    with engine.begin() as conn:
        return redeliver_within(conn, which, requested_by, now, horizon_s, reason)


def redeliver_within(
    conn: Connection,
    which: NotificationFilter,
    requested_by: str,
    now: datetime,
    horizon_s: int,
    reason: str | None = None,
) -> RedeliveryReport:
    """:func:`redeliver` in the caller's transaction (an operator action adds its own rows).

    Load, decide (:func:`decide_redelivery`), record: each change a guarded row (still
    FAILED, same round) with the request beside it, so two operators asking at once
    redeliver each notification once. Raises :class:`GuardFailed` when a notification
    changed since it was read: the caller rolls back and may ask again.
    """
    if not requested_by.strip():
        raise RedeliveryError("a redelivery names who asks for it")
    if not (which.ids or which.status or which.bank):
        raise RedeliveryError("name notification ids, or a --status and/or --bank to select")
    t = table_of(NotificationRow)
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
    report, rows = decide_redelivery(
        [(nid, status, round_) for nid, status, round_ in found],
        Redelivery(requested_by, now, timedelta(seconds=horizon_s), reason),
    )
    Recorder().record(conn, rows)
    return report


@dataclass(frozen=True)
class Redelivery:
    """One operator's request: who, when, with what horizon, why."""

    requested_by: str
    now: datetime
    horizon: timedelta
    reason: str | None


def decide_redelivery(
    found: Sequence[tuple[str, str, int]], request: Redelivery
) -> tuple[RedeliveryReport, list[NotificationRedelivered | RedeliveryRequested]]:
    """Which of ``found`` (id, state, round) go back on the schedule, and the rows that say so.

    Only a FAILED notification is redelivered, as its next round, due now with a fresh
    horizon; any other is left as it is, with its state as the reason.
    """
    report = RedeliveryReport(request.requested_by, request.now)
    rows: list[NotificationRedelivered | RedeliveryRequested] = []
    for nid, status, round_ in found:
        if status != NotificationStatus.FAILED:
            report.unchanged[nid] = status
            continue
        deadline = request.now + request.horizon
        rows.append(NotificationRedelivered(nid, round_, round_ + 1, request.now, deadline))
        rows.append(RedeliveryRequested(nid, round_ + 1, request.requested_by, request.now,
                                        request.reason))  # fmt: skip
        report.redelivered.append(nid)
    return report, rows
