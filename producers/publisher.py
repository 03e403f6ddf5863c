"""The publishing API a bank uses: validated PaymentInitiated events onto ``payments.initiated``.

Every payment is checked against the schema before it is sent, so a bank's mistake
is raised at the call (:class:`InvalidPaymentError` names the field) instead of
surfacing later in the dead-letter topic. Events are keyed by the payer's account,
which keeps one payer's payments in order through every stage. The producer is
idempotent with ``acks=all`` (``engine.kafka.client.make_producer``): a retried send
never duplicates a payment on its partition.

Every payment is signed as its payer's bank (``engine.trust.signing``): with the key
file ``SAKK_SIGNING_KEY_FILE`` names, or with the ``signers`` given (the simulator plays
many banks). A key file is one bank's key: the publisher signs for the payer bank of its
first payment and refuses, before sending, a payment of any other bank
(:class:`PaymentSigningError`), which the switch would refuse as a forgery anyway.

    with PaymentPublisher(settings) as publisher:
        publisher.publish(new_payment(bank_reference="BCP-0001", ...))
    # leaving the block waits until the broker acknowledged every payment
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
from engine.events import PAYMENT_INITIATED
from engine.kafka.client import make_producer
from engine.serialization import (
    AvroCodec,
    SchemaRegistry,
    SchemaValidationError,
)
from engine.trust.exceptions import KeyFileError
from engine.trust.keys import KeyPair
from engine.trust.signing import EventSigner
from producers.exceptions import (
    InvalidPaymentError,
    PaymentDeliveryError,
    PaymentSigningError,
    PublisherError,
    PublisherNotStartedError,
)
from producers.signing import Headers, Signers

log = logging.getLogger(__name__)

EVENT_TYPE = "PaymentInitiated"
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
    ) -> None:
        if settings.uses_embedded_broker:
            raise PublisherError(
                "SAKK_KAFKA_BOOTSTRAP_SERVERS is empty: start the broker first "
                "(engine.app.kafka_for) and publish to its address"
            )
        self.settings = settings
        self.codec = codec or AvroCodec(SchemaRegistry.from_dir(settings.schemas_dir))
        self.topic = settings.topic(STAGE)
        self._client_id = client_id
        self._signers = signers
        self._own_key: KeyPair | None = None  # a key file's key, until its bank is known
        self._producer: KafkaProducer | None = None
        self._pending: list[FutureRecordMetadata] = []
        self._published = 0

    @property
    def published(self) -> int:
        """Messages the broker has acknowledged so far (payments and raw messages)."""
        return self._published

    @property
    def pending(self) -> int:
        """Messages sent but not yet acknowledged: ``flush`` waits for them."""
        return len(self._pending)

    def start(self) -> PaymentPublisher:
        if self._producer is not None:
            return self
        if self._signers is None and self._own_key is None:
            self._own_key = self._read_key_file()
        try:
            self._producer = make_producer(self.settings, self._client_id)
        except KafkaError as exc:
            raise PublisherError(
                f"cannot reach Kafka at {self.settings.kafka_bootstrap_servers}: {exc}"
            ) from exc
        return self

    def _read_key_file(self) -> KeyPair:
        path = self.settings.signing_key_file
        if path is None:
            raise PublisherError(
                "no signing key: set SAKK_SIGNING_KEY_FILE to the bank's private key file "
                "(sakk keys generate BANK writes one); the switch refuses unsigned payments"
            )
        try:
            return KeyPair.read(path)
        except KeyFileError as exc:
            raise PublisherError(f"SAKK_SIGNING_KEY_FILE: {exc}") from exc

    def encode(self, payment: Mapping[str, Any]) -> bytes:
        """Single-object Avro bytes of ``payment``, checked field by field against the schema."""
        try:
            return self.codec.encode(EVENT_TYPE, payment, validate=True)
        except SchemaValidationError as exc:
            problem = str(exc).removeprefix(f"{exc.event_type}.{exc.field}: ")
            raise InvalidPaymentError(exc.field, problem) from exc

    def publish(self, payment: Mapping[str, Any]) -> None:
        """Validate ``payment`` and send it, keyed by its payer account.

        Signed as its payer's bank. Raises :class:`InvalidPaymentError` (nothing sent)
        when it does not fit the schema, :class:`PaymentSigningError` (nothing sent) when
        this publisher holds no key of its payer's bank. Returns once the message is
        queued: ``flush`` confirms delivery.
        """
        value = self.encode(payment)
        self._send(PAYMENT_INITIATED.key(payment), value, payment["payer_bank"])

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
        if self._producer is None:
            raise PublisherNotStartedError("use `with PaymentPublisher(settings) as publisher:`")
        headers = self._signature(signer, key, value) if signer is not None else ()
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
        if self._signers is None and self._own_key is not None:
            self._signers = Signers([EventSigner(bank, self._own_key)])  # the key's one bank
        if self._signers is None or bank not in self._signers:
            held = ", ".join(sorted(self._signers.banks)) if self._signers else "none"
            raise PaymentSigningError(
                bank,
                f"cannot sign a payment of payer bank {str(bank)[:8]}: this publisher holds "
                f"the signing key of bank {held} only (a key file is one bank's key)",
            )
        return self._signers.headers(bank, self.topic, key, value)

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
