"""Notification senders: how the notification consumer tells a bank a payment's outcome.

The webhook posts JSON, or ISO 20022 (pacs.002, pacs.004) to a bank whose reference data
chose it (:class:`BodyByBank`); the log sender always writes JSON lines.

A sender delivers at least once; the receiver deduplicates on ``notification_id``,
which stays the same on every attempt and every redelivery of the same outcome.
Senders are thread-safe: the consumer calls ``deliver`` from up to
``SAKK_WEBHOOK_CONCURRENCY`` threads at once.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http.client import HTTPConnection, HTTPException, HTTPSConnection, RemoteDisconnected
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import SplitResult, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from engine.config import Settings, check_notify_sender
from engine.domain.notifications import NOTIFIED_OUTCOMES
from engine.iso.notices import XML_CONTENT_TYPE, BankProfiles, iso_notification
from engine.iso.schemas import SCHEMAS
from engine.ledger.database import make_engine
from engine.metrics import NOTIFICATION_ATTEMPTS, NOTIFICATION_BODY_FAILURES
from engine.trust.keys import KeyPair, verifies

log = logging.getLogger(__name__)

OUTCOMES = NOTIFIED_OUTCOMES  # a payment's first answers, its steps, a refused step
MAX_SIGNATURES = 4  # signatures read from one header (two during a key rotation)
SIGNATURE_HEADER_MAX = 1_024
RESPONSE_DETAIL_MAX_BYTES = 256  # of a refusal's body, kept in the error for the operator
JSON_CONTENT_TYPE = "application/json"
PROFILES_REFRESH_S = 30.0  # how soon a bank's new notification format takes effect


@dataclass(frozen=True)
class Notification:
    """One payment outcome addressed to one bank.

    ``payload`` holds strings and ints only (amounts as integer minor units plus a
    currency code): a float could silently change an amount on the wire.
    """

    notification_id: str
    payment_id: str
    outcome: str
    recipient_bank: str
    webhook_url: str | None
    payload: dict[str, Any] = field(hash=False)

    def __post_init__(self) -> None:
        if not self.notification_id:
            raise ValueError("notification_id must not be empty: receivers deduplicate on it")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r}: expected one of {OUTCOMES}")
        if not all(type(v) in _FLAT for v in self.payload.values()):  # the usual, flat case
            _check_json_ready(self.payload, "payload")

    def body(self) -> bytes:
        """The JSON document sent and logged: compact, sorted keys, UTF-8.

        The ids travel inside the body, not only in headers, so the signature covers them.
        """
        document = {
            "notification_id": self.notification_id,
            "payment_id": self.payment_id,
            "outcome": self.outcome,
            "recipient_bank": self.recipient_bank,
            "data": self.payload,
        }
        return json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")


_FLAT = (str, int)  # by exact type: a bool is not an amount


@dataclass(frozen=True)
class Body:
    """What is posted: the bytes the signature covers, and their media type."""

    data: bytes
    content_type: str


def json_body(notification: Notification) -> Body:
    return Body(notification.body(), JSON_CONTENT_TYPE)


class BodyByBank:
    """Each bank's notification in the format its reference data names.

    JSON (``Notification.body``) by default; an ISO 20022 document (pacs.002, pacs.004 for
    a return: :mod:`engine.iso.notices`) for a bank whose ``notification_format`` is
    ``pacs.002``. The banks' formats are read through ``load`` and read again every
    ``refresh_s``. When they cannot be read, the last ones read are kept; with none read
    yet, building fails and the attempt is retried later: a bank that chose ISO 20022 is
    never sent JSON because the ledger was busy.
    """

    def __init__(
        self,
        load: Callable[[], BankProfiles],
        refresh_s: float = PROFILES_REFRESH_S,
        clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._refresh_s = refresh_s
        self._clock_s = clock_s
        self._lock = threading.Lock()
        self._profiles: BankProfiles | None = None
        self._next_load_s = 0.0

    def __call__(self, notification: Notification) -> Body:
        profiles = self.profiles()
        if not profiles.wants_iso(notification.recipient_bank):
            return json_body(notification)
        n = notification
        document = iso_notification(n.notification_id, n.outcome, n.payload, n.recipient_bank,
                                    datetime.now(UTC), profiles.bics)  # fmt: skip
        return Body(document, XML_CONTENT_TYPE)

    def profiles(self) -> BankProfiles:
        with self._lock:  # one reader at a time; the others wait for what it reads
            if self._profiles is None or self._clock_s() >= self._next_load_s:
                try:
                    self._profiles = self._load()
                except SQLAlchemyError as exc:
                    if self._profiles is None:
                        raise
                    log.warning("banks' notification formats not re-read (%s)", type(exc).__name__)
                self._next_load_s = self._clock_s() + self._refresh_s
            return self._profiles


def ledger_profiles(engine: Engine) -> Callable[[], BankProfiles]:
    """Read the banks' notification formats from the ledger, each call."""

    def load() -> BankProfiles:
        with engine.connect() as conn:
            return BankProfiles.load(conn)

    return load


def _check_json_ready(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is not a string")
            _check_json_ready(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json_ready(item, f"{where}[{index}]")
    elif isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"{where}={value!r}: only strings and ints (minor units) are allowed")


@dataclass(frozen=True)
class Attempt:
    """One try at delivery; ``started_at`` is wall-clock because it records, never decides."""

    number: int
    started_at: datetime
    duration_s: float
    status_code: int | None
    error: str | None


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    attempts: tuple[Attempt, ...]
    last_error: str | None


class Sender(Protocol):
    name: str
    concurrent: bool  # True: deliveries wait on the network, so run them in parallel

    def deliver(self, notification: Notification) -> DeliveryResult: ...

    def close(self) -> None: ...


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


def sign(keys: Sequence[KeyPair], timestamp_s: int, body: bytes) -> str:
    """``<key id>=<base64 Ed25519 signature of "<timestamp>.<body>">``, one per key, by commas.

    The switch signs with its own key, which no bank holds, so no bank can forge what the
    switch tells another. The body is the JSON document, or the ISO 20022 one for a bank
    that chose it: signed the same way. While it rotates keys it signs with both, and a
    bank that knows either public key verifies: no gap. The timestamp is signed so a
    captured request cannot be replayed later with a fresh one.
    """
    if not keys:
        raise ValueError("a webhook is signed with at least one key")
    message = f"{timestamp_s}.".encode() + body
    return ",".join(
        f"{key.key_id}={base64.b64encode(key.sign(message)).decode('ascii')}" for key in keys
    )


def verify_signature(
    public_keys: Mapping[str, Ed25519PublicKey],
    headers: Mapping[str, str] | Message,
    body: bytes,
    now_s: int,
    tolerance_s: int = 300,
) -> bool:
    """For receivers: True when one signature is by a switch key the bank trusts, in time.

    ``public_keys`` maps key id to the switch's public key (``sakk keys generate switch``
    prints it). Header names are matched case-insensitively. A receiver also checks that
    the body's ``recipient_bank`` (an ISO 20022 document's ``GrpHdr/InstdAgt``) is itself,
    and deduplicates on ``notification_id`` (the document's ``MsgId``: the same id without
    dashes).
    """
    if not public_keys:
        raise ValueError("verify_signature needs at least one trusted public key")
    lowered = {name.lower(): value for name, value in headers.items()}
    timestamp = lowered.get("x-sakk-timestamp", "")
    received = lowered.get("x-sakk-signature", "")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(received) > SIGNATURE_HEADER_MAX:
        return False
    if abs(now_s - int(timestamp)) > tolerance_s:
        return False  # stale, or from a clock too far ahead: a replay window we refuse
    message = f"{int(timestamp)}.".encode() + body
    for part in received.split(",")[:MAX_SIGNATURES]:
        key_id, _, encoded = part.strip().partition("=")
        public = public_keys.get(key_id)
        if public is None:
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except ValueError:
            continue
        if verifies(public, signature, message):
            return True
    return False


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
    attempt: a watchdog shuts the socket down at T, because a socket timeout alone
    bounds each read, not a server that trickles one byte at a time. Outside the bound:
    DNS resolution (the standard library cannot time it out) and connecting to more
    than one resolved address (each gets up to T).

    Jitter: none by default, so the schedule is exact and testable. Given ``rng``, each
    delay is drawn from [d/2, d] ("equal jitter"), so retries to a recovering bank do
    not arrive in lockstep from every worker thread; it only shortens delays, so the
    bound holds, and a seeded ``random.Random`` makes it reproducible.

    Each attempt opens its own connection: no socket is shared between threads and no
    stale keep-alive connection is reused after a bank's restart.
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
        problem = _url_problem(url, notification.recipient_bank)
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
            "X-Sakk-Timestamp": str(timestamp_s),
            "X-Sakk-Signature": sign(self._keys, timestamp_s, body.data),
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
        """One POST under a hard deadline; returns (status, start of a refusal's body)."""
        connection_class = HTTPSConnection if url.scheme == "https" else HTTPConnection
        connection = connection_class(url.hostname or "", url.port, timeout=self._timeout_s)
        fired = threading.Event()
        watchdog = threading.Timer(self._timeout_s, _shut_down, (connection, fired))
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.connect()
            if fired.is_set():
                raise TimeoutError
            target = (url.path or "/") + (f"?{url.query}" if url.query else "")
            connection.request("POST", target, body, headers)
            response = connection.getresponse()
            if fired.is_set():  # headers cut short by the watchdog may still parse
                raise TimeoutError
            return response.status, "" if response.status < 300 else _detail(response)
        except (OSError, HTTPException) as exc:
            if fired.is_set():
                raise TimeoutError from exc
            raise
        finally:
            watchdog.cancel()
            watchdog.join()  # never shut down a socket after close: its fd may be reused
            connection.close()


def _shut_down(connection: HTTPConnection, fired: threading.Event) -> None:
    """Wake any blocked read or write; the base-class call leaves TLS state alone."""
    fired.set()
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _detail(response: Any) -> str:
    """The first bytes of a refusal's body: often the bank's own reason."""
    try:
        raw = response.read(RESPONSE_DETAIL_MAX_BYTES)
    except (OSError, HTTPException):
        return ""
    return " ".join(raw.decode("utf-8", "replace").split())


def _url_problem(url: str | None, bank: str) -> str | None:
    if not url:
        return f"no webhook_url for bank {bank!r}: nothing to deliver to"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"webhook_url for bank {bank!r} is not an http(s) URL with a host"
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return f"webhook_url for bank {bank!r} has an invalid port"
    return None


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
            # One bounded attempt per call: consumers.delivery keeps the retry schedule.
            max_attempts=1,
            backoff_initial_ms=0,
            backoff_max_ms=0,
            bodies=BodyByBank(ledger_profiles(engine)),
        )
    raise ValueError(f"SAKK_NOTIFY_SENDER={settings.notify_sender!r}: expected 'log' or 'webhook'")
