"""The overview: payments per channel and outcome, per minute, reasons, dead letters and
notifications waiting. Every role; a bank user's figures are its own bank's.

Operators and auditors also see each stage's consumer lag (``engine.kafka.lag``): per
stage of the topology, per input topic, the messages its group has not committed yet,
asked of the console's broker (``SAKK_KAFKA_BOOTSTRAP_SERVERS``) with a bounded wait
(``ConsoleConfig.lag_timeout_ms``); without a broker, or past the wait, the lag is
"unknown" with the reason. A bank user sees no lag: the switch's traffic is not its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from engine.kafka.lag import group_lags
from engine.read.dead_letters import DeadLetterFilter, count_dead_letters
from engine.read.notifications import delivery_status
from engine.read.reports import (
    ChannelLine,
    MinuteLine,
    channel_summary,
    payments_per_minute,
    reason_summary,
)
from sakk.app import TOPOLOGY
from sakk.console.api.common import Instant, Out, now, reading
from sakk.console.auth import Principal, require_any

router = APIRouter(tags=["overview"])
DEFAULT_RATE_MINUTES = 60


class ReasonLine(Out):
    reason_code: str
    state: str
    payments: int


class StageLag(Out):
    stage: str
    group: str
    topics: dict[str, int] | None  # input topic -> messages not yet committed; None: unknown
    lag: int | None  # the sum over its topics; None: unknown
    unknown: str | None  # why the lag is unknown (no broker, no answer in time, refused)


class Overview(Out):
    at: datetime
    channels: list[ChannelLine]
    reasons: list[ReasonLine]
    dead_letters: int
    notifications: dict[str, dict[str, int]]  # per bank, per status
    lag: list[StageLag]  # per stage, in the order a payment meets them; empty for a bank


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
    lag = stage_lags(request) if audience.sees_every_bank() else []
    return Overview(
        at=now(request), channels=channels, reasons=reasons, dead_letters=dead,
        notifications=status, lag=lag,
    )  # fmt: skip


def stage_lags(request: Request) -> list[StageLag]:
    """Each stage's lag over its input topics, as the console's broker knows it."""
    settings = request.app.state.settings
    groups = {
        settings.group(s.name): [settings.topic(t) for t in s.input_topic_names()]
        for s in TOPOLOGY.stages
    }
    timeout_s = request.app.state.config.lag_timeout_ms / 1000
    lags = group_lags(settings, groups, timeout_s)
    out = []
    for spec in TOPOLOGY.stages:
        found = lags[settings.group(spec.name)]
        out.append(StageLag(stage=spec.name, group=found.group, topics=found.topics,
                            lag=found.total, unknown=found.unknown))  # fmt: skip
    return out


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
