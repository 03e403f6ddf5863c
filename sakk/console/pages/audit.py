"""Audit, for operators and auditors: the operator audit log (who, when, what, old and new
values; every proposal and decision is in it) with its hash chain checked, and ``audit
verify`` of the whole ledger on request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from engine.audit.chain import verify
from engine.ops.audit_log import count_actions, list_actions, verify_action_log
from engine.read.snapshot import REPORT_TIMEOUT_MS, snapshot
from sakk.console.api.common import engine_of, reading
from sakk.console.pages.render import Reader, page, shown_as_page

router = APIRouter(include_in_schema=False)
PAGE_ROWS = 100


@router.get("/audit", response_class=HTMLResponse)
def audit(
    request: Request,
    who: Reader,
    action: Annotated[str, Query(max_length=64)] = "",
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> HTMLResponse:
    """The log's newest page (or the page after ``after``), the chain check of every row."""
    with shown_as_page(who), reading(request) as conn:
        total = count_actions(conn)
        start = max(0, total - PAGE_ROWS) if after is None else after
        rows = list_actions(conn, PAGE_ROWS, start, action or None)
        chain = verify_action_log(conn)
    shown = [r.as_dict() for r in reversed(rows)]  # newest first
    return page(
        request, who, "audit.html", "Audit", rows=shown, total=total, chain=chain,
        action=action, earlier=max(0, start - PAGE_ROWS) if start else None,
    )  # fmt: skip


@router.get("/audit/verify", response_class=HTMLResponse)
def audit_verify(request: Request, who: Reader) -> HTMLResponse:
    """``sakk audit verify`` on the ledger the console reads: chains, double entry, windows."""
    with shown_as_page(who), snapshot(engine_of(request), REPORT_TIMEOUT_MS) as conn:
        report = verify(conn)
    return page(
        request, who, "audit_verify.html", "Audit: verify the ledger", report=report,
        summary=report.summary(), sections=report.sections(),
    )  # fmt: skip
