"""Audit runs (``audit verify``, ``replay``, ``reconcile``) listed newest first, and one
with its report.

The runs are the switch's: they name every bank's affairs, so only operators and
auditors read them (a bank audience is refused). An operator reads the options, the
error and the report with account-like digit runs masked; an auditor reads them whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from engine.ledger.models import AuditRun, table_of
from engine.masking import mask_text
from engine.read.audience import Audience
from engine.read.exceptions import NotVisibleError, ReadError
from engine.read.paging import DEFAULT_PAGE, Page, check_limit, decode_cursor, page_of
from engine.times import as_utc

RUNS = table_of(AuditRun)
LIST = "audit_runs"  # the cursor's query name
KINDS = ("verify", "replay", "reconcile")


@dataclass(frozen=True)
class AuditRunLine:
    id: int
    kind: str
    actor: str
    via: str
    started_at: datetime
    finished_at: datetime
    options: dict[str, Any]
    outcome: str
    differences: int
    counts: dict[str, int]
    report_chars: int
    report_cut: bool
    error: str | None


@dataclass(frozen=True)
class AuditRunRecord(AuditRunLine):
    report: dict[str, Any] | None  # summary, sections (and cut, whole_chars when cut)


_LINE = [RUNS.c[n] for n in AuditRunLine.__dataclass_fields__]


def _readable(audience: Audience) -> None:
    if not audience.sees_every_bank():
        raise ReadError("audit runs are the switch's: operators and auditors read them")


def _masked(value: Any, audience: Audience) -> Any:
    if audience.unmasked():
        return value
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _masked(v, audience) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, audience) for v in value]
    return value


def _line_fields(row: Any, audience: Audience) -> dict[str, Any]:
    return {
        "id": int(row.id), "kind": row.kind, "actor": row.actor, "via": row.via,
        "started_at": as_utc(row.started_at), "finished_at": as_utc(row.finished_at),
        "options": _masked(json.loads(row.options), audience), "outcome": row.outcome,
        "differences": int(row.differences), "counts": json.loads(row.counts),
        "report_chars": int(row.report_chars), "report_cut": bool(row.report_cut),
        "error": _masked(row.error, audience),
    }  # fmt: skip


def list_audit_runs(
    conn: Connection,
    audience: Audience,
    kind: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> Page[AuditRunLine]:
    """Runs newest first (of one kind if given), without their reports."""
    _readable(audience)
    check_limit(limit)
    query = select(*_LINE)
    if kind is not None:
        if kind not in KINDS:
            raise ReadError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
        query = query.where(RUNS.c.kind == kind)
    if cursor is not None:
        (before_id,) = decode_cursor(LIST, cursor)
        query = query.where(RUNS.c.id < int(before_id))
    rows = conn.execute(query.order_by(RUNS.c.id.desc()).limit(limit + 1))
    lines = [AuditRunLine(**_line_fields(r, audience)) for r in rows]
    return page_of(LIST, lines, limit, lambda r: (r.id,))


def get_audit_run(conn: Connection, audience: Audience, run_id: int) -> AuditRunRecord:
    """One run with its report (as kept: cut to the bound when it was longer)."""
    _readable(audience)
    row = conn.execute(select(*_LINE, RUNS.c.report).where(RUNS.c.id == run_id)).first()
    if row is None:
        raise NotVisibleError(f"no audit run {run_id}")
    report = None if row.report is None else _masked(json.loads(row.report), audience)
    return AuditRunRecord(**_line_fields(row, audience), report=report)
