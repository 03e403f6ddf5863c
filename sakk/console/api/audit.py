"""The audit: the operator audit log, and ``sakk audit verify`` run on demand.

Operators and auditors only: bank users read neither (the log names every bank's
affairs). Verification walks the whole ledger, so one runs at a time (429 meanwhile),
in a read-only snapshot with the reports' statement timeout.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from engine.audit.chain import verify
from engine.audit.export import jsonable
from engine.masking import mask_text
from engine.ops.audit_log import LIST_LIMIT_MAX, list_actions
from engine.read.paging import MAX_PAGE
from engine.read.snapshot import REPORT_TIMEOUT_MS, snapshot
from sakk.console.api.common import Out, engine_of, reading
from sakk.console.auth import Principal, require_reader
from sakk.console.errors import ConsoleError, ErrorBody

router = APIRouter(tags=["audit"])
_VERIFYING = threading.Lock()


class ActionOut(Out):
    seq: int
    acted_at: datetime
    actor: str
    action: str
    target: str
    reason: str | None
    old: Any
    new: Any
    row_hash: str


class ActionLog(Out):
    items: list[ActionOut]
    next_after_seq: int | None  # pass as after_seq for the next page; None: the last page


@router.get("/audit/log", response_model=ActionLog, summary="The operator audit log, oldest first")
def log(
    request: Request,
    who: Annotated[Principal, Depends(require_reader)],
    after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
    action: Annotated[str | None, Query(min_length=1, max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=min(MAX_PAGE, LIST_LIMIT_MAX))] = 100,
) -> ActionLog:
    with reading(request) as conn:
        rows = list_actions(conn, limit + 1, after_seq, action)
    shown = rows[:limit]
    return ActionLog(
        items=[ActionOut(**r.as_dict()) for r in shown],
        next_after_seq=shown[-1].seq if len(rows) > limit else None,
    )


class VerifyOut(Out):
    """``sakk audit verify --format json``: the summary and every finding."""

    ok: bool
    summary: dict[str, Any]
    sections: dict[str, list[dict[str, Any]]]


@router.get(
    "/audit/verify", response_model=VerifyOut,
    summary="Verify the ledger: hash chains, balances, lifecycle, windows, the audit log",
    responses={429: {"model": ErrorBody, "description": "A verification is running already"}},
)  # fmt: skip
def audit_verify(request: Request, who: Annotated[Principal, Depends(require_reader)]) -> VerifyOut:
    if not _VERIFYING.acquire(blocking=False):
        raise ConsoleError(429, "busy", "a verification is running already: try again after it")
    try:
        with snapshot(engine_of(request), REPORT_TIMEOUT_MS) as conn:
            report = verify(conn)
    finally:
        _VERIFYING.release()
    sections = jsonable(report.sections())
    if not who.audience.unmasked():  # an operator: account-like digit runs masked
        sections = {k: [{f: _masked(v) for f, v in row.items()} for row in rows]
                    for k, rows in sections.items()}  # fmt: skip
    return VerifyOut(ok=report.ok, summary=jsonable(report.summary()), sections=sections)


def _masked(value: Any) -> Any:
    return mask_text(value) if isinstance(value, str) else value
