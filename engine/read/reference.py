"""Reference data as read by people: the approved writer schemas and the banks' keys.

Both are short, bounded lists (a schema per event version, a few keys per bank), read
whole. The stages read the same tables their own way, once per batch (the validator's
key ring, the codec's approved schemas); these are the listings.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from engine.ledger.keys import KeyEntry, list_keys
from engine.ledger.models import ApprovedSchema
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
