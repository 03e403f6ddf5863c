"""The audit: the operator audit log, ``sakk audit verify`` run on demand, and the runs
of verify, replay and reconcile recorded in ``audit_runs`` with their differences.

Operators and auditors only: bank users read none of it (it names every bank's
affairs). Verification walks the whole ledger, so one runs at a time (429 meanwhile),
in a read-only snapshot with the reports' statement timeout; each is recorded as an
audit run (who asked, when, its outcome and findings), failed ones too.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from engine.audit.chain import VerifyReport, verify
from engine.audit.export import jsonable
from engine.audit.runs import (
    FAILED,
    FinishedRun,
    integer_counts,
    outcome_of,
    record_run,
    verify_findings,
)
from engine.audit.urls import safe_url
from engine.masking import mask_text
from engine.ops.audit_log import LIST_LIMIT_MAX, list_actions
from engine.read.audit_runs import get_audit_run, list_audit_runs
from engine.read.paging import MAX_PAGE
from engine.read.snapshot import REPORT_TIMEOUT_MS, snapshot
from sakk.console.api.common import DEFAULT_LIMIT, Cursor, Limit, Out, engine_of, now, reading
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
    report = verify_recorded(request, who)
    sections = shown_sections(report, who)
    return VerifyOut(ok=report.ok, summary=jsonable(report.summary()), sections=sections)


def shown_sections(report: VerifyReport, who: Principal) -> dict[str, list[dict[str, Any]]]:
    """A verification's findings as ``who`` may read them: an operator's with account-like
    digit runs masked, an auditor's whole (the API and the page alike)."""
    sections: dict[str, list[dict[str, Any]]] = jsonable(report.sections())
    if who.audience.unmasked():
        return sections
    return {k: [{f: _masked(v) for f, v in row.items()} for row in rows]
            for k, rows in sections.items()}  # fmt: skip


def verify_recorded(request: Request, who: Principal) -> VerifyReport:
    """Verify (one at a time: 429 meanwhile), and record the run as ``who``'s."""
    if not _VERIFYING.acquire(blocking=False):
        raise ConsoleError(429, "busy", "a verification is running already: try again after it")
    try:
        return _verify_recorded(request, who)
    finally:
        _VERIFYING.release()


def _verify_recorded(request: Request, who: Principal) -> VerifyReport:
    """Verify in a snapshot, and record the run (a failed one too, then re-raise)."""
    started, engine = now(request), engine_of(request)
    options = {"ledger": safe_url(request.app.state.config.database_url), "anchors": 0}

    def finished(outcome: str, **rest: Any) -> FinishedRun:
        end = max(now(request), started)
        return FinishedRun("verify", who.name, "console", started, end, options, outcome, **rest)

    try:
        with snapshot(engine, REPORT_TIMEOUT_MS) as conn:
            report = verify(conn)
    except Exception as exc:
        record_run(engine, finished(FAILED, error=f"{type(exc).__name__}: {exc}"))
        raise
    summary = report.summary()
    sections = report.sections()
    sections["chains"] = sections.pop("chains")  # the findings first
    findings = verify_findings(summary)
    record_run(engine, finished(outcome_of(report.ok), differences=findings,
                                counts=integer_counts(summary), summary=summary,
                                sections=sections))  # fmt: skip
    return report


class RunLine(Out):
    id: int
    kind: str  # verify | replay | reconcile
    actor: str
    via: str  # cli | console
    started_at: datetime
    finished_at: datetime
    options: dict[str, Any]
    outcome: str  # OK | DIFFERENCES | FAILED
    differences: int
    counts: dict[str, int]
    report_chars: int  # the whole report's length; report_cut: it was kept cut
    report_cut: bool
    error: str | None


class RunPage(Out):
    items: list[RunLine]
    next_cursor: str | None


class RunOut(RunLine):
    report: dict[str, Any] | None  # summary, sections (cut: rows kept of each, when cut)


RunKind = Annotated[str | None, Query(pattern="^(verify|replay|reconcile)$")]


@router.get(
    "/audit/runs", response_model=RunPage,
    summary="Recorded runs of audit verify, replay and reconcile, newest first",
)  # fmt: skip
def runs(
    request: Request,
    who: Annotated[Principal, Depends(require_reader)],
    kind: RunKind = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> RunPage:
    with reading(request) as conn:
        page = list_audit_runs(conn, who.audience, kind, cursor, limit)
    return RunPage(items=[RunLine(**vars(r)) for r in page.items], next_cursor=page.next_cursor)


@router.get("/audit/runs/{run_id}", response_model=RunOut,
            summary="One recorded run with its report (its differences)",
            responses={404: {"model": ErrorBody}})  # fmt: skip
def run(
    request: Request,
    who: Annotated[Principal, Depends(require_reader)],
    run_id: Annotated[int, Path(ge=1, le=2**62)],
) -> RunOut:
    with reading(request) as conn:
        record = get_audit_run(conn, who.audience, run_id)
    return RunOut(**vars(record))


def _masked(value: Any) -> Any:
    return mask_text(value) if isinstance(value, str) else value
