"""The overview: payments per channel and outcome, reasons, dead letters, notifications
waiting, and how far the flow has got (operators and auditors)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from engine.read.dead_letters import DeadLetterFilter, count_dead_letters
from engine.read.notifications import delivery_status
from engine.read.reports import ChannelLine, channel_summary, reason_summary
from sakk.console.api.common import reading
from sakk.console.auth import Principal, require_reader

router = APIRouter(tags=["overview"])


class ReasonLine(BaseModel):
    reason_code: str
    state: str
    payments: int


class Overview(BaseModel):
    at: datetime
    channels: list[ChannelLine]
    reasons: list[ReasonLine]
    dead_letters: int
    notifications: dict[str, dict[str, int]]  # per bank, per status


@router.get("/overview", response_model=Overview, summary="The switch at a glance")
def overview(request: Request, who: Annotated[Principal, Depends(require_reader)]) -> Overview:
    with reading(request) as conn:
        channels = channel_summary(conn)
        reasons = [
            ReasonLine(reason_code=c, state=s, payments=n) for s, c, n in reason_summary(conn)
        ]
        dead = count_dead_letters(conn, who.audience, DeadLetterFilter())
        status = delivery_status(conn, who.audience)
    return Overview(
        at=request.app.state.clock(), channels=channels, reasons=reasons, dead_letters=dead,
        notifications=status,
    )  # fmt: skip
