"""Reference data as read by people: the banks, their keys, the approved writer schemas.

All are short, bounded lists (a bank per member, a few keys each, a schema per event
version), read whole. The stages read the same tables their own way, once per batch (the
validator's key ring, the codec's approved schemas); these are the listings.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from engine.ledger.keys import KeyEntry, list_keys
from engine.ledger.models import ApprovedSchema, Bank
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
class BankInfo:
    code: str
    name: str
    bic: str | None
    webhook_url: str | None
    notification_format: str | None


MAX_BANKS_LISTED = 10_000


def list_banks(conn: Connection, audience: Audience) -> list[BankInfo]:
    """The banks of the switch, by code; a bank audience reads its own only."""
    t = Bank.__table__
    query = select(t.c.code, t.c.name, t.c.bic, t.c.webhook_url, t.c.notification_format)
    if not audience.sees_every_bank():
        query = query.where(t.c.code == audience.bank_code)
    rows = conn.execute(query.order_by(t.c.code).limit(MAX_BANKS_LISTED))
    return [BankInfo(*r) for r in rows]
