"""Fault injection for the chaos harness: SIGKILL this process at named steps.

The loop calls a :data:`CrashHook` at each step that matters to exactly-once effects
(before and after a batch's commit, after deliveries, after produce). In production
the hook is :func:`no_crash`; ``SAKK_CRASH_POINT`` turns on :class:`CrashPoints`, and
``SAKK_CRASH_ON_MESSAGE_CONTAINING`` a poison message (:class:`CrashOnMessage`).
"""

from __future__ import annotations

import logging
import os
import random
import signal
from collections.abc import Callable

from engine.config import Settings
from engine.pipeline.messages import RawMessage

log = logging.getLogger(__name__)

CrashHook = Callable[[str], None]
MessageCrashHook = Callable[[RawMessage], None]


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


class CrashOnMessage:
    """Kill this process when it reads a message whose bytes contain a configured marker.

    A stand-in for a message that crashes compiled decoding code (a segfault in the
    Avro decoder): it dies before the message is decoded, on every attempt, and no
    ``except`` sees it. ``SAKK_CRASH_ON_MESSAGE_CONTAINING`` turns it on.
    """

    def __init__(self, marker: bytes) -> None:
        if not marker:
            raise ValueError("a crash marker must not be empty")
        self.marker = marker

    def __call__(self, message: RawMessage) -> None:
        if message.value is not None and self.marker in message.value:
            log.warning(
                "crash on message %s:%d:%d: SIGKILL (SAKK_CRASH_ON_MESSAGE_CONTAINING)",
                message.topic, message.partition, message.offset,
            )  # fmt: skip
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)


def crash_on_message(settings: Settings) -> MessageCrashHook | None:
    """The poison the settings plant, or None (the default: nothing is checked)."""
    marker = settings.crash_on_message_containing
    return CrashOnMessage(marker.encode()) if marker else None
