"""The net debit caps a replay decides with: the live ledger's cap versions, by record time.

Settlement reads each bank's cap with every batch (``bank_limits``), so an operator's
change binds from the next batch on: caps are versioned (kind ``cap`` of
``reference_versions``, :mod:`engine.ops.limits`) but not chosen by event time. A replay
copies the live versions; before its first batch it gives each capped item the value
before its first version (the version's ``old``; none: no cap), and before each
settlement batch it applies every version announced at or before the batch's latest
record time. The reference file's caps stand for a bank without versions.

Exact when no cap changed while the replayed records were being decided (a cap set
before the traffic, as ``sakk liquidity cap`` usually is); around a change, the live
run may have decided a batch on the other side of it than the replay does, since a live
batch reads the cap at its own wall time. The replay's log names each version it applies.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select

from engine.ledger.models import Bank, BankLimit, table_of
from engine.ledger.positions import ensure_rows
from engine.ledger.reference_versions import CAP, Version, read_versions

log = logging.getLogger(__name__)


@dataclass
class CapTimeline:
    """The cap versions still to apply to a replay's ledger, oldest first."""

    pending: list[Version] = field(default_factory=list)
    applied: int = 0

    @classmethod
    def start(cls, engine: Engine) -> CapTimeline:
        """Read the copied versions and set each item to its value before the first one."""
        with engine.begin() as conn:
            versions = read_versions(conn, (CAP,))
            first: dict[str, Version] = {}
            for v in versions:
                first.setdefault(v.item, v)
            banks = set(conn.execute(select(Bank.code)).scalars())
            for v in first.values():
                _set_cap(conn, v.item, v.old, banks)
        return cls(list(versions))

    def advance(self, engine: Engine, up_to: datetime) -> None:
        """Apply every pending version announced at or before ``up_to``."""
        due = [v for v in self.pending if v.announced_at <= up_to]
        if not due:
            return
        self.pending = [v for v in self.pending if v.announced_at > up_to]
        with engine.begin() as conn:
            banks = set(conn.execute(select(Bank.code)).scalars())
            for v in due:
                _set_cap(conn, v.item, v.new, banks)
                log.info("replay: cap %s set to %s (version %d)", v.item, v.new, v.version)
        self.applied += len(due)


def _set_cap(conn: Connection, item: str, value: Mapping[str, Any] | None, banks: set[str]) -> None:
    bank, currency = item.split("/")
    if bank not in banks:
        log.warning("replay: cap %s names a bank the reference file lacks: left out", item)
        return
    t = table_of(BankLimit)
    conn.execute(delete(t).where(t.c.bank_code == bank, t.c.currency == currency))
    if value is not None:
        conn.execute(insert(t).values(bank_code=bank, currency=currency, **value))
        ensure_rows(conn, [(bank, currency)])
