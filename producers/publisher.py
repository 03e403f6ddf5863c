"""The publishing API a bank uses: validated PaymentInitiated events onto ``payments.initiated``.

Every payment is checked against the schema before it is sent, so a bank's mistake
is raised at the call (:class:`InvalidPaymentError` names the field) instead of
surfacing later in the dead-letter topic. Events are keyed by the payer's account,
which keeps one payer's payments in order through every stage. The producer is
idempotent with ``acks=all`` (``engine.kafka.client.make_producer``): a retried send
never duplicates a payment on its partition.

A bank sends two kinds of message, both on ``payments.initiated``: payments
(``publish``: PaymentInitiated, a sale or an authorization) and the steps of a payment
(``publish_step``: PaymentStepRequested, a capture, void, refund or return). Each is
checked before it is sent: against its schema, its ids as the switch will take them
(``engine.ids``), and its signer.

Every message is signed as the bank it acts for (``EventType.acting_bank``: a payment's
payer bank, a step's sender bank) with the key file ``SAKK_SIGNING_KEY_FILE`` names, or
with the ``signers`` given (the simulator plays many banks). A key file is ONE bank's
key, and the publisher knows which before it sends anything (``producers.signing.own_signer``:
from the file's name, or ``SAKK_SIGNING_BANK``); a message acting for any other bank
is refused before sending (:class:`PaymentSigningError`), as the switch would refuse it
as a forgery.

    with PaymentPublisher(settings) as publisher:
        publisher.publish(new_payment(bank_reference="BCP-0001", ...))
        publisher.publish_step(new_step(payment_id="P-1", step="CAPTURE", ...))
    # leaving the block waits until the broker acknowledged every message
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata

from engine.config import Settings
from engine.events import PAYMENT_INITIATED, PAYMENT_STEP_REQUESTED, EventType
from engine.ids import MalformedIdError
from engine.kafka.client import make_producer
from engine.serialization import (
    AvroCodec,
    SchemaRegistry,
    SchemaValidationError,
)
from engine.trust.exceptions import KeyFileError
from engine.trust.signing import EventSigner
from producers.capture import CaptureWriter
from producers.exceptions import (
    InvalidPaymentError,
    PaymentDeliveryError,
    PaymentSigningError,
    PublisherError,
    PublisherNotStartedError,
    SigningKeyError,
)
from producers.signing import Headers, Signers, own_signer

log = logging.getLogger(__name__)

EVENT_TYPE = PAYMENT_INITIATED.name
STAGE = "initiated"
DEFAULT_CLIENT_ID = "sakk-bank-publisher"
MAX_PENDING = 10_000  # sends awaiting acknowledgement before publish() waits for them itself


def utc_now_ms() -> datetime:
    """Now, in UTC, to the millisecond: what the schema's timestamp-millis can carry."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_payment(**fields: Any) -> dict[str, Any]:
    """A PaymentInitiated record from ``fields``, with fresh ids and the time filled in.

    ``event_id`` and ``payment_id`` default to new UUID4s, ``occurred_at`` to now (UTC,
    millisecond precision); the optional ``merchant_category_code``, ``egov_service`` and
    ``remittance_info`` default to None, ``intent`` to SALE (settled at once). A field
    given as None gets its default too.
    """
    payment: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "payment_id": str(uuid.uuid4()),
        "occurred_at": utc_now_ms(),
        "merchant_category_code": None,
        "egov_service": None,
        "intent": "SALE",
        "remittance_info": None,
    }
    payment.update({k: v for k, v in fields.items() if v is not None or k not in payment})
    return payment


def new_step(**fields: Any) -> dict[str, Any]:
    """A PaymentStepRequested record from ``fields``, with a fresh ``event_id`` and the time.

    ``occurred_at`` defaults to now; ``amount_minor``, ``currency`` and ``reason_code`` to
    None (all that remains), ``final`` to False. A field given as None gets its default.
    """
    step: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": utc_now_ms(),
        "amount_minor": None,
        "currency": None,
        "final": False,
        "reason_code": None,
    }
    step.update({k: v for k, v in fields.items() if v is not None or k not in step})
    return step


def encode_message(
    codec: AvroCodec, event: EventType, record: Mapping[str, Any]
) -> tuple[bytes, bytes]:
    """(Kafka key, value) of one message a bank sends, checked as ``publish_event`` checks it
    (the schema, field by field; the ids as the switch will take them); unsigned.

    For tools that build messages ahead and send them themselves (the chaos workload):
    one way to encode a payment or a step. Raises :class:`InvalidPaymentError`.
    """
    try:
        value = codec.encode(event.name, record, validate=True)
    except SchemaValidationError as exc:
        problem = str(exc).removeprefix(f"{exc.event_type}.{exc.field}: ")
        raise InvalidPaymentError(exc.field, problem) from exc
    try:
        event.with_switch_ids(record, str(event.acting_bank(record)))
    except MalformedIdError as exc:
        field = str(exc).split(" ", 1)[0]
        raise InvalidPaymentError(field, str(exc).removeprefix(f"{field} ")) from exc
    return event.key(record), value


class PaymentPublisher:
    """Publishes payments for a bank; use it as a context manager.

    Entering reads the signing key (unless ``signers`` are given) and opens the
    producer; leaving waits for the broker to acknowledge everything sent and closes it.
    The payments are written with this release's schemas, which the switch approved;
    a bank publishes no schema (the switch decides which writer schemas exist).
    """

    def __init__(
        self,
        settings: Settings,
        codec: AvroCodec | None = None,
        client_id: str = DEFAULT_CLIENT_ID,
        signers: Signers | None = None,
        capture: CaptureWriter | None = None,
        send: bool = True,
    ) -> None:
        if send and settings.uses_embedded_broker:
            raise PublisherError(
                "SAKK_KAFKA_BOOTSTRAP_SERVERS is empty: start the broker first "
                "(sakk.app.kafka_for) and publish to its address"
            )
        self.settings = settings
        self.codec = codec or AvroCodec(SchemaRegistry.from_dir(settings.schemas_dir))
        self.topic = settings.topic(STAGE)
        self._client_id = client_id
        self._signers = signers
        self._capture = capture
        self._send_to_broker = send  # False: capture only, nothing leaves the machine
        self._producer: KafkaProducer | None = None
        self._started = False
        self._pending: list[FutureRecordMetadata] = []
        self._published = 0

    @property
    def published(self) -> int:
        """Messages the broker has acknowledged so far (payments, steps and raw messages);
        with ``send=False``, the messages captured."""
        return self._published

    @property
    def pending(self) -> int:
        """Messages sent but not yet acknowledged: ``flush`` waits for them."""
        return len(self._pending)

    @property
    def signing_banks(self) -> frozenset[str]:
        """The banks this publisher signs for: the key file's one bank, or the signers'."""
        return self._held_signers().banks

    def start(self) -> PaymentPublisher:
        if self._started:
            return self
        self._held_signers()  # a missing or wrong key stops the publisher before it sends
        if self._send_to_broker:
            try:
                self._producer = make_producer(self.settings, self._client_id)
            except KafkaError as exc:
                raise PublisherError(
                    f"cannot reach Kafka at {self.settings.kafka_bootstrap_servers}: {exc}"
                ) from exc
        self._started = True
        return self

    def _held_signers(self) -> Signers:
        if self._signers is None:
            self._signers = Signers([self._read_key_file()])
        return self._signers

    def _read_key_file(self) -> EventSigner:
        path = self.settings.signing_key_file
        if path is None:
            raise SigningKeyError(
                "no signing key: set SAKK_SIGNING_KEY_FILE to the bank's private key file "
                "(sakk keys generate BANK writes one); the switch refuses unsigned payments"
            )
        try:
            return own_signer(path, self.settings.signing_bank or None)
        except KeyFileError as exc:
            raise SigningKeyError(f"SAKK_SIGNING_KEY_FILE: {exc}") from exc

    def encode(self, payment: Mapping[str, Any]) -> bytes:
        """Single-object Avro bytes of ``payment``, checked field by field against the schema."""
        return self.encode_event(PAYMENT_INITIATED, payment)

    def encode_event(self, event: EventType, record: Mapping[str, Any]) -> bytes:
        """Single-object Avro bytes of ``record``, checked field by field against its schema."""
        try:
            return self.codec.encode(event.name, record, validate=True)
        except SchemaValidationError as exc:
            problem = str(exc).removeprefix(f"{exc.event_type}.{exc.field}: ")
            raise InvalidPaymentError(exc.field, problem) from exc

    def check(self, event: EventType, record: Mapping[str, Any]) -> bytes:
        """What ``publish_event`` checks, without sending: returns the encoded value.

        Raises :class:`InvalidPaymentError` when ``record`` does not fit its schema or an
        id is one the switch would dead-letter (``malformed_id``),
        :class:`PaymentSigningError` when it acts for a bank this publisher holds no key of.
        """
        value = self._check_fit(event, record)
        self._check_signer(event, record)
        return value

    def _check_fit(self, event: EventType, record: Mapping[str, Any]) -> bytes:
        return encode_message(self.codec, event, record)[1]

    def _check_signer(self, event: EventType, record: Mapping[str, Any]) -> None:
        bank = event.acting_bank(record)
        held = self.signing_banks
        if bank not in held:
            raise PaymentSigningError(
                str(bank),
                f"{event.signer_field} {str(bank)[:8]} is not this publisher's bank: it signs "
                f"for bank {', '.join(sorted(held))} only (a key file is one bank's key)",
            )

    def publish(self, payment: Mapping[str, Any]) -> None:
        """Check ``payment`` and send it, keyed by its payer account, signed as its payer bank.

        Raises :class:`InvalidPaymentError` (nothing sent) when it does not fit the schema,
        :class:`PaymentSigningError` (nothing sent) when its payer bank is not this
        publisher's. Returns once the message is queued: ``flush`` confirms delivery.
        """
        self.publish_event(PAYMENT_INITIATED, payment)

    def publish_step(self, step: Mapping[str, Any]) -> None:
        """Check a PaymentStepRequested and send it, keyed by its payment's payer account and
        signed as its sender bank; raises as ``publish`` does."""
        self.publish_event(PAYMENT_STEP_REQUESTED, step)

    def publish_event(self, event: EventType, record: Mapping[str, Any]) -> None:
        """Check one message a bank sends (``check``) and send it, signed as its acting bank."""
        if event.topic_name != STAGE:
            raise ValueError(f"a bank does not publish {event.name}")
        value = self._check_fit(event, record)  # a bank's mistake first, even unstarted
        if not self._started:
            raise PublisherNotStartedError("use `with PaymentPublisher(settings) as publisher:`")
        self._check_signer(event, record)
        self._send(event.key(record), value, str(event.acting_bank(record)))

    def publish_raw(
        self, value: bytes, key: bytes | None = None, signer: str | None = None
    ) -> None:
        """Send ``value`` as it is, unchecked: how tests and the simulator send bad input.

        ``signer``: the bank whose key signs it (None: sent unsigned, as a forger would).
        """
        if not isinstance(value, bytes | bytearray) or not (
            key is None or isinstance(key, bytes | bytearray)
        ):
            raise TypeError("publish_raw takes bytes (and a bytes key or None)")
        self._send(None if key is None else bytes(key), bytes(value), signer)

    def _send(self, key: bytes | None, value: bytes, signer: str | None) -> None:
        if not self._started:
            raise PublisherNotStartedError("use `with PaymentPublisher(settings) as publisher:`")
        headers = self._signature(signer, key, value) if signer is not None else ()
        if self._capture is not None:
            self._capture.write(self.topic, key, value, headers)
        if self._producer is None:  # capture only
            self._published += 1
            return
        try:
            future = self._producer.send(
                self.topic, key=key, value=value, headers=list(headers) or None
            )
            self._pending.append(future)
        except KafkaError as exc:  # the send buffer stayed full, or no metadata for the topic
            raise PaymentDeliveryError(f"cannot send to {self.topic}: {exc}", failed=1) from exc
        if len(self._pending) >= MAX_PENDING:
            self.flush()

    def _signature(self, bank: str, key: bytes | None, value: bytes) -> Headers:
        """The headers that sign one message as ``bank``; raises PaymentSigningError."""
        signers = self._held_signers()
        if bank not in signers:
            held = ", ".join(sorted(signers.banks))
            raise PaymentSigningError(
                bank,
                f"cannot sign as bank {str(bank)[:8]}: this publisher holds the signing key "
                f"of bank {held} only (a key file is one bank's key)",
            )
        return signers.headers(bank, self.topic, key, value)

    def flush(self) -> int:
        """Wait until the broker acknowledged every message sent; returns how many it did.

        Raises :class:`PaymentDeliveryError` when any message was refused or not
        acknowledged within ``SAKK_PRODUCE_TIMEOUT_S``: those may not have been published.
        """
        if self._producer is None or not self._pending:
            return 0
        pending, self._pending = self._pending, []
        timeout_s = self.settings.produce_timeout_s
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            log.warning("flush of %d messages did not complete: %s", len(pending), exc)
        acknowledged = sum(1 for f in pending if f.is_done and f.succeeded())
        self._published += acknowledged
        failed = len(pending) - acknowledged
        if failed:
            first = next((f.exception for f in pending if f.is_done and f.failed()), None)
            cause = f"first error: {first!r}" if first else f"not acknowledged within {timeout_s}s"
            raise PaymentDeliveryError(
                f"{failed} of {len(pending)} messages to {self.topic} not published ({cause})",
                failed=failed,
            )
        return acknowledged

    def close(self) -> None:
        """Flush, then close the producer; raises like ``flush`` if delivery failed."""
        self._started = False
        if self._producer is None:
            return
        try:
            self.flush()
        finally:
            producer, self._producer = self._producer, None
            producer.close(timeout=self.settings.produce_timeout_s)

    def __enter__(self) -> PaymentPublisher:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except PublisherError as close_error:  # keep the original exception visible
            log.error("while handling %r, closing the publisher failed: %s", exc, close_error)
