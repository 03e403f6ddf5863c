"""An operator action: a typed request, load -> decide -> write, with its audit record.

Every action has the same shape, so that a layer of proposals and approvals (four eyes)
can hold a request, show what it would change, and run it later:

- the request is a frozen dataclass (what to do, to what), apart from who asks (:class:`Actor`);
- ``load(conn)`` reads what the decision needs;
- ``decide(state, at)`` is pure: a :class:`Plan` (what to write, the old and new values
  the audit log keeps) or a :class:`Refused` with the reason;
- ``apply(conn, plan, seq)`` writes the plan; ``seq`` is its audit record's number;
- ``recorded(plan, result)`` (optional) gives the old and new values the audit record
  keeps when only the writing knows them (which notifications a redelivery moved).

:func:`run_action` does the three and appends the audit record in one transaction: an
action is never written without its record, nor recorded without being written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from sqlalchemy import Connection, Engine

from engine.ops.audit_log import ActionRecord, append_action, lock_action_log, next_action_seq

S = TypeVar("S")
R = TypeVar("R", covariant=True)


@dataclass(frozen=True)
class Actor:
    """Who acts, as the auditors will read it, and why (optional)."""

    name: str
    reason: str | None = None


@dataclass(frozen=True)
class Plan:
    """What an accepted action writes. ``changes`` is the action's own; ``noop``: nothing to do."""

    target: str
    old: Any
    new: Any
    changes: Any = None
    noop: bool = False


@dataclass(frozen=True)
class Refused:
    """Why an action is not taken; nothing is written."""

    reason: str


class ActionRefusedError(Exception):
    """An action its rules refused; the message says why."""

    def __init__(self, action: str, reason: str) -> None:
        super().__init__(reason)
        self.action = action
        self.reason = reason


class Action(Protocol[S]):
    name: ClassVar[str]

    def load(self, conn: Connection) -> S: ...

    def decide(self, state: S, at: datetime) -> Plan | Refused: ...

    def apply(self, conn: Connection, plan: Plan, seq: int) -> Any: ...


@dataclass(frozen=True)
class Done(Generic[R]):
    """An action taken: its audit record's ``seq`` (None when it changed nothing), plan, result."""

    seq: int | None
    plan: Plan
    result: R


def run_action(engine: Engine, action: Action[Any], actor: Actor, at: datetime) -> Done[Any]:
    """Load, decide and write ``action`` with its audit record, in one transaction.

    Raises :class:`ActionRefusedError` (nothing written) when its rules refuse it.
    """
    with engine.begin() as conn:
        return act(conn, action, actor, at)


def act(conn: Connection, action: Action[Any], actor: Actor, at: datetime) -> Done[Any]:
    """:func:`run_action` inside a transaction the caller holds."""
    lock_action_log(conn)  # decided on what no other action is changing meanwhile
    plan = action.decide(action.load(conn), at)
    if isinstance(plan, Refused):
        raise ActionRefusedError(action.name, plan.reason)
    if plan.noop:
        return Done(None, plan, None)
    seq = next_action_seq(conn)
    result = action.apply(conn, plan, seq)
    recorded = getattr(action, "recorded", None)
    old, new = (plan.old, plan.new) if recorded is None else recorded(plan, result)
    record = ActionRecord(actor.name, at, action.name, plan.target, old, new, actor.reason)
    if append_action(conn, record) != seq:
        raise RuntimeError(f"operator action #{seq} was taken by another action meanwhile")
    return Done(seq, plan, result)
