"""The retry schedule: when to try a failed notification again, a pure function.

Nothing here reads a clock or draws from a generator of its own: the caller passes
``now``, the deadline and a ``random.Random`` (seed it, and the same failures give the
same times, draw for draw).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.config import Settings

DOUBLINGS_MAX = 60  # 2**60 times any initial delay is past every cap


@dataclass(frozen=True)
class RetrySchedule:
    """When to try again after a failure: capped exponential backoff, equal jitter, a horizon.

    The n-th consecutive failure waits ``d = min(initial * 2**(n-1), cap)``, drawn from
    ``[d/2, d]`` so retries to a recovering bank do not arrive in lockstep. The last
    attempt falls on the horizon itself; a failure at or past it gives up.
    """

    initial_s: float
    cap_s: float
    horizon_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetrySchedule:
        return cls(
            settings.notify_retry_initial_ms / 1000,
            settings.notify_retry_max_ms / 1000,
            float(settings.notify_horizon_s),
        )

    def ceiling_s(self, failures: int) -> float:
        """The longest wait after ``failures`` consecutive failures (the jitter's top)."""
        if failures < 1:
            raise ValueError(f"failures={failures}: a retry follows at least one failure")
        return min(self.initial_s * 2 ** min(failures - 1, DOUBLINGS_MAX), self.cap_s)

    def delay_s(self, failures: int, rng: random.Random) -> float:
        """One draw from ``[ceiling/2, ceiling]``: exactly one ``rng.uniform`` per retry."""
        ceiling = self.ceiling_s(failures)
        return rng.uniform(ceiling / 2, ceiling)

    def next_attempt_at(
        self, now: datetime, failures: int, deadline: datetime, rng: random.Random
    ) -> datetime | None:
        """The next attempt's time, or None when the horizon is reached: give up.

        Giving up draws nothing from ``rng``.
        """
        if now >= deadline:
            return None
        return min(now + timedelta(seconds=self.delay_s(failures, rng)), deadline)
