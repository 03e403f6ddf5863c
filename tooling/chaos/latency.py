"""Delivery latency per bank, from what the ledger recorded (never from the harness's clock).

A notification's latency runs from its ``created_at`` (the notification stage committed
it, due at once) to the end of its first successful attempt in
``notification_attempts`` (``started_at`` + ``duration_ms``): how long the bank waited
to be told, whatever failed in between. Both times are wall-clock readings by consumer
processes of one machine, so they compare.

The split a chaos run reports: the banks that stayed up against the bank that was down,
each over the notifications created while it was down (those the outage could have
delayed; all of them when no bank was down). For the banks that stayed up it gives two
figures: over all of them, and over those that no stage-wide fault caught in flight
(a broker freeze, a ledger outage, the notification consumer killed or stopped). Those
faults delay every bank alike, by their own length plus a lease; what is left is what
one bank's outage could do to the others, and that is what the bound is checked on.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, select

from engine.domain.notifications import NotificationStatus
from engine.ledger.models import Notification, NotificationAttempt

P99 = 0.99


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest rank: the smallest value with at least ``fraction`` of them at or below it.

    None for no values. No interpolation: the figure is always a latency that happened.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction} must be in (0, 1]")
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)), 1) - 1]


Interval = tuple[datetime, datetime]  # UTC, start <= end


@dataclass(frozen=True, slots=True)
class Delivered:
    created_at: datetime
    latency_s: float

    @property
    def delivered_at(self) -> datetime:
        return self.created_at + timedelta(seconds=self.latency_s)

    def overlaps(self, interval: Interval) -> bool:
        return self.created_at <= interval[1] and interval[0] <= self.delivered_at


def delivery_latencies(conn: Connection) -> dict[str, list[Delivered]]:
    """Recipient bank -> each of its DELIVERED notifications: when created, how long it took.

    A DELIVERED notification without a successful attempt recorded has no figure here
    (the invariants report it).
    """
    n, a = Notification.__table__, NotificationAttempt.__table__
    created = {
        nid: (bank, _utc(at))
        for nid, bank, at in conn.execute(
            select(n.c.notification_id, n.c.recipient_bank, n.c.created_at).where(
                n.c.status == NotificationStatus.DELIVERED
            )
        )
    }
    delivered_at: dict[str, datetime] = {}
    for nid, started_at, duration_ms in conn.execute(
        select(a.c.notification_id, a.c.started_at, a.c.duration_ms).where(a.c.error.is_(None))
    ):
        end = _utc(started_at) + timedelta(milliseconds=duration_ms)
        if nid in created and (nid not in delivered_at or end < delivered_at[nid]):
            delivered_at[nid] = end  # the first success: a later one repeats it after a crash
    by_bank: dict[str, list[Delivered]] = defaultdict(list)
    for nid, end in delivered_at.items():
        bank, at = created[nid]
        by_bank[bank].append(Delivered(at, max((end - at).total_seconds(), 0.0)))
    return dict(by_bank)


@dataclass(frozen=True)
class LatencySplit:
    """p99 delivery latency of the banks that stayed up, and of the one that was down."""

    down_bank: str | None
    healthy_count: int  # healthy banks' notifications no stage-wide fault caught in flight
    healthy_p99_s: float | None  # ... the figure the bound is checked on
    healthy_max_s: float | None
    healthy_all_count: int  # every healthy banks' notification, stage-wide faults or not
    healthy_all_p99_s: float | None
    down_count: int
    down_p99_s: float | None

    @classmethod
    def of(
        cls,
        by_bank: Mapping[str, Sequence[Delivered]],
        down_bank: str | None = None,
        window: Interval | None = None,
        stage_faults: Sequence[Interval] = (),
    ) -> LatencySplit:
        """Split ``by_bank``: ``window`` (the outage) keeps the notifications created in it;
        ``stage_faults`` are the intervals in which the whole stage was held up."""

        def created_in_window(d: Delivered) -> bool:
            return window is None or window[0] <= d.created_at <= window[1]

        healthy = [
            d
            for bank, ds in by_bank.items()
            if bank != down_bank
            for d in ds
            if created_in_window(d)
        ]
        undisturbed = [d.latency_s for d in healthy if not any(d.overlaps(f) for f in stage_faults)]
        every = [d.latency_s for d in healthy]
        down = [d.latency_s for d in by_bank.get(down_bank or "", ()) if created_in_window(d)]
        return cls(
            down_bank,
            len(undisturbed),
            percentile(undisturbed, P99),
            max(undisturbed, default=None),
            len(every),
            percentile(every, P99),
            len(down) if down_bank else 0,
            percentile(down, P99) if down_bank else None,
        )


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time Sakk stores is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
