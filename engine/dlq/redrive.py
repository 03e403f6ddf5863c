"""Put a dead letter back on its source topic, exactly once in effect.

1. The request is recorded REQUESTED with the exact key and bytes to send. The ledger
   keeps one redrive per dead letter, so a second request finds the first and writes
   nothing.
2. The copy is produced (idempotent producer, ``acks=all``), keyed as the original
   (a corrected body too: the key keeps the payer's partition and order, and a bank's
   signature covers it), with headers naming the dead letter and who sent it again.
3. The redrive is marked PUBLISHED with the partition and offset the broker gave.

A crash or a broker timeout between 1 and 3 leaves the redrive REQUESTED: the next
redrive sends the same bytes again. The copy carries the same event id, so a consumer
that already handled the first one records nothing new. A PUBLISHED redrive is never
sent again.

What goes is the original bytes the consumer stored, or a corrected body. The stored
copy is refused when it was cut to fit the dead-letter topic, when it still does not
decode, or when the consumer already handled its event: each would only produce
another dead letter or nothing at all. On a topic banks sign, the bank's signature goes
with the copy and is checked first (``engine.dlq.signatures``): the original's, read
from the source topic, or the bank's own for a corrected body. The ledger keeps the
copy's key and bytes, not its headers, so a REQUESTED redrive found again reads the
original's signature again, or needs the bank's signature file again.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError
from sqlalchemy import Engine

from engine.config import Settings
from engine.dlq.body import CorrectedBody, corrected_body
from engine.dlq.exceptions import (
    AlreadyHandledError,
    RedriveConflictError,
    RedriveError,
    RedriveNotAcknowledgedError,
    RedriveRefusedError,
    RedriveSignatureError,
    SecurityDeadLetterError,
    SourceRecordGoneError,
    StillUndecodableError,
    StoredCopyMissingError,
    StoredCopyTruncatedError,
)
from engine.dlq.inspect import dead_letter_copy_limit_bytes, is_cut
from engine.dlq.signatures import (
    Headers,
    check_bank_signature,
    is_bank_signed,
    parse_signature_file,
    signature_headers_of,
)
from engine.dlq.source import read_source_record
from engine.events import EVENTS
from engine.kafka.client import Outgoing, deliver_all, make_producer
from engine.kafka.exceptions import KafkaProducerDeliveryError
from engine.ledger.dead_letters import (
    MAX_LISTED,
    BodySource,
    DeadLetterRecord,
    Redrive,
    RedriveRequest,
    StoredCopy,
    claim_redrive,
    dead_letters_to_redrive,
    get_dead_letter,
    handled_outcome,
    mark_published,
    stored_copy,
)
from engine.masking import mask_text
from engine.ops.audit_log import append_action
from engine.ops.redrive import check_redrivable, redrive_record
from engine.pipeline.dead_letters import SECURITY_KIND
from engine.serialization import AvroCodec, DecodeError

log = logging.getLogger(__name__)

HEADER_REDRIVE_OF = "sakk.redrive.of"
HEADER_REDRIVE_BY = "sakk.redrive.by"
HEADER_REDRIVE_BODY = "sakk.redrive.body"
MAX_REDRIVES_PER_RUN = MAX_LISTED  # dead letters one ``--kind`` run sends; run again for more


@dataclass(frozen=True, slots=True)
class RedriveOutcome:
    """What one redrive call did: ``sent`` False means the copy had already been published."""

    dead_letter_id: int
    redrive: Redrive
    sent: bool
    resent: bool  # a REQUESTED redrive found and sent again

    @property
    def summary(self) -> str:
        r = self.redrive
        where = f"{r.target_topic} partition {r.published_partition} offset {r.published_offset}"
        if not self.sent:
            return (
                f"dead letter {self.dead_letter_id} was already redriven by {r.requested_by} "
                f"at {_iso(r.requested_at)} to {where}: nothing sent"
            )
        verb = "sent again" if self.resent else "redriven"
        return f"dead letter {self.dead_letter_id} {verb} ({r.body_source} body) to {where}"


@dataclass
class KindRedrive:
    """A ``--kind`` run: every dead letter sent, every one refused and why."""

    kind: str
    outcomes: list[RedriveOutcome] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    limit_reached: bool = False


@dataclass(frozen=True, slots=True)
class _Planned:
    key: bytes
    value: bytes
    source: BodySource
    payment_id: str | None
    event_id: str | None
    payer_bank: str | None
    headers: Headers = ()  # the bank's signature, on a topic banks sign


def _iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat(timespec="seconds")


class Redriver:
    """Sends dead letters back to their source topics; one producer for the whole run."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        codec: AvroCodec,
        producer: KafkaProducer | None = None,
        forced: bool = False,
    ) -> None:
        self.settings = settings
        self.forced = forced  # also poison and corrupt_batch dead letters (engine.ops.redrive)
        self.engine = engine
        self.codec = codec
        self._producer = producer
        self._owns_producer = producer is None

    def __enter__(self) -> Redriver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._producer is not None and self._owns_producer:
            self._producer.close(timeout=self.settings.shutdown_timeout_s)
            self._producer = None

    def redrive(
        self,
        dead_letter_id: int,
        requested_by: str,
        reason: str | None = None,
        body: bytes | None = None,
        signature: bytes | None = None,
    ) -> RedriveOutcome:
        """Send one dead letter again: its stored bytes, or ``body`` (see ``engine.dlq.body``).

        ``signature``: the bank's signature file for ``body`` (``engine.dlq.signatures``).
        """
        with self.engine.connect() as conn:
            dead = get_dead_letter(conn, dead_letter_id)
        if dead.kind == SECURITY_KIND and dead.redrive is None:
            raise SecurityDeadLetterError(
                f"dead letter {dead.id} was refused for its signature ({mask_text(dead.reason)}); "
                f"it is never sent again from here: the bank signs it again and publishes it"
            )
        refusal = check_redrivable(f"dead letter {dead.id}", dead.kind, self.forced)
        if refusal is not None and dead.redrive is None:
            raise RedriveRefusedError(refusal.reason)
        corrected = None if body is None else corrected_body(self.codec, dead.source_topic, body)
        signed = None if signature is None else parse_signature_file(signature)
        if dead.redrive is not None:
            return self._again(dead, dead.redrive, corrected, signed)
        planned = self._plan(dead, corrected, signed)
        request = RedriveRequest(
            dead_letter_id=dead.id,
            requested_by=requested_by,
            requested_at=datetime.now(UTC),
            reason=reason,
            body_source=planned.source,
            target_topic=dead.source_topic,
            key=planned.key,
            value=planned.value,
            payment_id=planned.payment_id,
            event_id=planned.event_id,
        )
        record = redrive_record(request, dead.kind, self.forced, request.requested_at)
        redrive, created = claim_redrive(
            self.engine, request, lambda conn: append_action(conn, record)
        )
        if not created:  # another operator's request won the race
            return self._again(dead, redrive, corrected, signed)
        return self._publish(dead, redrive, planned.headers, resent=False)

    def redrive_kind(
        self,
        kind: str,
        requested_by: str,
        reason: str | None = None,
        limit: int = MAX_REDRIVES_PER_RUN,
    ) -> KindRedrive:
        """Every dead letter of ``kind`` not yet published again, oldest first, up to ``limit``.

        A dead letter refused (cut, still undecodable, ...) is reported and the run goes
        on; a broker that does not acknowledge stops it (the others would wait as long).
        """
        with self.engine.connect() as conn:
            pending = dead_letters_to_redrive(conn, kind, limit)
        run = KindRedrive(kind, limit_reached=len(pending) >= limit)
        for dead in pending:
            try:
                run.outcomes.append(self.redrive(dead.id, requested_by, reason))
            except RedriveNotAcknowledgedError:
                raise
            except RedriveError as exc:
                run.refused.append((dead.id, str(exc)))
        return run

    def _again(
        self,
        dead: DeadLetterRecord,
        redrive: Redrive,
        corrected: CorrectedBody | None,
        signed: Headers | None,
    ) -> RedriveOutcome:
        """A redrive already recorded: nothing if published, the same bytes if only requested."""
        if redrive.published:
            return RedriveOutcome(dead.id, redrive, sent=False, resent=False)
        if corrected is not None and corrected.value != redrive.value:
            raise RedriveConflictError(
                f"dead letter {dead.id} has a redrive requested by {redrive.requested_by} at "
                f"{_iso(redrive.requested_at)} with other bytes ({redrive.body_source} body); "
                f"run the redrive again without --body to finish it"
            )
        headers = self._signature_again(dead, redrive, signed)
        return self._publish(dead, redrive, headers, resent=True)

    def _signature_again(
        self, dead: DeadLetterRecord, redrive: Redrive, signed: Headers | None
    ) -> Headers:
        """The signature a requested copy needs, found again: the ledger keeps no headers."""
        if not is_bank_signed(self.settings, redrive.target_topic):
            return ()
        payer_bank = _payer_bank(self.codec, redrive.value)
        source = BodySource(redrive.body_source)
        key = redrive.key or b""
        return self._bank_signature(dead, source, key, redrive.value, payer_bank, signed)

    def _bank_signature(
        self,
        dead: DeadLetterRecord,
        source: BodySource,
        key: bytes,
        value: bytes,
        payer_bank: str | None,
        signed: Headers | None,
    ) -> Headers:
        """The original's signature, or the bank's for a corrected body; checked either way."""
        if source == BodySource.ORIGINAL:
            headers = self._original_signature(dead, value)
        elif signed is None:
            raise RedriveSignatureError(
                f"dead letter {dead.id}: {dead.source_topic} carries bank-signed events and "
                f"the switch cannot sign for a bank: give the bank's signature for the "
                f"corrected message with --signature FILE"
            )
        else:
            headers = signed
        with self.engine.connect() as conn:  # as the validator will judge it: keys valid now
            check_bank_signature(
                conn, dead.source_topic, key, value, headers, payer_bank, datetime.now(UTC)
            )
        return headers

    def _plan(
        self, dead: DeadLetterRecord, corrected: CorrectedBody | None, signed: Headers | None
    ) -> _Planned:
        with self.engine.connect() as conn:
            copy = stored_copy(conn, dead)
        bank_signed = is_bank_signed(self.settings, dead.source_topic)
        if corrected is not None:
            planned = _plan_corrected(corrected, copy.key if copy else b"", bank_signed)
        else:
            planned = self._plan_original(dead, copy, bank_signed)
        if bank_signed:
            headers = self._bank_signature(
                dead, planned.source, planned.key, planned.value, planned.payer_bank, signed
            )
            planned = dataclasses.replace(planned, headers=headers)
        if planned.event_id is not None:
            with self.engine.connect() as conn:
                outcome = handled_outcome(conn, dead.consumer, planned.event_id)
            if outcome is not None:
                raise AlreadyHandledError(
                    f"dead letter {dead.id}: {dead.consumer} already handled event "
                    f"{planned.event_id} ({outcome}); sending it again would change nothing"
                )
        return planned

    def _original_signature(self, dead: DeadLetterRecord, value: bytes) -> Headers:
        """The bank's signature headers of the original, as the source topic still holds them."""
        source = read_source_record(
            self.settings, dead.source_topic, dead.source_partition, dead.source_offset
        )
        where = f"{dead.source_topic} partition {dead.source_partition} offset {dead.source_offset}"
        if source is None:
            raise SourceRecordGoneError(
                f"dead letter {dead.id}: {where} no longer holds the original (retention?), so "
                f"the bank's signature cannot go with it; ask the bank for its signed message "
                f"and give it with --body FILE --signature FILE"
            )
        if source.value != value:
            raise SourceRecordGoneError(
                f"dead letter {dead.id}: {where} holds other bytes than the dead letter "
                f"(was the topic recreated?); give the bank's message with --body and --signature"
            )
        return signature_headers_of(source.headers)

    def _plan_original(
        self, dead: DeadLetterRecord, copy: StoredCopy | None, bank_signed: bool
    ) -> _Planned:
        if copy is None:
            raise StoredCopyMissingError(
                f"dead letter {dead.id}: the ledger holds no copy of its bytes; "
                f"give the message with --body FILE"
            )
        if is_cut(copy, self.settings.max_message_bytes):
            limit = dead_letter_copy_limit_bytes(self.settings.max_message_bytes)
            raise StoredCopyTruncatedError(
                f"dead letter {dead.id}: its stored copy was cut to {limit:,} bytes to fit the "
                f"dead-letter topic (SAKK_MAX_MESSAGE_BYTES - 64 KiB), so the original is lost; "
                f"give the corrected message: sakk dlq redrive {dead.id} --body FILE"
            )
        try:
            event = self.codec.decode(copy.value)
        except DecodeError as exc:
            raise StillUndecodableError(
                f"dead letter {dead.id}: still does not decode ({exc.kind}: "
                f"{mask_text(str(exc))}); fix the cause first (its writer schema approved with "
                f"sakk schemas approve, say) or give a corrected message with --body FILE"
            ) from exc
        payment_id, event_id = _switch_ids(event.event_type, event.record, bank_signed)
        return _Planned(
            key=copy.key,
            value=copy.value,
            source=BodySource.ORIGINAL,
            payment_id=payment_id,
            event_id=event_id,
            payer_bank=_text(event.record.get("payer_bank")),
        )

    def _publish(
        self, dead: DeadLetterRecord, redrive: Redrive, carried: Headers, resent: bool
    ) -> RedriveOutcome:
        headers = carried + redrive_headers(dead, redrive)
        message = Outgoing(redrive.target_topic, redrive.key or b"", redrive.value, headers)
        try:
            (delivery,) = deliver_all(
                self._producer_now(), [message], self.settings.produce_timeout_s
            )
        except (KafkaProducerDeliveryError, KafkaError) as exc:
            raise RedriveNotAcknowledgedError(
                f"dead letter {dead.id}: the broker did not acknowledge its copy ({exc}); "
                f"the request is recorded: run the same redrive again to send it"
            ) from exc
        published = mark_published(
            self.engine, dead.id, delivery.partition, delivery.offset, datetime.now(UTC)
        )
        log.info(
            "dead letter %d redriven by %s to %s partition %d offset %d",
            dead.id,
            redrive.requested_by,
            delivery.topic,
            delivery.partition,
            delivery.offset,
        )
        return RedriveOutcome(dead.id, published, sent=True, resent=resent)

    def _producer_now(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = make_producer(self.settings, client_id="sakk-dlq-redrive")
        return self._producer


def redrive_headers(dead: DeadLetterRecord, redrive: Redrive) -> tuple[tuple[str, bytes], ...]:
    """The dead letter the copy stands for, who sent it, and where the original sat."""
    return (
        (HEADER_REDRIVE_OF, str(dead.id).encode()),
        (HEADER_REDRIVE_BY, redrive.requested_by.encode()),
        (HEADER_REDRIVE_BODY, redrive.body_source.encode()),
        ("sakk.source.topic", dead.source_topic.encode()),
        ("sakk.source.partition", str(dead.source_partition).encode()),
        ("sakk.source.offset", str(dead.source_offset).encode()),
    )


def _plan_corrected(corrected: CorrectedBody, original_key: bytes, bank_signed: bool) -> _Planned:
    payment_id, event_id = _switch_ids(corrected.event_type, corrected.record, bank_signed)
    return _Planned(
        key=original_key,  # the bank signs over it, and it keeps the payer's partition
        value=corrected.value,
        source=BodySource.CORRECTED,
        payment_id=payment_id,
        event_id=event_id,
        payer_bank=_text(corrected.record.get("payer_bank")),
    )


def _switch_ids(
    event_type: str, record: dict[str, Any], bank_signed: bool
) -> tuple[str | None, str | None]:
    """(payment id, event id) as the consumer will know them: a bank's message's ids in
    the bank's namespace (engine.ids), as the gate puts them; as they are otherwise."""
    declared = EVENTS.get(event_type)
    if bank_signed and declared is not None:
        record = declared.as_switch_knows(record)
    return _text(record.get("payment_id")), _text(record.get("event_id"))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _payer_bank(codec: AvroCodec, value: bytes) -> str | None:
    try:
        return _text(codec.decode(value).record.get("payer_bank"))
    except DecodeError:
        return None
