"""What is told to a bank, and what a channel reports back: no format, no transport."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from engine.domain.notifications import NOTIFIED_OUTCOMES

OUTCOMES = NOTIFIED_OUTCOMES  # a payment's first answers, its steps, a refused step

_FLAT = (str, int)  # by exact type: a bool is not an amount


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
    """A channel: how a notification reaches a bank (a signed webhook, a log line).

    A sender delivers at least once; the receiver deduplicates on ``notification_id``,
    which stays the same on every attempt and every redelivery of the same outcome.
    Senders are thread-safe: the dispatcher calls ``deliver`` from up to
    ``SAKK_WEBHOOK_CONCURRENCY`` threads at once.
    """

    name: str
    concurrent: bool  # True: deliveries wait on the network, so run them in parallel

    def deliver(self, notification: Notification) -> DeliveryResult: ...

    def close(self) -> None: ...
