"""Whole rows of payments, holds and steps, as stored, for the auditors and the trace.

Reconciliation compares a replayed ledger with the live one row by row, and the trace
shows one payment's rows: both read them here. Nothing is masked (an auditor sees
rows whole; the trace masks its view per audience afterwards); times come back as
aware UTC whatever the database (SQLite returns them naive).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

from engine.ledger.models import Hold, Payment, PaymentStep
from engine.ledger.queries import chunks
from engine.times import as_utc

TIMES = frozenset({"occurred_at", "expires_at", "resolved_at"})


def utc_times(row: dict[str, Any]) -> dict[str, Any]:
    for name in TIMES & row.keys():
        if row[name] is not None:
            row[name] = as_utc(row[name])
    return row


def payment_rows(conn: Connection, payment_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """payment id -> its whole row, for those of ``payment_ids`` in the ledger."""
    p = Payment.__table__
    rows: dict[str, dict[str, Any]] = {}
    for chunk in chunks(sorted(set(payment_ids))):
        for r in conn.execute(select(p).where(p.c.payment_id.in_(chunk))).mappings():
            rows[r["payment_id"]] = utc_times(dict(r))
    return rows


def hold_rows(conn: Connection, payment_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """payment id -> its hold's row (an authorization has one, other payments none)."""
    h = Hold.__table__
    found: dict[str, dict[str, Any]] = {}
    for chunk in chunks(sorted(set(payment_ids))):
        for r in conn.execute(select(h).where(h.c.payment_id.in_(chunk))).mappings():
            found[r["payment_id"]] = utc_times(dict(r))
    return found


def step_rows(conn: Connection, payment_ids: Iterable[str] | None) -> list[dict[str, Any]]:
    """The steps asked of these payments (of every payment: ``None``), applied or refused."""
    st = PaymentStep.__table__
    if payment_ids is None:
        return [utc_times(dict(r)) for r in conn.execute(select(st)).mappings()]
    rows: list[dict[str, Any]] = []
    for chunk in chunks(sorted(set(payment_ids))):
        query = select(st).where(st.c.payment_id.in_(chunk))
        rows += [utc_times(dict(r)) for r in conn.execute(query).mappings()]
    return rows
