"""Initiation-to-notification latency of one offered rate's payments, from the ledger's times.

A payment's latency runs from its ``occurred_at`` (the simulator stamps it as it sends
it) to the last of its notifications finishing. A phase's latencies are those of the
payments that phase added to the ledger and no other, so one fleet can be offered
several rates one after another: each phase starts once the previous one has drained.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select

from engine.ledger.database import read_only
from engine.ledger.models import Notification, Payment


@dataclass(frozen=True)
class LatencyResult:
    backend: str
    profile: str
    offered_per_s: int
    offered_s: int  # how long the rate was offered
    payments: int  # payments whose latency was measured (dead letters have none)
    achieved_publish_per_s: float
    p50_s: float
    p95_s: float
    p99_s: float
    max_s: float


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return 0.0
    rank = max(int(-(-fraction * len(sorted_values) // 1)) - 1, 0)
    return sorted_values[min(rank, len(sorted_values) - 1)]


def payment_ids(engine: Engine) -> set[str]:
    """Every payment the ledger holds now (taken before and after a phase)."""
    with read_only(engine).connect() as conn:
        return set(conn.execute(select(Payment.payment_id)).scalars())


def latencies_s(engine: Engine, only: Collection[str]) -> list[float]:
    """Seconds from initiation to the last finished notification, of the payments ``only``."""
    p, n = Payment.__table__, Notification.__table__
    query = (
        select(p.c.payment_id, p.c.occurred_at, func.max(n.c.finished_at))
        .join(n, n.c.payment_id == p.c.payment_id)
        .group_by(p.c.payment_id, p.c.occurred_at)
    )
    with read_only(engine).connect() as conn:
        rows = conn.execute(query).all()
    return [_seconds(occurred, finished) for pid, occurred, finished in rows if pid in only]


def summarize(
    backend: str,
    profile: str,
    offered_per_s: int,
    offered_s: int,
    achieved_publish_per_s: float,
    latencies: list[float],
) -> LatencyResult:
    ordered = sorted(latencies)
    return LatencyResult(
        backend, profile, offered_per_s, offered_s, len(ordered), achieved_publish_per_s,
        percentile(ordered, 0.50), percentile(ordered, 0.95), percentile(ordered, 0.99),
        ordered[-1] if ordered else 0.0,
    )  # fmt: skip


def _seconds(start: datetime, end: datetime) -> float:
    if (start.tzinfo is None) != (end.tzinfo is None):
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return max((end - start).total_seconds(), 0.0)
