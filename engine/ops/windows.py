"""Close a settlement window: its net positions become final (``engine.audit.windows``).

Closing a window already closed changes nothing and writes nothing; publishing the
closed event is the command's, after the close is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from sqlalchemy import Connection

from engine.audit.windows import CloseResult, Window, close_window, read_closes
from engine.ops.action import Plan, Refused


@dataclass(frozen=True)
class CloseWindow:
    """Close ``window``; one that has not ended yet only with ``early``."""

    name: ClassVar[str] = "window.close"
    window: Window
    early: bool = False

    def load(self, conn: Connection) -> bool:
        """Whether the window is already closed."""
        return self.window.label in read_closes(conn, self.window.hours)

    def decide(self, closed: bool, at: datetime) -> Plan | Refused:
        target = f"window {self.window.label}"
        if closed:
            return Plan(target, {"status": "CLOSED"}, {"status": "CLOSED"}, noop=True)
        if self.window.end > at and not self.early:
            return Refused(
                f"window {self.window.label} ends at {self.window.end.isoformat()}, after now "
                f"({at.isoformat()}); closing it early needs --early"
            )
        new = {"status": "CLOSED", "closed_at": at.isoformat(), "early": self.early}
        return Plan(target, {"status": "OPEN"}, new, at)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> CloseResult:
        return close_window(conn, self.window, plan.changes, early=True)  # decided above
