"""Redeliver given-up notifications: the notification book's redelivery, with its audit record.

The book (``engine.ledger.notifications``) owns the notification's transitions: which
are FAILED, the guarded move back to PENDING, the per-notification redelivery row. This
action only asks it, in the same transaction as the audit record that names what moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine

from engine.domain.notifications import NotificationStatus
from engine.ledger.notifications import (
    REDELIVER_TRIES_MAX,
    NotificationFilter,
    RedeliveryReport,
    redeliver_within,
)
from engine.ledger.recorder import GuardFailed
from engine.ops.action import Actor, Done, Plan, Refused, run_action

MAX_RECORDED_IDS = 1_000  # ids the audit record lists; the count is always there


@dataclass(frozen=True)
class Redeliver:
    """Put the FAILED notifications ``which`` selects back on the delivery schedule."""

    name: ClassVar[str] = "notifications.redeliver"
    which: NotificationFilter
    requested_by: str
    horizon_s: int
    reason: str | None = None

    def load(self, conn: Connection) -> None:
        return None  # the book reads, decides and writes under its guards

    def decide(self, state: None, at: datetime) -> Plan | Refused:
        w = self.which
        if not (w.ids or w.status or w.bank):
            return Refused("name notification ids, or a --status and/or --bank to select")
        selection = {"ids": list(w.ids), "status": w.status, "bank": w.bank,
                     "since": None if w.since is None else w.since.isoformat()}  # fmt: skip
        return Plan(_target(w), None, {"selection": selection}, at)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> RedeliveryReport:
        return redeliver_within(
            conn, self.which, self.requested_by, plan.changes, self.horizon_s, self.reason
        )

    def recorded(self, plan: Plan, report: RedeliveryReport) -> tuple[Any, Any]:
        moved = report.redelivered
        new = {**plan.new, "redelivered": len(moved), "ids": moved[:MAX_RECORDED_IDS],
               "status": NotificationStatus.PENDING.value}  # fmt: skip
        return {"status": NotificationStatus.FAILED.value}, new


def _target(which: NotificationFilter) -> str:
    if which.ids:
        shown = ",".join(which.ids[:3]) + ("..." if len(which.ids) > 3 else "")
        return f"notifications {shown}"[:200]
    return f"notifications status={which.status} bank={which.bank}"[:200]


def run_redelivery(engine: Engine, action: Redeliver, actor: Actor, at: datetime) -> Done[Any]:
    """Run ``action``, reading again from the start when another writer changed one of its
    notifications meanwhile (the book's guard), at most ``REDELIVER_TRIES_MAX`` times."""
    for _ in range(REDELIVER_TRIES_MAX - 1):
        try:
            return run_action(engine, action, actor, at)
        except GuardFailed:
            continue
    return run_action(engine, action, actor, at)
