"""The overview: payments per channel and outcome, per minute, reasons, dead letters and
notifications waiting. Every role; a bank user's figures are its own bank's."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from engine.read.dead_letters import DeadLetterFilter, count_dead_letters
from engine.read.notifications import delivery_status
from engine.read.reports import (
    ChannelLine,
    MinuteLine,
    channel_summary,
    payments_per_minute,
    reason_summary,
)
from sakk.console.api.common import Instant, Out, now, reading
from sakk.console.auth import Principal, require_any

router = APIRouter(tags=["overview"])
DEFAULT_RATE_MINUTES = 60


class ReasonLine(Out):
    reason_code: str
    state: str
    payments: int


class Overview(Out):
    at: datetime
    channels: list[ChannelLine]
    reasons: list[ReasonLine]
    dead_letters: int
    notifications: dict[str, dict[str, int]]  # per bank, per status


class Rate(Out):
    since: datetime
    until: datetime
    minutes: list[MinuteLine]  # only the minutes, channels and states with payments


@router.get("/overview", response_model=Overview, summary="The switch at a glance")
def overview(request: Request, who: Annotated[Principal, Depends(require_any)]) -> Overview:
    audience = who.audience
    with reading(request) as conn:
        channels = channel_summary(conn, audience)
        reasons = [
            ReasonLine(reason_code=c, state=s, payments=n)
            for s, c, n in reason_summary(conn, audience)
        ]
        dead = count_dead_letters(conn, audience, DeadLetterFilter())
        status = delivery_status(conn, audience)
    return Overview(
        at=now(request), channels=channels, reasons=reasons, dead_letters=dead,
        notifications=status,
    )  # fmt: skip


@router.get(
    "/overview/rate", response_model=Rate,
    summary="Payments per minute by channel and state (default: the last hour; a day at most)",
)  # fmt: skip
def rate(
    request: Request,
    who: Annotated[Principal, Depends(require_any)],
    since: Instant | None = None,
    until: Instant | None = None,
) -> Rate:
    end = until or now(request)
    start = since or end - timedelta(minutes=DEFAULT_RATE_MINUTES)
    with reading(request) as conn:
        minutes = payments_per_minute(conn, who.audience, start, end)
    return Rate(since=start, until=end, minutes=minutes)
