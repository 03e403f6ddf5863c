"""Revoke a bank's key: the validator refuses the key's signatures from the time given on.

A revocation is never undone and never moved later (``engine.ledger.keys``): asking for
a later one than the one in force changes nothing and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from sqlalchemy import Connection, select

from engine.ledger.keys import revoke_in
from engine.ledger.models import BankKey, table_of
from engine.ops.action import Plan, Refused
from engine.times import as_utc


@dataclass(frozen=True)
class KeyState:
    exists: bool
    revoked_at: datetime | None


@dataclass(frozen=True)
class RevokeKey:
    """Revoke ``key_id`` of ``bank`` from ``revoke_from`` on."""

    name: ClassVar[str] = "key.revoke"
    bank: str
    key_id: str
    revoke_from: datetime

    @property
    def target(self) -> str:
        return f"key {self.bank}/{self.key_id}"

    def load(self, conn: Connection) -> KeyState:
        t = table_of(BankKey)
        row = conn.execute(
            select(t.c.revoked_at).where(t.c.bank_code == self.bank, t.c.key_id == self.key_id)
        ).first()
        if row is None:
            return KeyState(False, None)
        return KeyState(True, None if row.revoked_at is None else as_utc(row.revoked_at))

    def decide(self, state: KeyState, at: datetime) -> Plan | Refused:
        if not state.exists:
            return Refused(f"bank {self.bank} has no key {self.key_id}")
        old = {"revoked_at": _iso(state.revoked_at)}
        if state.revoked_at is not None and state.revoked_at <= self.revoke_from:
            return Plan(self.target, old, old, state.revoked_at, noop=True)
        return Plan(self.target, old, {"revoked_at": _iso(self.revoke_from)}, self.revoke_from)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> datetime:
        return revoke_in(conn, self.bank, self.key_id, plan.changes)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
