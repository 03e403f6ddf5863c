"""The knee: the highest offered rate whose p99 latency stays under a limit (1 s).

Mojaloop reports its results this way: not the most a system can swallow, but the most
it can take while still answering in time. The latency curve's rates are walked upwards
and the knee is the last rate before the first one whose p99 reaches the limit (a rate
above a failing one that passes again by chance does not count). Between that last good
rate and the first bad one the search may probe the midpoint, a bounded number of times
(:func:`next_probe`), each probe one more phase on the same fleet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tooling.bench.latency import LatencyResult

P99_LIMIT_S = 1.0
MAX_KNEE_STEPS = 8
# Probing stops once the bracket is narrower than this share of its upper end: a knee
# known within 10% is as precise as runs on a shared machine are repeatable.
KNEE_RESOLUTION = 0.10


@dataclass(frozen=True)
class Knee:
    """Where p99 crossed the limit among the offered rates tried."""

    limit_s: float
    offered_per_s: int | None  # the highest rate under the limit (None: even the lowest failed)
    first_over_per_s: int | None  # the lowest rate at or over it (None: none tried reached it)
    p99_s: float | None  # at ``offered_per_s``
    achieved_publish_per_s: float | None  # at ``offered_per_s``: what the publisher managed

    @property
    def bounded(self) -> bool:
        """False when no rate tried reached the limit: the knee is at least ``offered_per_s``."""
        return self.first_over_per_s is not None


def find_knee(points: Sequence[LatencyResult], limit_s: float = P99_LIMIT_S) -> Knee:
    """The knee among ``points`` (any order; one point per offered rate)."""
    below: LatencyResult | None = None
    for point in sorted(points, key=lambda p: p.offered_per_s):
        if point.p99_s >= limit_s:
            return _knee(limit_s, below, point.offered_per_s)
        below = point
    return _knee(limit_s, below, None)


def next_probe(points: Sequence[LatencyResult], limit_s: float = P99_LIMIT_S) -> int | None:
    """The offered rate to try next: the middle of the knee's bracket; None when done.

    Done means no rate tried reached the limit (nothing to bracket: offer higher
    ``--curve-rates``), or the bracket is narrower than ``KNEE_RESOLUTION``.
    """
    knee = find_knee(points, limit_s)
    if knee.first_over_per_s is None:
        return None
    low, high = knee.offered_per_s or 0, knee.first_over_per_s
    if high - low <= max(high * KNEE_RESOLUTION, 1):
        return None
    probe = (low + high) // 2
    tried = {p.offered_per_s for p in points}
    return None if probe in tried or probe <= 0 else probe


def knee_figures(points: Sequence[LatencyResult], limit_s: float = P99_LIMIT_S) -> dict[str, Any]:
    """The report's ``knee`` part of one backend."""
    knee = find_knee(points, limit_s)
    return {
        "p99_limit_s": knee.limit_s, "offered_per_s": knee.offered_per_s,
        "first_over_per_s": knee.first_over_per_s, "bounded": knee.bounded,
        "p99_s": None if knee.p99_s is None else round(knee.p99_s, 4),
        "achieved_publish_per_s": None if knee.achieved_publish_per_s is None
        else round(knee.achieved_publish_per_s, 1),
    }  # fmt: skip


def knee_line(report: dict[str, Any]) -> str:
    """The report's line: each backend's knee ("" when no backend ran a latency curve)."""
    parts, limit_s = [], P99_LIMIT_S
    for backend, figures in report["backends"].items():
        knee = figures.get("knee")
        if knee is None:
            continue
        limit_s = knee["p99_limit_s"]
        if knee["offered_per_s"] is None:
            parts.append(f"{backend} under {knee['first_over_per_s']:,}/s, the lowest rate tried")
            continue
        at_least = "" if knee["bounded"] else "at least "
        parts.append(f"{backend} {at_least}{knee['offered_per_s']:,}/s (p99 {knee['p99_s']:.3f} s)")
    if not parts:
        return ""
    return f"knee (highest offered payments/s with p99 under {limit_s:g} s): " + ", ".join(parts)


def _knee(limit_s: float, below: LatencyResult | None, first_over: int | None) -> Knee:
    if below is None:
        return Knee(limit_s, None, first_over, None, None)
    return Knee(limit_s, below.offered_per_s, first_over, below.p99_s,
                below.achieved_publish_per_s)  # fmt: skip
