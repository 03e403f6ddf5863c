"""Dead letters listed for operators and auditors, a page at a time (oldest first).

Dead letters are the switch's: a message it could not take may not even name its
bank, so a bank audience reads none. An operator reads reasons with account-like
digit runs masked; one dead letter in full (its body decoded and masked) is
``engine.dlq.inspect``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Connection, func, select

from engine.ledger.dead_letters import (  # the ledger's query of a dead letter and its redrive
    _DEAD,
    DeadLetterRecord,
    _filtered,
    _record_of,
    _with_redrives,
)
from engine.masking import mask_text
from engine.read.audience import Audience
from engine.read.exceptions import ReadError
from engine.read.paging import DEFAULT_PAGE, Page, check_limit, decode_cursor, page_of

LIST = "dead_letters"  # the cursor's query name


@dataclass(frozen=True)
class DeadLetterFilter:
    kind: str | None = None
    consumer: str | None = None
    since: datetime | None = None  # recorded at or after


def _check(audience: Audience) -> None:
    if not audience.sees_every_bank():
        raise ReadError("dead letters are the switch's: an operator or an auditor reads them")


def list_dead_letters(
    conn: Connection,
    audience: Audience,
    which: DeadLetterFilter,
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> Page[DeadLetterRecord]:
    """Dead letters matching every filter given, oldest first, with their redrive if any."""
    _check(audience)
    check_limit(limit)
    query = _filtered(_with_redrives(), which.kind, which.consumer, which.since)
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
    _check(audience)
    query = _filtered(
        select(func.count()).select_from(_DEAD), which.kind, which.consumer, which.since
    )
    return int(conn.execute(query).scalar_one())
