"""Settlement windows' operator actions: close, settle, confirm, abort (``engine.risk.windows``).

Each is an audited action (``engine.ops.action``): its lifecycle row (who, when, what) is
written with its audit record in one transaction. Closing a window already closed
changes nothing and writes nothing; publishing the window's events is the command's,
after the move is recorded. A refused move writes neither.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Connection

from engine.audit.window_lifecycle import LEDGER_ACTOR, Transition, window_state
from engine.audit.window_settlement import (
    Answer,
    ConfirmResult,
    SettleResult,
    abort_in,
    confirm_in,
    settle_in,
)
from engine.audit.windows import CloseResult, Window, close_window, read_closes
from engine.ops.action import Plan, Refused
from engine.read.exceptions import WindowError
from engine.risk.instruction import Parties
from engine.risk.windows import IllegalTransition, WindowEvent, WindowRecord, transition


@dataclass(frozen=True)
class CloseWindow:
    """Close ``window``; one that has not ended yet only with ``early``.

    ``requested_at``: when the close was asked for (the delay runs from it); ``by``: who
    asked, as the window's CLOSED row records it.
    """

    name: ClassVar[str] = "window.close"
    window: Window
    early: bool = False
    requested_at: datetime | None = None
    by: str = LEDGER_ACTOR

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
        details = Transition(self.by, requested_at=self.requested_at)
        return close_window(conn, self.window, plan.changes, early=True, details=details)


def _move(label: str, record: WindowRecord, event: WindowEvent, at: datetime) -> Plan | Refused:
    """The plan of a lifecycle move: the state before and after, or why it is refused."""
    after = transition(record, event)
    if isinstance(after, IllegalTransition):
        return Refused(after.reason)
    old = {"state": record.state.value, "attempt": record.attempt}
    return Plan(f"window {label}", old, {"state": after.state.value, "attempt": after.attempt}, at)


@dataclass(frozen=True)
class SettleWindow:
    """Instruct the settlement bank (one pacs.009 per currency, given to ``write``)."""

    name: ClassVar[str] = "window.settle"
    label: str
    parties: Parties
    by: str
    write: Callable[[Mapping[str, bytes]], None] = field(compare=False)

    def load(self, conn: Connection) -> WindowRecord:
        return window_state(conn, self.label)

    def decide(self, record: WindowRecord, at: datetime) -> Plan | Refused:
        return _move(self.label, record, WindowEvent.SETTLE, at)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> SettleResult:
        return settle_in(conn, self.label, self.parties, self.by, plan.changes, self.write)

    def recorded(self, plan: Plan, result: SettleResult) -> tuple[Any, Any]:
        return plan.old, {**plan.new, "instruction_ids": list(result.row.details.instruction_ids)}


class ConfirmationRefusedError(WindowError):
    """The confirmation differs from the window: nothing was written; ``result`` lists why."""

    def __init__(self, result: ConfirmResult) -> None:
        super().__init__("; ".join(result.differences))
        self.result = result


@dataclass(frozen=True)
class ConfirmWindow:
    """Check the settlement bank's answers; SETTLED with each bank's settled net, or
    :class:`ConfirmationRefusedError` with every difference (the transaction rolls back)."""

    name: ClassVar[str] = "window.confirm"
    label: str
    answers: Sequence[Answer] = field(compare=False)
    by: str = LEDGER_ACTOR
    parties: Parties | None = None  # who the answers were read with: to read them again

    def load(self, conn: Connection) -> WindowRecord:
        return window_state(conn, self.label)

    def decide(self, record: WindowRecord, at: datetime) -> Plan | Refused:
        return _move(self.label, record, WindowEvent.CONFIRM, at)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> ConfirmResult:
        result = confirm_in(conn, self.answers, self.by, plan.changes, self.label)
        if not result.ok:
            raise ConfirmationRefusedError(result)
        return result

    def recorded(self, plan: Plan, result: ConfirmResult) -> tuple[Any, Any]:
        settled = {f"{bank} {currency}": net for (bank, currency), net in result.settled.items()}
        return plan.old, {**plan.new, "settled": settled}


@dataclass(frozen=True)
class AbortWindow:
    """SETTLING to ABORTED, for ``reason``: settling again is a new attempt."""

    name: ClassVar[str] = "window.abort"
    label: str
    reason: str
    by: str = LEDGER_ACTOR

    def load(self, conn: Connection) -> WindowRecord:
        return window_state(conn, self.label)

    def decide(self, record: WindowRecord, at: datetime) -> Plan | Refused:
        if not self.reason.strip():
            return Refused("an abort needs its reason (--reason)")
        return _move(self.label, record, WindowEvent.ABORT, at)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> Any:
        return abort_in(conn, self.label, self.reason, self.by, plan.changes)
