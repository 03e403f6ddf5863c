"""Redeliver given-up notifications: the notification book's redelivery, with its audit record.

The book (``engine.ledger.notifications``) owns the notification's transitions: which
are FAILED, the guarded move back to PENDING, the per-notification redelivery row. This
action only asks it, in the same transaction as the audit record that names what moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Connection

from engine.ledger.notifications import NotificationFilter, RedeliveryReport, redeliver
from engine.ops.action import Plan, Refused

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
        return redeliver(
            conn, self.which, self.requested_by, plan.changes, self.horizon_s, self.reason
        )

    def recorded(self, plan: Plan, report: RedeliveryReport) -> tuple[Any, Any]:
        moved = report.redelivered
        new = {**plan.new, "redelivered": len(moved), "ids": moved[:MAX_RECORDED_IDS],
               "status": "PENDING"}  # fmt: skip
        return {"status": "FAILED"}, new


def _target(which: NotificationFilter) -> str:
    if which.ids:
        shown = ",".join(which.ids[:3]) + ("..." if len(which.ids) > 3 else "")
        return f"notifications {shown}"[:200]
    return f"notifications status={which.status} bank={which.bank}"[:200]
