"""Audit, for operators and auditors: the operator audit log (who, when, what, old and new
values; every proposal and decision is in it) with its hash chain checked, the recorded
runs of ``audit verify``, ``replay`` and ``reconcile`` with what each found to differ, and
``audit verify`` of the whole ledger on request (recorded as a run too)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from engine.audit.runs import VERIFY_FINDINGS
from engine.ops.audit_log import count_actions, list_actions, verify_action_log
from engine.read.audit_runs import AuditRunLine, get_audit_run, list_audit_runs
from engine.read.paging import MAX_CURSOR_CHARS
from sakk.console.api.audit import shown_sections, verify_recorded
from sakk.console.api.common import reading
from sakk.console.pages.render import Reader, page, shown_as_page

router = APIRouter(include_in_schema=False)
PAGE_ROWS = 100
RUN_ROWS = 20  # audit runs on the audit screen, newest first; the next page by its cursor


@router.get("/audit", response_class=HTMLResponse)
def audit(
    request: Request,
    who: Reader,
    action: Annotated[str, Query(max_length=64)] = "",
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    runs: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS)] = None,
) -> HTMLResponse:
    """The log's newest page (or the page after ``after``), the chain check of every row,
    and the newest audit runs (or the page the ``runs`` cursor names)."""
    with shown_as_page(who), reading(request) as conn:
        total = count_actions(conn)
        start = max(0, total - PAGE_ROWS) if after is None else after
        rows = list_actions(conn, PAGE_ROWS, start, action or None)
        chain = verify_action_log(conn)
        run_page = list_audit_runs(conn, who.audience, None, runs, RUN_ROWS)
    shown = [r.as_dict() for r in reversed(rows)]  # newest first
    return page(
        request, who, "audit.html", "Audit", rows=shown, total=total, chain=chain,
        action=action, earlier=max(0, start - PAGE_ROWS) if start else None,
        runs=[(r, differing(r)) for r in run_page.items], runs_next=run_page.next_cursor,
    )  # fmt: skip


def differing(run: AuditRunLine) -> dict[str, int]:
    """What a run found to differ, by kind, from its counts (none: an empty dict)."""
    if run.kind == "verify":
        return {k: n for k, n in run.counts.items() if n and k in VERIFY_FINDINGS}
    if run.kind == "replay":
        return {k: n for k, n in run.counts.items() if n and k == "signature_failures"}
    kinds = ("missing_in_live", "missing_in_replay", "different_", "orphan_postings")
    return {
        k: n for k, n in run.counts.items()
        if n and k != "differences" and (k.endswith("_differences") or k.startswith(kinds))
    }  # fmt: skip


@router.get("/audit/runs/{run_id}", response_class=HTMLResponse)
def audit_run(
    request: Request, who: Reader, run_id: Annotated[int, Path(ge=1, le=2**62)]
) -> HTMLResponse:
    """One recorded run: what it covered, its counts, and each difference it found."""
    with shown_as_page(who), reading(request) as conn:
        run = get_audit_run(conn, who.audience, run_id)
    report = run.report or {}
    sections = dict(report.get("sections") or {})  # stored with sorted keys: findings first
    if "chains" in sections:
        sections["chains"] = sections.pop("chains")
    return page(
        request, who, "audit_run.html", f"Audit run #{run.id}: {run.kind}", run=run,
        summary=report.get("summary") or {}, sections=sections,
        cut=report.get("cut") or {}, differing=differing(run),
    )  # fmt: skip


@router.get("/audit/verify", response_class=HTMLResponse)
def audit_verify(request: Request, who: Reader) -> HTMLResponse:
    """``sakk audit verify`` on the ledger the console reads: chains, double entry, windows;
    recorded as an audit run of ``who``'s."""
    with shown_as_page(who):
        report = verify_recorded(request, who)
    return page(
        request, who, "audit_verify.html", "Audit: verify the ledger", report=report,
        summary=report.summary(), sections=shown_sections(report, who),
    )  # fmt: skip
