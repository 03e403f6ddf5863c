"""Change a bank's net debit cap and alert percentage: an audited operator action.

The cap is reference data (``bank_limits``); changing it is validated by
:func:`engine.risk.limits.check_cap_change`: out of bounds or no change is refused; a cap
lowered below the bank's exposure is taken (an operator may need to stop a bank at once)
and its warning is kept in the audit record. Settlement reads the cap with each batch, so
the change binds from the next batch on; a stale read in a batch in flight is bounded by
the guard, which checks the cap that batch read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from sqlalchemy import Connection, delete, insert, select

from engine.ledger.models import Bank, BankLimit, table_of
from engine.ledger.positions import ensure_rows, read_banks
from engine.money import format_minor, is_known_currency
from engine.ops.action import Plan, Refused
from engine.risk.limits import (
    MAX_ALERT_PERCENT,
    MIN_ALERT_PERCENT,
    Exposure,
    check_cap_change,
)


@dataclass(frozen=True)
class LimitState:
    bank_exists: bool
    cap_minor: int | None
    alert_percent: int | None
    exposure: Exposure | None


@dataclass(frozen=True)
class SetBankLimit:
    """Set ``bank``'s net debit cap and alert percentage in ``currency``."""

    name: ClassVar[str] = "limits.cap"
    bank: str
    currency: str
    cap_minor: int
    alert_percent: int

    @property
    def target(self) -> str:
        return f"bank {self.bank} {self.currency} limits"

    def load(self, conn: Connection) -> LimitState:
        exists = conn.execute(select(Bank.code).where(Bank.code == self.bank)).first() is not None
        t = table_of(BankLimit)
        row = conn.execute(
            select(t.c.net_debit_cap_minor, t.c.alert_percent).where(
                t.c.bank_code == self.bank, t.c.currency == self.currency
            )
        ).first()
        position = read_banks(conn, [(self.bank, self.currency)]).get((self.bank, self.currency))
        return LimitState(
            exists, None if row is None else int(row.net_debit_cap_minor),
            None if row is None else int(row.alert_percent),
            None if position is None else position.exposure,
        )  # fmt: skip

    def decide(self, state: LimitState, at: datetime) -> Plan | Refused:
        if not state.bank_exists:
            return Refused(f"no bank {self.bank}")
        if not is_known_currency(self.currency):
            return Refused(f"currency {self.currency!r} is not one Sakk settles")
        if not MIN_ALERT_PERCENT <= self.alert_percent <= MAX_ALERT_PERCENT:
            return Refused(f"alert percentage {self.alert_percent}: expected 1..100")
        old = {"net_debit_cap_minor": state.cap_minor, "alert_percent": state.alert_percent}
        new = {"net_debit_cap_minor": self.cap_minor, "alert_percent": self.alert_percent}
        if old == new:
            return Plan(self.target, old, new, None, noop=True)
        exposure = state.exposure or Exposure(self.bank, self.currency, 0)
        try:
            old_cap = -1 if state.cap_minor is None else state.cap_minor  # none: any cap is new
            change = check_cap_change(exposure, old_cap, self.cap_minor)
        except ValueError as exc:
            if state.cap_minor != self.cap_minor:
                return Refused(str(exc))
            change = None  # the percentage alone changes
        warning = None if change is None else change.warning
        shown = format_minor(self.cap_minor, self.currency)
        return Plan(self.target, old, new | {"cap": shown, "warning": warning}, new)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> str | None:
        t = table_of(BankLimit)
        conn.execute(delete(t).where(t.c.bank_code == self.bank, t.c.currency == self.currency))
        conn.execute(insert(t).values(bank_code=self.bank, currency=self.currency, **plan.changes))
        ensure_rows(conn, [(self.bank, self.currency)])
        warning: str | None = plan.new["warning"]
        return warning


MOVEMENT_KINDS = ("FundsIn", "FundsOut")


@dataclass(frozen=True)
class IssueMovement:
    """An operator issues a ``FundsIn`` or ``FundsOut`` for ``bank``: recorded before it is
    published. Settlement decides it (a withdrawal below the exposure is refused there, in
    write order); the record says who asked for which movement."""

    name: ClassVar[str] = "liquidity.movement"
    kind: str  # FundsIn | FundsOut
    bank: str
    currency: str
    amount_minor: int
    movement_id: str

    @property
    def target(self) -> str:
        return f"bank {self.bank} {self.currency} liquidity"

    def load(self, conn: Connection) -> bool:
        return conn.execute(select(Bank.code).where(Bank.code == self.bank)).first() is not None

    def decide(self, state: bool, at: datetime) -> Plan | Refused:
        if not state:
            return Refused(f"no bank {self.bank}")
        if self.kind not in MOVEMENT_KINDS:
            return Refused(f"movement {self.kind!r}: expected one of {list(MOVEMENT_KINDS)}")
        if self.amount_minor <= 0:
            return Refused("a movement's amount is above zero")
        if not is_known_currency(self.currency):
            return Refused(f"currency {self.currency!r} is not one Sakk settles")
        new = {"movement": self.kind, "movement_id": self.movement_id,
               "amount": format_minor(self.amount_minor, self.currency)}  # fmt: skip
        return Plan(self.target, None, new)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> None:
        return None  # the movement itself is the event settlement posts
