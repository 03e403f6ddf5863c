"""Channels: how a notification reaches a bank. A signed webhook, or a line in a log.

A channel is given its body by a format (:mod:`consumers.notify.formats`) and signs
with :mod:`consumers.notify.signing`; it never chooses either. The webhook makes one
bounded attempt per call in production: :mod:`consumers.notify.schedule` keeps the
retry schedule.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from http.client import HTTPException, RemoteDisconnected
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from consumers.notify.formats import Body, BodyByBank, json_body, ledger_profiles
from consumers.notify.message import Attempt, DeliveryResult, Notification, Sender
from consumers.notify.signing import signed_headers
from consumers.notify.transport import post_once, url_problem
from engine.config import Settings, check_notify_sender
from engine.iso.schemas import SCHEMAS
from engine.ledger.database import make_engine
from engine.metrics import NOTIFICATION_ATTEMPTS, NOTIFICATION_BODY_FAILURES
from engine.trust.keys import KeyPair

log = logging.getLogger(__name__)


class LogSender:
    """Appends one JSON line per notification: the default for demos and tests."""

    name = "log"
    concurrent = False

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one whole line per write, never interleaved
        self._file = self.path.open("ab")

    def deliver(self, notification: Notification) -> DeliveryResult:
        line = notification.body() + b"\n"
        started_at, started = datetime.now(UTC), time.monotonic()
        error = None
        with self._lock:
            if self._file.closed:
                raise RuntimeError(f"LogSender({self.path}) is closed")
            try:
                self._file.write(line)
                self._file.flush()
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc}"
        NOTIFICATION_ATTEMPTS.labels(self.name, "error" if error else "ok").inc()
        attempt = Attempt(1, started_at, time.monotonic() - started, None, error)
        return DeliveryResult(error is None, (attempt,), error)

    def close(self) -> None:
        with self._lock:
            self._file.close()


def backoff_delays_s(max_attempts: int, initial_ms: int, max_ms: int) -> tuple[float, ...]:
    """Sleep before attempts 2..max_attempts: initial, doubling, capped at max."""
    return tuple(min(initial_ms * 2**k, max_ms) / 1000 for k in range(max_attempts - 1))


def _is_retryable(status_code: int | None) -> bool:
    """No status means the transport failed (refused, reset, timeout, closed): try again.
    5xx, 408 and 429 say "not now"; any other answer is the bank's final word."""
    return status_code is None or status_code >= 500 or status_code in (408, 429)


class WebhookSender:
    """Signed HTTP POST to the bank's ``webhook_url``, retried with exponential backoff.

    Worst-case time per notification, with T = timeout_ms / 1000::

        max_attempts * T + sum(min(backoff_initial_ms * 2**k, backoff_max_ms) / 1000
                               for k in range(max_attempts - 1))

    (``worst_case_s``; 8.7 s with the default settings). T is a hard deadline per
    attempt (:mod:`consumers.notify.transport`).

    Jitter: none by default, so the schedule is exact and testable. Given ``rng``, each
    delay is drawn from [d/2, d] ("equal jitter"), so retries to a recovering bank do
    not arrive in lockstep from every worker thread; it only shortens delays, so the
    bound holds, and a seeded ``random.Random`` makes it reproducible.
    """

    name = "webhook"
    concurrent = True

    def __init__(
        self,
        signing_keys: Sequence[KeyPair],
        timeout_ms: int,
        max_attempts: int,
        backoff_initial_ms: int,
        backoff_max_ms: int,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock_s: Callable[[], float] = time.time,
        bodies: Callable[[Notification], Body] = json_body,
    ) -> None:
        if not signing_keys:
            raise ValueError("WebhookSender needs a signing key (SAKK_WEBHOOK_SIGNING_KEY_FILES)")
        if timeout_ms < 1 or max_attempts < 1 or backoff_initial_ms < 0 or backoff_max_ms < 0:
            raise ValueError("timeout_ms and max_attempts must be >= 1, backoffs >= 0")
        self._keys = tuple(signing_keys)
        self._timeout_s = timeout_ms / 1000
        self._max_attempts = max_attempts
        self._delays_s = backoff_delays_s(max_attempts, backoff_initial_ms, backoff_max_ms)
        self._sleep = sleep
        self._rng = rng
        self._clock_s = clock_s
        self._bodies = bodies

    @property
    def worst_case_s(self) -> float:
        return self._max_attempts * self._timeout_s + sum(self._delays_s)

    def deliver(self, notification: Notification) -> DeliveryResult:
        url = notification.webhook_url
        problem = url_problem(url, notification.recipient_bank)
        if problem:
            return DeliveryResult(False, (), problem)
        started_at, started = datetime.now(UTC), time.monotonic()
        try:
            body = self._bodies(notification)
        except Exception as exc:  # no formats read yet, a bad build, a library's failure
            return self._not_built(notification, exc, started_at, started)
        target = urlsplit(str(url))
        attempts: list[Attempt] = []
        for number in range(1, self._max_attempts + 1):
            if number > 1:
                self._sleep(self._delay_s(number - 2))
            attempt = self._attempt(number, target, notification, body)
            attempts.append(attempt)
            if attempt.error is None:
                return DeliveryResult(True, tuple(attempts), None)
            if not _is_retryable(attempt.status_code):
                break
        return DeliveryResult(False, tuple(attempts), attempts[-1].error)

    def close(self) -> None:
        """Nothing to release: each attempt closes its own connection."""

    def _not_built(
        self, notification: Notification, exc: Exception, started_at: datetime, started: float
    ) -> DeliveryResult:
        """A body that could not be built is a failed attempt like any other: recorded in
        ``notification_attempts``, retried on the schedule, counted and alerted on."""
        first_line = (str(exc).splitlines() or [""])[0][:200]
        error = f"notification not built: {type(exc).__name__}: {first_line}"
        log.warning(
            "notification %s to bank %s not built (%s)",
            notification.notification_id, notification.recipient_bank, type(exc).__name__,
        )  # fmt: skip
        NOTIFICATION_ATTEMPTS.labels(self.name, "error").inc()
        NOTIFICATION_BODY_FAILURES.labels(notification.recipient_bank).inc()
        attempt = Attempt(1, started_at, time.monotonic() - started, None, error)
        return DeliveryResult(False, (attempt,), error)

    def _delay_s(self, index: int) -> float:
        delay = self._delays_s[index]
        return delay if self._rng is None else self._rng.uniform(delay / 2, delay)

    def _attempt(
        self, number: int, url: SplitResult, notification: Notification, body: Body
    ) -> Attempt:
        timestamp_s = int(self._clock_s())  # signed afresh: a late retry is not stale
        headers = {
            "Content-Type": body.content_type,
            "User-Agent": "sakk-notifier",
            "X-Sakk-Notification-Id": notification.notification_id,
            **signed_headers(self._keys, timestamp_s, body.data),
        }
        started_at, started = datetime.now(UTC), time.monotonic()
        status_code: int | None = None
        try:
            status_code, detail = self._post_once(url, headers, body.data)
            error = None if 200 <= status_code < 300 else f"HTTP {status_code} {detail}".strip()
        except TimeoutError:
            error = f"timeout after {self._timeout_s * 1000:.0f} ms"
        except RemoteDisconnected:
            error = "connection closed without a response"
        except (OSError, HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
        NOTIFICATION_ATTEMPTS.labels(self.name, "error" if error else "ok").inc()
        return Attempt(number, started_at, time.monotonic() - started, status_code, error)

    def _post_once(self, url: SplitResult, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        """One POST under the attempt's hard deadline (the seam tests script)."""
        return post_once(url, headers, body, self._timeout_s)


def make_sender(settings: Settings) -> Sender:
    """The sender ``SAKK_NOTIFY_SENDER`` names; raises SettingsError if it lacks its key."""
    check_notify_sender(settings)
    if settings.notify_sender == "log":
        return LogSender(settings.notify_log_path)
    if settings.notify_sender == "webhook":
        engine = make_engine(settings.ledger_url, pool_size=1)  # connects on first read
        SCHEMAS.compile_all()  # before any delivery thread builds an ISO 20022 body
        return WebhookSender(
            signing_keys=[KeyPair.read(path) for path in settings.webhook_signing_keys],
            timeout_ms=settings.webhook_timeout_ms,
            # One bounded attempt per call: the dispatcher keeps the retry schedule.
            max_attempts=1,
            backoff_initial_ms=0,
            backoff_max_ms=0,
            bodies=BodyByBank(ledger_profiles(engine)),
        )
    raise ValueError(f"SAKK_NOTIFY_SENDER={settings.notify_sender!r}: expected 'log' or 'webhook'")
