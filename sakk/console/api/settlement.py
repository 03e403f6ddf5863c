"""Settlement: windows with each bank's net, the liquidity board; closing and aborting.

Settling and confirming a window move money: they need four eyes (``/api/v1/proposals``).
Closing one (its positions become final) and aborting a settlement attempt are one
operator's actions, recorded in the audit log like ``sakk settlement close`` and ``abort``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import Engine

from engine.audit.exceptions import AuditError
from engine.audit.windows import close_window
from engine.config import Settings
from engine.ops.action import run_action
from engine.ops.windows import AbortWindow, CloseWindow
from engine.read.liquidity import BoardLine, liquidity_board
from engine.read.positions import (
    DEFAULT_WINDOW_HOURS,
    SUPPORTED_WINDOW_HOURS,
    Window,
    WindowReport,
)
from engine.read.windows import WindowView, list_windows
from sakk.console.api.common import (
    REASON_CHARS,
    Cursor,
    DoneOut,
    Limit,
    Out,
    actor,
    done_out,
    reading,
)
from sakk.console.auth import Principal, require_any, require_operator
from sakk.console.errors import ConsoleError, ErrorBody

router = APIRouter(tags=["settlement"])
Hours = Annotated[int, Query(description=f"window length, one of {SUPPORTED_WINDOW_HOURS}")]
WINDOW_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}Z(/[0-9]{1,2}h)?)?$"
REFUSED: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "Refused by the window's lifecycle"}
}


class WindowPage(Out):
    items: list[WindowView]
    next_cursor: str | None


class Board(Out):
    lines: list[BoardLine]


@router.get("/settlement/windows", response_model=WindowPage, summary="Windows, newest first")
def windows(
    request: Request,
    who: Annotated[Principal, Depends(require_any)],
    hours: Hours = DEFAULT_WINDOW_HOURS,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> WindowPage:
    if hours not in SUPPORTED_WINDOW_HOURS:
        raise ConsoleError(400, "bad_request", f"hours: one of {SUPPORTED_WINDOW_HOURS}")
    with reading(request) as conn:
        page = list_windows(conn, who.audience, cursor, limit, hours)
    return WindowPage(items=list(page.items), next_cursor=page.next_cursor)


@router.get(
    "/settlement/positions", response_model=Board,
    summary="The liquidity board: position, holds, cap, liquidity, share used, headroom",
)  # fmt: skip
def positions(request: Request, who: Annotated[Principal, Depends(require_any)]) -> Board:
    with reading(request) as conn:
        return Board(lines=liquidity_board(conn, who.audience))


class CloseIn(BaseModel):
    window: str = Field(pattern=WINDOW_TEXT, description="2026-11-24, or 2026-11-24T06:00Z")
    hours: int = DEFAULT_WINDOW_HOURS
    early: bool = False  # a window that has not ended yet
    reason: str | None = Field(default=None, max_length=REASON_CHARS)


class CloseOut(DoneOut):
    published: str | None  # the topics the close went to; None: recorded only (no broker)


@router.post(
    "/settlement/windows/close", response_model=CloseOut, responses=REFUSED,
    summary="Close a window: its net positions become final",
)  # fmt: skip
def close(
    request: Request, body: CloseIn, who: Annotated[Principal, Depends(require_operator)]
) -> CloseOut:
    from sakk.cli.settlement import wait_for_close

    settings, engine = request.app.state.settings, request.app.state.engine
    try:
        window = Window.parse(body.window, body.hours)
    except AuditError as exc:  # not a date (a window's own errors are 400 already)
        raise ConsoleError(400, "bad_request", str(exc)) from exc
    requested_at = datetime.now(UTC)
    if window.end <= requested_at or body.early:
        wait_for_close(requested_at, timedelta(seconds=settings.settlement_close_delay_s))
    action = CloseWindow(window, body.early, requested_at, who.name)
    done = run_action(engine, action, actor(who, body.reason), datetime.now(UTC))
    result = done.result if not done.plan.noop else close_window(engine, window, requested_at)
    published = None
    if not settings.uses_embedded_broker:
        published = _publish(settings, engine, result.report)
    return CloseOut(**done_out(action, done).model_dump(), published=published)


def _publish(settings: Settings, engine: Engine, report: WindowReport) -> str:
    from engine.audit.window_events import publish_close, publish_transitions
    from engine.audit.window_lifecycle import window_rows
    from engine.audit.windows import mark_published
    from engine.kafka.exceptions import KafkaPlumbingError

    label = report.window.label
    try:
        topic = publish_close(settings, report)
        mark_published(engine, label, datetime.now(UTC))
        with engine.connect() as conn:
            rows = window_rows(conn, label).get(label, [])
        return f"{topic}, {publish_transitions(settings, rows)}"
    except KafkaPlumbingError as exc:
        raise ConsoleError(
            503, "broker_unavailable",
            f"the close is recorded but not published: {exc}; close again to publish",
        ) from exc  # fmt: skip


class AbortIn(BaseModel):
    label: str = Field(min_length=1, max_length=40, description="the window's label")
    reason: str = Field(min_length=1, max_length=REASON_CHARS)


@router.post(
    "/settlement/windows/abort", response_model=DoneOut, responses=REFUSED,
    summary="Abort a settlement attempt (SETTLING to ABORTED); settling again is a new attempt",
)  # fmt: skip
def abort(
    request: Request, body: AbortIn, who: Annotated[Principal, Depends(require_operator)]
) -> DoneOut:
    action = AbortWindow(body.label, body.reason, who.name)
    engine = request.app.state.engine
    return done_out(action, run_action(engine, action, actor(who, body.reason), datetime.now(UTC)))
