"""The overview (``/``): payments per minute by channel and outcome, the dead letters, the
notifications waiting, each stage's consumer lag (operators and auditors: asked of the
broker with the console's bound, ``sakk.console.api.overview``); a bank sees its own
payments and the notifications sent to it."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from engine.domain.notifications import NotificationStatus
from engine.read.activity import (
    MinuteCount,
    latest_payment_at,
    notification_counts,
    payments_per_minute,
)
from engine.read.dead_letters import DeadLetterFilter, count_dead_letters
from sakk.console.api.common import now, reading
from sakk.console.api.overview import stage_lags
from sakk.console.auth import Principal, require_any
from sakk.console.pages.charts import minute_chart
from sakk.console.pages.render import page, shown_as_page

router = APIRouter(include_in_schema=False)
SPAN_MINUTES = 60  # the overview shows the hour up to the newest payment


def _span_end(latest: datetime | None, current: datetime) -> datetime:
    """The minute after the newest payment (a quiet ledger still shows its last hour)."""
    end = latest if latest is not None else current
    return end.replace(second=0, microsecond=0) + timedelta(minutes=1)


def _by_channel(counts: list[MinuteCount]) -> tuple[list[str], list[dict[str, Any]]]:
    states = sorted({c.state for c in counts})
    table: dict[str, Counter[str]] = {}
    for c in counts:
        table.setdefault(c.channel, Counter())[c.state] += c.payments
    rows = [{"channel": ch, **{s: n[s] for s in states}, "total": sum(n.values())}
            for ch, n in sorted(table.items())]  # fmt: skip
    return states, rows


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, who: Annotated[Principal, Depends(require_any)]) -> HTMLResponse:
    audience = who.audience
    with shown_as_page(who), reading(request) as conn:
        end = _span_end(latest_payment_at(conn, audience), now(request))
        start = end - timedelta(minutes=SPAN_MINUTES)
        counts = payments_per_minute(conn, audience, start, end)
        notifications = notification_counts(conn, audience)
        dead = None
        if audience.sees_every_bank():
            dead = count_dead_letters(conn, audience, DeadLetterFilter())
    waiting = sum(n.notifications for n in notifications if n.status == NotificationStatus.PENDING)
    given_up = sum(n.notifications for n in notifications if n.status == NotificationStatus.FAILED)
    states, channels = _by_channel(counts)
    lag = stage_lags(request) if audience.sees_every_bank() else None
    return page(
        request, who, "overview.html", "Overview",
        chart=minute_chart(counts, start, SPAN_MINUTES), start=start, end=end,
        states=states, channels=channels, payments=sum(c.payments for c in counts),
        dead_letters=dead, waiting=waiting, given_up=given_up, notifications=notifications,
        lag=lag,
    )  # fmt: skip
