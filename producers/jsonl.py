"""Publish what a bank sends from a JSON Lines file: one message per line.

Each line is a JSON object with its schema's fields and a ``type``: ``"payment"`` (the
default, so files written before steps existed still publish) for a PaymentInitiated
(a sale, or an authorization with ``"intent": "AUTHORIZATION"``), ``"step"`` for a
PaymentStepRequested (CAPTURE, VOID, REFUND, RETURN). ``amount_minor`` is an integer of
minor units (centimes for MAD): a decimal such as ``100.5`` or ``100.0`` is refused;
``occurred_at`` is an RFC 3339 time with its zone (``2026-11-26T09:30:15.123Z``) or absent
for "now"; ``event_id`` (and a payment's ``payment_id``) are optional (fresh UUIDs).
Blank lines are ignored. A bad line is reported with its number and reason, counted, and
skipped; the lines after it are still published. See docs/publishing.md and
``producers/examples/payments.jsonl``.

Every message is signed as the bank it acts for (a payment's payer bank, a step's sender
bank) with the bank's one key (``SAKK_SIGNING_KEY_FILE``); a line acting for another bank
is a bad line, reported and not sent, like any other.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from engine.config import Settings
from engine.events import PAYMENT_INITIATED, PAYMENT_STEP_REQUESTED, EventType
from engine.serialization import AvroCodec
from producers.capture import CaptureWriter
from producers.exceptions import InvalidPaymentError, PaymentSigningError
from producers.publisher import PaymentPublisher, new_payment, new_step
from producers.signing import Signers

log = logging.getLogger(__name__)

MAX_REPORTED_BAD_LINES = 1_000  # beyond this, bad lines are counted but not described
# A line's "type" -> the message it is; absent: a payment (files from before steps).
LINE_TYPES: dict[str, EventType] = {"payment": PAYMENT_INITIATED, "step": PAYMENT_STEP_REQUESTED}
DEFAULT_LINE_TYPE = "payment"
TYPE_FIELD = "type"
_FILLERS = {PAYMENT_INITIATED.name: new_payment, PAYMENT_STEP_REQUESTED.name: new_step}


@dataclass(frozen=True)
class BadLine:
    line_number: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line_number}: {self.reason}"


@dataclass
class PublishReport:
    """What became of each line of a file: published, or skipped with its reason."""

    path: str
    lines: int = 0  # non-blank lines read
    published: int = 0
    skipped: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)  # the first MAX_REPORTED_BAD_LINES
    sent: bool = True  # False: checked, signed and captured only

    def add_bad_line(self, line_number: int, reason: str) -> None:
        self.skipped += 1
        log.warning("%s: line %d skipped: %s", self.path, line_number, reason)
        if len(self.bad_lines) < MAX_REPORTED_BAD_LINES:
            self.bad_lines.append(BadLine(line_number, reason))

    def summary(self) -> str:
        head = (
            f"{self.path}: {self.lines} lines, {self.published} messages "
            f"{'published' if self.sent else 'captured (nothing sent)'}, "
            f"{self.skipped} lines skipped"
        )
        details = [f"  {bad}" for bad in self.bad_lines]
        if self.skipped > len(self.bad_lines):
            details.append(f"  ... and {self.skipped - len(self.bad_lines)} more")
        return "\n".join([head, *details])


def parse_line(text: str) -> dict[str, Any]:
    """The payment on one line, ids and time filled in; raises InvalidPaymentError."""
    event, record = parse_message(text)
    if event is not PAYMENT_INITIATED:
        raise InvalidPaymentError(TYPE_FIELD, f"expected a payment, got {event.name}")
    return record


def parse_message(text: str) -> tuple[EventType, dict[str, Any]]:
    """The message on one line and its kind, ids and time filled in; raises
    InvalidPaymentError naming the field at fault."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPaymentError("(line)", f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise InvalidPaymentError("(line)", f"expected a JSON object, got {type(data).__name__}")
    kind = data.pop(TYPE_FIELD, DEFAULT_LINE_TYPE)
    if kind not in LINE_TYPES:
        known = " or ".join(repr(k) for k in LINE_TYPES)
        raise InvalidPaymentError(TYPE_FIELD, f"{str(kind)[:20]!r}: expected {known}")
    check_integer_amount(data.get("amount_minor"))
    if data.get("occurred_at") is not None:
        data["occurred_at"] = parse_occurred_at(data["occurred_at"])
    event = LINE_TYPES[kind]
    return event, _FILLERS[event.name](**data)


def check_integer_amount(value: Any) -> None:
    """Money is integer minor units: a JSON number with a fraction or exponent is refused,
    even ``100.0`` (it reads as a float, and no float goes where money goes)."""
    if isinstance(value, float):
        raise InvalidPaymentError(
            "amount_minor",
            f"{value!r} is not an integer: give minor units (12345 for 123.45 MAD)",
        )


def parse_occurred_at(value: Any) -> datetime:
    """An ISO 8601 time with its offset, as UTC; a time without offset is ambiguous: refused."""
    if not isinstance(value, str):
        got = type(value).__name__
        raise InvalidPaymentError("occurred_at", f"expected an ISO 8601 string, got {got}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidPaymentError("occurred_at", f"{value[:40]!r} is not ISO 8601") from None
    if moment.utcoffset() is None:
        raise InvalidPaymentError(
            "occurred_at", f"{value[:40]!r} has no UTC offset (add Z or +01:00)"
        )
    return moment.astimezone(UTC)


def publish_file(
    settings: Settings,
    path: Path | str,
    codec: AvroCodec | None = None,
    signers: Signers | None = None,
    capture: CaptureWriter | None = None,
    send: bool = True,
) -> PublishReport:
    """Publish every good line of ``path`` to ``payments.initiated``; report the bad ones.

    Signed with ``signers``, or else the key file ``settings.signing_key_file``.
    ``capture``: also write each message as sent (``producers.capture``); ``send=False``:
    capture only, nothing sent. Raises :class:`~producers.exceptions.PaymentDeliveryError`
    if the broker does not acknowledge what was sent: a delivery problem is not a bad line.
    """
    path = Path(path)
    report = PublishReport(str(path), sent=send)
    max_line_bytes = settings.max_message_bytes
    publisher = PaymentPublisher(settings, codec, signers=signers, capture=capture, send=send)
    with publisher, path.open("rb") as f:
        for line_number, raw in _numbered_lines(f, max_line_bytes):
            if raw is None:
                report.lines += 1
                report.add_bad_line(line_number, f"longer than {max_line_bytes} bytes")
                continue
            if not raw.strip():
                continue
            report.lines += 1
            try:
                publisher.publish_event(*parse_message(raw.decode("utf-8")))
            except UnicodeDecodeError as exc:
                report.add_bad_line(line_number, f"not UTF-8 at byte {exc.start}")
            except InvalidPaymentError as exc:
                report.add_bad_line(line_number, f"{exc.field}: {exc.problem}")
            except PaymentSigningError as exc:
                report.add_bad_line(line_number, str(exc))
    report.published = publisher.published
    return report


def _numbered_lines(f: IO[bytes], max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) from 1; None for a line over ``max_line_bytes`` (read, not kept)."""
    line_number = 0
    while True:
        raw = f.readline(max_line_bytes + 1)
        if not raw:
            return
        line_number += 1
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the long line
                raw = f.readline(max_line_bytes + 1)
            yield line_number, None
        else:
            yield line_number, raw
