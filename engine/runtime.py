"""The consumer loop every stage shares: poll, decide in one transaction, produce, commit.

Exactly-once effects rest on three rules applied here, once, for every stage:

1. A batch's effects, the ids of the events it handled and the events it will
   emit are written in ONE database transaction.
2. Emitted events are produced and acknowledged (``acks=all``) only after that
   transaction commits; Kafka offsets are committed only after that.
3. A redelivered event (its id already handled) has no new effect: the events
   stored for it are produced again, with the same ids, so a crash between any
   two steps loses nothing downstream and doubles nothing in effect.

The chaos harness (``engine.chaos``) proves it by killing consumers at random and,
through ``SAKK_CRASH_POINT`` (:class:`CrashPoints`, off by default), exactly between
those steps: before/after the batch's commit, after deliveries, after produce.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from sqlalchemy import Connection, Engine, insert, select, tuple_
from sqlalchemy.exc import IntegrityError

from engine import metrics
from engine.config import Settings
from engine.kafka.client import Outgoing, make_consumer, make_producer, send_all
from engine.kafka.exceptions import KafkaProducerDeliveryError
from engine.ledger.database import is_transient
from engine.ledger.dead_letters import dead_letter_event_id
from engine.ledger.models import DeadLetter, EmittedEvent, HandledEvent
from engine.serialization import AvroCodec, DecodeError, SchemaStoreError
from engine.trust.signing import Evidence, Verdict

log = logging.getLogger(__name__)

EVENT_NAMESPACE = uuid.UUID("5a4b0c1e-7d1f-4c2e-9a55-5a4b4b000001")
EVENT_TOPICS = {
    "PaymentInitiated": "initiated",
    "PaymentValidated": "validated",
    "PaymentRejected": "rejected",
    "PaymentSettled": "settled",
    "PaymentFailed": "failed",
    "PaymentNotified": "notified",
}
REFUSALS_REMEMBERED = 10_000  # coordinates of refusals already counted in the metric
SECURITY_KIND = "security"  # dead-letter kind of a message refused by a stage's gate
DLQ_HEADROOM_BYTES = 64 * 1024  # room for headers when a huge message is dead-lettered
MAX_IN_CLAUSE = 500  # ids per IN (...) query


class CrashPoints:
    """Fault injection for the chaos harness: SIGKILL this process at named loop steps.

    No effect unless ``SAKK_CRASH_POINT`` names steps (``engine.config.CRASH_POINTS``);
    then each pass through a named step kills with probability ppm / 1e6. SIGKILL, not an
    exception: nothing after that instant runs, exactly like ``kill -9``.
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


def derived_event_id(source_event_id: str, event_type: str, extra: str = "") -> str:
    """Deterministic id of an event derived from another: a replay produces the same ids."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{source_event_id}/{event_type}/{extra}"))


@dataclass(frozen=True, slots=True)
class Inbound:
    """One decoded message and where it came from (with its verified signature, if gated)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int
    event_type: str
    record: dict[str, Any]
    signature: Evidence | None = None

    @property
    def event_id(self) -> str:
        return str(self.record["event_id"])


@dataclass(slots=True)
class Handled:
    """What a stage decided for one inbound event."""

    outcome: str
    payment_id: str | None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    channel: str = ""
    reason: str = ""


@dataclass
class Completion:
    """What a stage did after its batch committed: events to emit and rows to record with them."""

    follow_ups: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    record: Callable[[Connection], None] | None = None


class Screen(Protocol):
    """A gate's checks for one batch, with what it read for them (the banks' keys)."""

    def check_raw(self, message: RawMessage) -> Verdict: ...

    def check_record(self, verdict: Verdict, record: dict[str, Any]) -> Verdict: ...


class Gate(Protocol):
    """Checks a stage wants before anything else: refusals are dead-lettered, nothing else."""

    def screen(self, engine: Engine) -> Screen:
        """Read what the checks need, once per batch."""
        ...


class EndsWithTransaction:
    """Mixin for stages whose work ends when the batch's transaction commits."""

    def complete(self, engine: Engine, event_ids: Sequence[str]) -> Completion:
        return Completion()


class Stage(Protocol):
    """A consumer's rules: given a batch of fresh events, decide and write their effects."""

    name: str

    def input_topics(self) -> list[str]: ...

    def process(self, conn: Connection, batch: Sequence[Inbound]) -> list[Handled]:
        """Write the batch's effects with ``conn`` and return one decision per event."""
        ...

    def complete(self, engine: Engine, event_ids: Sequence[str]) -> Completion:
        """Work that must follow the ledger commit (deliveries), for fresh and redelivered ids.

        Returns follow-up events as (source event id, event type, record).
        """
        ...


@dataclass
class BatchResult:
    outgoing: list[Outgoing]
    handled: list[tuple[Inbound, Handled]]
    dead_lettered: int
    duplicates: int
    event_ids: list[str]  # every event id in the batch, fresh or redelivered


class DeadLetterReason(Exception):
    """Raised by a stage for one message it refuses to handle at all (poison)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class BatchProcessor:
    """Turns a polled batch into committed effects plus the messages to produce.

    Kafka-free, so replay and tests can drive the very same code as the live loop.
    """

    def __init__(self, stage: Stage, engine: Engine, codec: AvroCodec, settings: Settings):
        self.stage = stage
        self.engine = engine
        self.codec = codec
        self.settings = settings
        self.dlq_topic = settings.topic("dlq")
        self.crash = CrashPoints(settings)
        self.gate: Gate | None = getattr(stage, "gate", None)
        self._refusals_counted: dict[tuple[str, int, int], None] = {}  # insertion-ordered

    def process(self, raw: Sequence[RawMessage]) -> BatchResult:
        """Handle ``raw`` messages in partition order; raises only when the database is down."""
        result = self._process_batch(raw)
        completion = self.stage.complete(self.engine, result.event_ids)
        self.crash("after_complete")
        if completion.follow_ups or completion.record is not None:
            result.outgoing += self._store_completion(completion)
        return result

    def _process_batch(self, raw: Sequence[RawMessage]) -> BatchResult:
        screen = self.gate.screen(self.engine) if self.gate is not None else None
        decoded, undecodable = self._decode(raw, screen)
        failure: Exception | None = None
        for _attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    result = self._process_in(conn, decoded, undecodable)
                    self.crash("before_db_commit")
                self.crash("after_db_commit")
                return result
            except IntegrityError as exc:
                failure = exc  # most often a racing instance: the retry sees duplicates
            except SchemaStoreError:
                raise  # the schema store is unreachable: retry later, never dead-letter
            except Exception as exc:
                if is_transient(exc):
                    raise
                failure = exc
                break
        if len(raw) == 1:
            return self._dead_letter_poison(raw[0], failure)
        log.warning(
            "%s: batch of %d failed (%r); handling one by one", self.stage.name, len(raw), failure
        )
        total = BatchResult([], [], 0, 0, [])
        for message in raw:
            part = self._process_batch([message])
            total.outgoing += part.outgoing
            total.handled += part.handled
            total.dead_lettered += part.dead_lettered
            total.duplicates += part.duplicates
            total.event_ids += part.event_ids
        return total

    def _dead_letter_poison(self, message: RawMessage, failure: Exception | None) -> BatchResult:
        if isinstance(failure, DeadLetterReason):
            kind, reason = failure.kind, failure.reason
        else:
            kind, reason = "poison", f"{type(failure).__name__}: {failure}"
        with self.engine.begin() as conn:
            return self._process_in(conn, [], [(message, kind, reason[:1000])])

    def _store_completion(self, completion: Completion) -> list[Outgoing]:
        """Record, in one transaction, what followed the batch's commit and the events it emits."""
        outgoing, rows = [], []
        for source_id, event_type, record in completion.follow_ups:
            message = Outgoing(
                self.settings.topic(EVENT_TOPICS[event_type]),
                record["payer_account"].encode(),
                self.codec.encode(event_type, record),
            )
            outgoing.append(message)
            rows.append(_emitted_row(self.stage.name, source_id, record, message))
        with self.engine.begin() as conn:
            if completion.record is not None:
                completion.record(conn)
            if rows:
                conn.execute(insert(EmittedEvent), rows)
        return outgoing

    def _decode(
        self, raw: Sequence[RawMessage], screen: Screen | None
    ) -> tuple[list[Inbound], list[tuple[RawMessage, str, str]]]:
        """Decode each message; a gated stage's security refusals come first, unread."""
        decoded: list[Inbound] = []
        bad: list[tuple[RawMessage, str, str]] = []
        for m in raw:
            verdict = screen.check_raw(m) if screen is not None else None
            if verdict is not None and not verdict.ok:
                bad.append(self._refused(m, verdict))
                continue
            if m.value is None:
                bad.append((m, "undecodable", "empty message (tombstone)"))
                continue
            try:
                event = self.codec.decode(m.value)
            except DecodeError as exc:
                bad.append((m, exc.kind, str(exc)[:1000]))
                continue
            if screen is not None and verdict is not None:
                verdict = screen.check_record(verdict, event.record)
                if not verdict.ok:
                    bad.append(self._refused(m, verdict))
                    continue
            decoded.append(
                Inbound(
                    m.topic, m.partition, m.offset, m.key, m.timestamp_ms, event.event_type,
                    event.record, verdict.evidence if verdict is not None else None,
                )
            )  # fmt: skip
        return decoded, bad

    def _refused(self, m: RawMessage, verdict: Verdict) -> tuple[RawMessage, str, str]:
        """A security refusal: dead-lettered with its reason, and nothing of it recorded."""
        refusal = str(verdict.refusal)
        coordinates = (m.topic, m.partition, m.offset)
        if coordinates not in self._refusals_counted:  # a retried batch sees it again
            self._refusals_counted[coordinates] = None
            if len(self._refusals_counted) > REFUSALS_REMEMBERED:
                del self._refusals_counted[next(iter(self._refusals_counted))]
            metrics.SECURITY_REFUSALS.labels(self.stage.name, verdict.claimed_signer, refusal).inc()
        return m, SECURITY_KIND, f"{refusal}: {verdict.detail}"[:1000]

    def _process_in(
        self,
        conn: Connection,
        decoded: list[Inbound],
        undecodable: list[tuple[RawMessage, str, str]],
    ) -> BatchResult:
        name = self.stage.name
        dlq_ids = {_dlq_event_id(m): (m, kind, reason) for m, kind, reason in undecodable}
        seen = _already_handled(conn, name, [i.event_id for i in decoded] + list(dlq_ids))
        fresh: list[Inbound] = []
        duplicate_ids: list[str] = []
        in_batch: set[str] = set()
        for inbound in decoded:
            if inbound.event_id in seen or inbound.event_id in in_batch:
                duplicate_ids.append(inbound.event_id)
            else:
                in_batch.add(inbound.event_id)
                fresh.append(inbound)
        resend = _stored_emissions(conn, name, [i for i in duplicate_ids if i in seen])
        resend += self._dead_letters_again(
            conn, [m for eid, (m, _, _) in dlq_ids.items() if eid in seen]
        )
        new_dlq = [(eid, v) for eid, v in dlq_ids.items() if eid not in seen]

        decisions = self.stage.process(conn, fresh) if fresh else []
        if len(decisions) != len(fresh):
            raise RuntimeError(
                f"{name} returned {len(decisions)} decisions for {len(fresh)} events"
            )

        now = datetime.now(UTC)
        handled_rows: list[dict[str, Any]] = []
        emitted_rows: list[dict[str, Any]] = []
        outgoing: list[Outgoing] = []
        for inbound, decision in zip(fresh, decisions, strict=True):
            handled_rows.append(_handled_row(name, inbound, decision, now))
            for event_type, record in decision.events:
                message = Outgoing(
                    self.settings.topic(EVENT_TOPICS[event_type]),
                    record["payer_account"].encode(),
                    self.codec.encode(event_type, record),
                )
                outgoing.append(message)
                emitted_rows.append(_emitted_row(name, inbound.event_id, record, message))
        dead_rows = []
        for eid, (m, kind, reason) in new_dlq:
            message = self._dead_letter_message(m, kind, reason)
            outgoing.append(message)
            handled_rows.append(_handled_dlq_row(name, eid, m, now))
            emitted_rows.append(
                {
                    "consumer": name,
                    "source_event_id": eid,
                    "event_id": eid,
                    "payment_id": None,
                    "topic": message.topic,
                    "key": message.key,
                    "value": message.value,
                }
            )
            dead_rows.append(
                {
                    "consumer": name,
                    "source_topic": m.topic,
                    "source_partition": m.partition,
                    "source_offset": m.offset,
                    "kind": kind,
                    "reason": reason,
                    "payment_id": None,
                    "recorded_at": now,
                }
            )
        if handled_rows:
            conn.execute(insert(HandledEvent), handled_rows)
        if emitted_rows:
            conn.execute(insert(EmittedEvent), emitted_rows)
        if dead_rows:
            conn.execute(insert(DeadLetter), dead_rows)
        return BatchResult(
            outgoing=outgoing + resend,
            handled=list(zip(fresh, decisions, strict=True)),
            dead_lettered=len(new_dlq),
            duplicates=len(duplicate_ids) + len(dlq_ids) - len(new_dlq),
            event_ids=[i.event_id for i in decoded],
        )

    def _dead_letters_again(self, conn: Connection, messages: list[RawMessage]) -> list[Outgoing]:
        """Redelivered poison: its dead letter again, headers included, from what was recorded.

        ``emitted_events`` keeps no headers, so the stored copy alone would reach the
        dead-letter topic without its reason and source coordinates.
        """
        table = DeadLetter.__table__
        found: list[Outgoing] = []
        for m in messages:  # poison is rare: one query each
            row = conn.execute(
                select(table.c.kind, table.c.reason).where(
                    table.c.consumer == self.stage.name,
                    table.c.source_topic == m.topic,
                    table.c.source_partition == m.partition,
                    table.c.source_offset == m.offset,
                )
            ).first()
            if row is None:
                found += _stored_emissions(conn, self.stage.name, [_dlq_event_id(m)])
            else:
                found.append(self._dead_letter_message(m, row.kind, row.reason))
        return found

    def _dead_letter_message(self, m: RawMessage, kind: str, reason: str) -> Outgoing:
        value = m.value or b""
        limit = self.settings.max_message_bytes - DLQ_HEADROOM_BYTES
        headers = [
            ("sakk.reason", reason.encode()),
            ("sakk.kind", kind.encode()),
            ("sakk.consumer", self.stage.name.encode()),
            ("sakk.source.topic", m.topic.encode()),
            ("sakk.source.partition", str(m.partition).encode()),
            ("sakk.source.offset", str(m.offset).encode()),
        ]
        if len(value) > limit:
            headers.append(("sakk.truncated_from_bytes", str(len(value)).encode()))
            value = value[:limit]
        return Outgoing(self.dlq_topic, m.key or b"", value, tuple(headers))


@dataclass(frozen=True, slots=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_type: int = 0  # 0 CreateTime (the producer's), 1 LogAppendTime (the broker's)

    @classmethod
    def of(cls, record: Any) -> RawMessage:
        """From a kafka-python ConsumerRecord."""
        return cls(
            record.topic, record.partition, record.offset, record.key, record.value,
            record.timestamp, tuple(record.headers or ()), record.timestamp_type,
        )  # fmt: skip


def _dlq_event_id(m: RawMessage) -> str:
    return dead_letter_event_id(m.topic, m.partition, m.offset)


def _handled_row(name: str, inbound: Inbound, decision: Handled, now: datetime) -> dict[str, Any]:
    return {
        "consumer": name, "event_id": inbound.event_id, "event_type": inbound.event_type,
        "payment_id": decision.payment_id, "topic": inbound.topic,
        "partition": inbound.partition, "offset": inbound.offset,
        "outcome": decision.outcome, "handled_at": now,
    }  # fmt: skip


def _handled_dlq_row(name: str, event_id: str, m: RawMessage, now: datetime) -> dict[str, Any]:
    return {
        "consumer": name, "event_id": event_id, "event_type": "undecodable",
        "payment_id": None, "topic": m.topic, "partition": m.partition, "offset": m.offset,
        "outcome": "dead_lettered", "handled_at": now,
    }  # fmt: skip


def _emitted_row(name: str, source_id: str, record: dict[str, Any], m: Outgoing) -> dict[str, Any]:
    return {
        "consumer": name, "source_event_id": source_id, "event_id": record["event_id"],
        "payment_id": record.get("payment_id"), "topic": m.topic, "key": m.key, "value": m.value,
    }  # fmt: skip


def _chunks(items: Sequence[str], size: int = MAX_IN_CLAUSE) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _already_handled(conn: Connection, consumer: str, event_ids: Sequence[str]) -> set[str]:
    table = HandledEvent.__table__
    seen: set[str] = set()
    for chunk in _chunks(list(event_ids)):
        rows = conn.execute(
            select(table.c.event_id).where(
                table.c.consumer == consumer, table.c.event_id.in_(chunk)
            )
        )
        seen.update(rows.scalars())
    return seen


def _stored_emissions(conn: Connection, consumer: str, source_ids: Sequence[str]) -> list[Outgoing]:
    table = EmittedEvent.__table__
    found: list[Outgoing] = []
    for chunk in _chunks(list(source_ids)):
        rows = conn.execute(
            select(table.c.topic, table.c.key, table.c.value)
            .where(
                tuple_(table.c.consumer, table.c.source_event_id).in_(
                    [(consumer, s) for s in chunk]
                )
            )
            .order_by(table.c.id)
        )
        found.extend(Outgoing(r.topic, r.key, r.value) for r in rows)
    return found


class ConsumerService:
    """Runs one stage against Kafka until stopped: the live loop around ``BatchProcessor``."""

    def __init__(
        self,
        stage: Stage,
        engine: Engine,
        codec: AvroCodec,
        settings: Settings,
        health: metrics.HealthState | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.stage = stage
        self.settings = settings
        self.processor = BatchProcessor(stage, engine, codec, settings)
        self.engine = engine
        self.health = health or metrics.HealthState()
        self.stop_event = stop_event or threading.Event()
        self._consumer: KafkaConsumer | None = None
        self._lag_partitions: set[TopicPartition] = set()
        self._producer: KafkaProducer | None = None

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        name = self.stage.name
        self._producer = make_producer(self.settings, client_id=f"sakk-{name}")
        self._consumer = make_consumer(
            self.settings,
            self.settings.group(name),
            self.stage.input_topics(),
            client_id=f"sakk-{name}",
        )
        log.info(
            "%s: consuming %s as group %s",
            name,
            self.stage.input_topics(),
            self.settings.group(name),
        )
        try:
            while not self.stop_event.is_set():
                self._poll_once()
        finally:
            self.health.set_ready(name, False)
            self._close()

    def _poll_once(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        polled = consumer.poll(
            timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.batch_max_records
        )
        self.health.set_ready(self.stage.name, bool(consumer.assignment()))
        if not polled:
            self._observe_lag()
            return
        raw = [RawMessage.of(r) for records in polled.values() for r in records]
        started = time.perf_counter()
        result = self._process_with_retry(raw)
        if result is None:
            self._rewind(polled)
            return
        try:
            send_all(self._producer, result.outgoing, self.settings.produce_timeout_s)
        except (KafkaProducerDeliveryError, KafkaError) as exc:
            log.warning("%s: produce failed (%s); rewinding to redeliver", self.stage.name, exc)
            self._rewind(polled)
            return
        self.processor.crash("after_produce")
        self._commit(polled)
        self._observe(raw, result, time.perf_counter() - started)

    def _process_with_retry(self, raw: list[RawMessage]) -> BatchResult | None:
        """Retry transient database faults with capped exponential backoff."""
        delay_s = 0.05
        cap_s = self.settings.db_retry_backoff_max_ms / 1000
        for attempt in range(1, self.settings.db_retry_max_attempts + 1):
            try:
                return self.processor.process(raw)
            except Exception as exc:
                if not (is_transient(exc) or isinstance(exc, SchemaStoreError)):
                    raise
                metrics.DB_RETRIES.labels(self.stage.name).inc()
                log.warning(
                    "%s: database unavailable (attempt %d/%d): %s",
                    self.stage.name,
                    attempt,
                    self.settings.db_retry_max_attempts,
                    str(exc).splitlines()[0],
                )
                if self.stop_event.wait(delay_s):
                    return None
                delay_s = min(delay_s * 2, cap_s)
        raise RuntimeError(
            f"{self.stage.name}: database unavailable after "
            f"{self.settings.db_retry_max_attempts} attempts; exiting without committing offsets"
        )

    def _rewind(self, polled: dict) -> None:
        consumer = self._consumer
        assert consumer is not None  # only called while running
        for tp, records in polled.items():
            consumer.seek(tp, records[0].offset)

    def _commit(self, polled: dict) -> None:
        offsets = {
            tp: OffsetAndMetadata(records[-1].offset + 1, "", -1) for tp, records in polled.items()
        }
        consumer = self._consumer
        assert consumer is not None  # only called while running
        try:
            consumer.commit(offsets)
        except CommitFailedError as exc:
            # Partitions moved to another member; it redelivers and dedupes.
            log.warning("%s: offset commit refused after rebalance: %s", self.stage.name, exc)

    def _observe(self, raw: list[RawMessage], result: BatchResult, seconds: float) -> None:
        name = self.stage.name
        log.debug(
            "%s: batch of %d in %.3f s: %d handled, %d duplicates, %d dead-lettered",
            name, len(raw), seconds, len(result.handled), result.duplicates, result.dead_lettered,
        )  # fmt: skip
        metrics.BATCH_SECONDS.labels(name).observe(seconds)
        metrics.BATCH_SIZE.labels(name).observe(len(raw))
        metrics.LAST_PROGRESS.labels(name).set(time.time())
        now = datetime.now(UTC)
        for inbound, handled in result.handled:
            metrics.MESSAGES.labels(name, inbound.topic, handled.outcome).inc()
            if handled.outcome == "settled":
                metrics.observe_settled(handled.events[0][1])
            if handled.channel:
                metrics.PAYMENT_OUTCOMES.labels(
                    name, handled.channel, handled.outcome, handled.reason
                ).inc()
            occurred = inbound.record.get("occurred_at")
            if isinstance(occurred, datetime):
                metrics.END_TO_END_SECONDS.labels(name, handled.outcome).observe(
                    max((now - occurred).total_seconds(), 0.0)
                )
        if result.duplicates:
            metrics.MESSAGES.labels(name, "", "duplicate").inc(result.duplicates)
        if result.dead_lettered:
            metrics.DEAD_LETTERS.labels(name, raw[0].topic, "any").inc(result.dead_lettered)
            metrics.MESSAGES.labels(name, raw[0].topic, "dead_lettered").inc(result.dead_lettered)
        self._observe_lag()

    def _observe_lag(self) -> None:
        """Lag per owned partition, from the last fetch's high watermark (no broker call)."""
        consumer = self._consumer
        assert consumer is not None
        owned = consumer.assignment()
        for tp in self._lag_partitions - owned:  # moved to another member: its series goes
            metrics.CONSUMER_LAG.remove(self.stage.name, tp.topic, str(tp.partition))
        self._lag_partitions = set(owned)
        for tp in owned:
            high = consumer.highwater(tp)
            if high is not None:
                lag = max(high - consumer.position(tp), 0)
                metrics.CONSUMER_LAG.labels(self.stage.name, tp.topic, str(tp.partition)).set(lag)

    def _close(self) -> None:
        timeout = self.settings.shutdown_timeout_s
        if self._producer is not None:
            self._producer.close(timeout=timeout)
        if self._consumer is not None:
            self._consumer.close()


def install_signal_handlers(stop_event: threading.Event) -> None:
    """SIGTERM and SIGINT finish the batch in hand, commit, and stop."""

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the batch in hand, then stopping", signum)
        stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)


__all__ = [
    "BatchProcessor",
    "ConsumerService",
    "DeadLetterReason",
    "Handled",
    "Inbound",
    "RawMessage",
    "Stage",
    "TopicPartition",
    "derived_event_id",
]
