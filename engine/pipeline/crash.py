"""Fault injection for the chaos harness: SIGKILL this process at named steps.

The loop calls a :data:`CrashHook` at each step that matters to exactly-once effects
(before and after a batch's commit, after deliveries, after produce). In production
the hook is :func:`no_crash`; ``SAKK_CRASH_POINT`` turns on :class:`CrashPoints`.
"""

from __future__ import annotations

import logging
import os
import random
import signal
from collections.abc import Callable

from engine.config import Settings

log = logging.getLogger(__name__)

CrashHook = Callable[[str], None]


def no_crash(_step: str) -> None:
    return None


class CrashPoints:
    """Kill at the steps ``SAKK_CRASH_POINT`` names, each pass with probability ppm / 1e6.

    SIGKILL, not an exception: nothing after that instant runs, exactly like ``kill -9``.
    """

    def __init__(self, settings: Settings) -> None:
        self.names = frozenset(n for n in settings.crash_point.split(",") if n)
        self.ppm = settings.crash_probability_ppm
        self._rng = random.Random()  # timing decides anyway: a seed would not replay a crash

    def __call__(self, name: str) -> None:
        if name in self.names and self._rng.randrange(1_000_000) < self.ppm:
            log.warning("crash point %s: SIGKILL (SAKK_CRASH_POINT)", name)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)


def crash_hook(settings: Settings) -> CrashHook:
    """The hook ``settings`` ask for: :func:`no_crash` unless crash points are named."""
    points = CrashPoints(settings)
    return points if points.names else no_crash
