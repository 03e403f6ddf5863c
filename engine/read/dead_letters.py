"""Dead letters listed a page at a time (oldest first).

Dead letters are the switch's: a message it could not take may not even name its
bank. A bank audience reads only those naming a payment in its own namespace
(``BANK:id``, ``engine.ids``: a payment it sent), never one that names none, and
never a body. Operators and banks read reasons with account-like digit runs masked;
one dead letter in full (its body decoded and masked) is ``engine.dlq.inspect``'s,
for operators and auditors only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, select

from engine.ids import SEPARATOR
from engine.ledger.dead_letters import (  # the ledger's query of a dead letter and its redrive
    _DEAD,
    DeadLetterRecord,
    _filtered,
    _record_of,
    _with_redrives,
)
from engine.masking import mask_text
from engine.read.audience import Audience
from engine.read.exceptions import NotVisibleError
from engine.read.paging import DEFAULT_PAGE, Page, check_limit, decode_cursor, page_of

LIST = "dead_letters"  # the cursor's query name


@dataclass(frozen=True)
class DeadLetterFilter:
    kind: str | None = None
    consumer: str | None = None
    since: datetime | None = None  # recorded at or after


def _own(query: Select[Any], audience: Audience) -> Select[Any]:
    """A bank's dead letters: those naming a payment it sent (its own namespace)."""
    if audience.sees_every_bank():
        return query
    prefix = f"{audience.bank_code}{SEPARATOR}"
    return query.where(_DEAD.c.payment_id.startswith(prefix, autoescape=True))


def list_dead_letters(
    conn: Connection,
    audience: Audience,
    which: DeadLetterFilter,
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> Page[DeadLetterRecord]:
    """Dead letters matching every filter given, oldest first, with their redrive if any."""
    check_limit(limit)
    query = _own(_filtered(_with_redrives(), which.kind, which.consumer, which.since), audience)
    if cursor is not None:
        (after_id,) = decode_cursor(LIST, cursor)
        query = query.where(_DEAD.c.id > int(after_id))
    rows = conn.execute(query.order_by(_DEAD.c.id).limit(limit + 1))
    records = [_record_of(r) for r in rows]
    if not audience.unmasked():
        records = [replace(r, reason=mask_text(r.reason)) for r in records]
    return page_of(LIST, records, limit, lambda r: (r.id,))


def count_dead_letters(conn: Connection, audience: Audience, which: DeadLetterFilter) -> int:
    """How many dead letters match, so a page can say how many there are in all."""
    query = _own(
        _filtered(select(func.count()).select_from(_DEAD), which.kind, which.consumer, which.since),
        audience,
    )
    return int(conn.execute(query).scalar_one())


def get_dead_letter(conn: Connection, audience: Audience, dead_letter_id: int) -> DeadLetterRecord:
    """One dead letter (reason masked as in the list); another bank's is as missing as none."""
    row = conn.execute(_own(_with_redrives(), audience).where(_DEAD.c.id == dead_letter_id)).first()
    if row is None:
        raise NotVisibleError(f"no dead letter {dead_letter_id} in the ledger")
    record = _record_of(row)
    return record if audience.unmasked() else replace(record, reason=mask_text(record.reason))
