"""Reference data as read by people: the approved writer schemas and the banks' keys.

Both are short, bounded lists (a schema per event version, a few keys per bank), read
whole. The stages read the same tables their own way, once per batch (the validator's
key ring, the codec's approved schemas); these are the listings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from engine.ledger.keys import KeyEntry, list_keys
from engine.ledger.models import ApprovedSchema, Bank, table_of
from engine.ledger.reference import read_fee_schedule, read_limits
from engine.ledger.reference_versions import BANK, Version, read_versions
from engine.ledger.schemas import ApprovedRecord
from engine.read.audience import Audience


def approved_schemas(conn: Connection) -> list[ApprovedRecord]:
    """Every approved writer schema, oldest first (no secret in them: any audience)."""
    t = ApprovedSchema.__table__
    query = select(
        t.c.id, t.c.fingerprint, t.c.identity, t.c.event_type, t.c.origin, t.c.approved_by,
        t.c.approved_at,
    ).order_by(t.c.id)  # fmt: skip
    return [ApprovedRecord(r[0], bytes(r[1]), *r[2:]) for r in conn.execute(query)]


def bank_keys(conn: Connection, audience: Audience, bank_code: str | None = None) -> list[KeyEntry]:
    """The banks' public keys with their windows; a bank audience reads its own only."""
    if not audience.sees_every_bank():
        if bank_code not in (None, audience.bank_code):
            return []
        bank_code = audience.bank_code
    return list_keys(conn, bank_code)


@dataclass(frozen=True)
class BankView:
    """A bank of the switch; where its notifications go only to the switch and to itself."""

    code: str
    name: str
    bic: str | None
    webhook_url: str | None
    notification_format: str | None


def banks(conn: Connection, audience: Audience) -> list[BankView]:
    """Every bank (the directory is no secret); another bank's delivery settings hidden."""
    t = table_of(Bank)
    rows = conn.execute(select(t).order_by(t.c.code)).all()
    return [
        BankView(r.code, r.name, r.bic, *((r.webhook_url, r.notification_format)
                 if audience.sees_every_bank() or r.code == audience.bank_code else (None, None)))
        for r in rows
    ]  # fmt: skip


def reference_versions(conn: Connection, audience: Audience) -> list[Version]:
    """Every change of reference data, oldest first; a bank reads fees, limits and its own."""
    return [
        v for v in read_versions(conn)
        if audience.sees_every_bank() or v.kind != BANK or v.item == audience.bank_code
    ]  # fmt: skip


def current_reference(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    """The fees and channel limits in force now (the same for every bank: any audience)."""
    fees = read_fee_schedule(conn).rules
    limits = read_limits(conn)
    return {
        "fees": [
            {"channel": c, "payment_type": t, "currency": cur, "fixed_minor": fixed,
             "rate_bps": bps, "max_minor": cap}
            for (c, t, cur), (fixed, bps, cap) in sorted(fees.items())
        ],
        "limits": [
            {"channel": c, "currency": cur, "max_amount_minor": most,
             "hold_expiry_s": limits.hold_expiry_s.get((c, cur))}
            for (c, cur), most in sorted(limits.max_amount_minor.items())
        ],
    }  # fmt: skip
