"""The live loop around the batch processor: poll, process, produce, commit offsets.

Offsets are committed only after the batch's transaction committed and every message it
emits was acknowledged (``acks=all``); a failed produce rewinds to the batch's first
offsets, so the batch is redelivered and the outbox produces the same events again.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, CorruptRecordError, KafkaError
from kafka.structs import OffsetAndMetadata
from sqlalchemy import Engine

from engine import metrics
from engine.config import Settings
from engine.domain.outcomes import Outcome
from engine.kafka.client import make_consumer, make_producer, send_all
from engine.kafka.corrupt import (
    BatchProber,
    CorruptBatch,
    UnreadableBatchError,
    corrupt_batch_of,
    next_readable_offset,
)
from engine.kafka.exceptions import KafkaProducerDeliveryError
from engine.pipeline.contract import Retryable, Stage
from engine.pipeline.crash import crash_hook, crash_on_message
from engine.pipeline.dead_letters import CORRUPT_BATCH_KIND, POISON_KIND
from engine.pipeline.messages import RawMessage
from engine.pipeline.processor import BatchProcessor, BatchResult
from engine.pipeline.quarantine import InHandLedger, Unit, poison_reason
from engine.serialization import AvroCodec
from engine.topology import Observer

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_CORRUPT_OFFSETS = 200_000  # offsets of one unreadable batch (1 MB of 5-byte records)


class _Moved(ConsumerRebalanceListener):
    """Partitions that moved may have been marked by another instance: read their marks."""

    def __init__(self, in_hand: InHandLedger) -> None:
        self.in_hand = in_hand

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.in_hand.forget()

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.in_hand.forget()


class ConsumerService:
    """Runs one stage against Kafka until stopped: the live loop around ``BatchProcessor``."""

    def __init__(
        self,
        stage: Stage[Any],
        engine: Engine,
        codec: AvroCodec,
        settings: Settings,
        health: metrics.HealthState | None = None,
        stop_event: threading.Event | None = None,
        observes: Mapping[str, Observer] | None = None,
        on_committed: Sequence[Callable[[], None]] = (),
    ) -> None:
        """``observes``: emitted event type name -> what counts a batch's records of it
        (the stage's declaration, engine.topology); ``on_committed``: what a batch's
        commit wakes (its companions)."""
        self.stage = stage
        self.settings = settings
        self.observes = dict(observes or {})
        self.processor = BatchProcessor(
            stage, engine, codec, settings, crash_hook(settings), crash_on_message(settings),
            on_committed,
        )  # fmt: skip
        self.in_hand = InHandLedger(stage.name, engine)
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
            self.settings, self.settings.group(name), client_id=f"sakk-{name}"
        )
        self._consumer.subscribe(list(self.stage.input_topics()), listener=_Moved(self.in_hand))
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
        try:
            polled = consumer.poll(
                timeout_ms=self.settings.poll_timeout_ms,
                max_records=self.settings.batch_max_records,
            )
        except CorruptRecordError as exc:
            self._skip_corrupt(corrupt_batch_of(exc))
            return
        self.health.set_ready(self.stage.name, bool(consumer.assignment()))
        if not polled:
            self._observe_lag()
            return
        by_partition = {
            (tp.topic, tp.partition): [RawMessage.of(r) for r in records]
            for tp, records in polled.items()
        }
        units = self._with_db_retry(lambda: self.in_hand.units(by_partition))
        if units is None:
            self._rewind(polled)
            return
        for i, unit in enumerate(units):
            if not self._handle(unit):
                # This unit and those after it are polled again; the ones before are committed.
                self._rewind_units(units[i:])
                return

    def _handle(self, unit: Unit) -> bool:
        """Mark, handle, produce, commit offsets; False when the unit must be polled again."""
        started = time.perf_counter()
        if self._with_db_retry(lambda: self.in_hand.mark(unit)) is None:
            return False
        for m, deaths in unit.poison:
            metrics.POISON_QUARANTINED.labels(self.stage.name, m.topic).inc()
            log.error(
                "%s: %s:%d:%d killed its consumer %d times alone; dead-lettered as poison",
                self.stage.name, m.topic, m.partition, m.offset, deaths,
            )  # fmt: skip
        for topic, partition in unit.died:
            metrics.DEATHS_FOUND.labels(self.stage.name, topic).inc()
            log.warning(
                "%s: a process died handling %s:%d; handling its offsets one at a time",
                self.stage.name, topic, partition,
            )  # fmt: skip
        result = self._process_with_retry(unit)
        if result is None:
            self._clear_marks(unit)  # a clean stop: nothing died
            return False
        try:
            send_all(self._producer, result.outgoing, self.settings.produce_timeout_s)
        except (KafkaProducerDeliveryError, KafkaError) as exc:
            metrics.PRODUCE_FAILURES.labels(self.stage.name).inc()
            log.warning("%s: produce failed (%s); rewinding to redeliver", self.stage.name, exc)
            return False
        self.in_hand.committed(unit)
        self.processor.crash("after_produce")
        self._commit(unit)
        raw = unit.messages + [m for m, _ in unit.poison]
        self._observe(raw, result, time.perf_counter() - started)
        return True

    def _skip_corrupt(self, batch: CorruptBatch) -> None:
        """Dead-letter an unreadable record batch's offsets, then go on after it.

        Each offset is one dead letter (kind ``corrupt_batch``, the range in its reason),
        so in = out + rejected + dead-lettered still holds; the offsets are committed
        past it, so a restart does not meet it again.
        """
        consumer = self._consumer
        assert consumer is not None
        tp = TopicPartition(batch.topic, batch.partition)
        first = consumer.position(tp)
        prober = BatchProber(self.settings, batch.topic, batch.partition)
        try:
            after = next_readable_offset(batch.base_offset, first, prober.high_watermark(), prober)
        finally:
            prober.close()
        if not 0 < after - first <= MAX_CORRUPT_OFFSETS:
            raise UnreadableBatchError(
                f"{batch.topic}:{batch.partition}: unreadable offsets {first}..{after - 1} "
                f"(at most {MAX_CORRUPT_OFFSETS} are dead-lettered at once)"
            )
        reason = (
            f"record batch unreadable (failed the client's CRC check): offsets {first}.."
            f"{after - 1} of {batch.topic}:{batch.partition} ({after - first}) skipped"
        )
        log.error("%s: %s", self.stage.name, reason)
        lost = [
            RawMessage(batch.topic, batch.partition, o, None, None, 0) for o in range(first, after)
        ]
        result = self._with_db_retry(
            lambda: self.processor.dead_letter(lost, CORRUPT_BATCH_KIND, reason)
        )
        if result is None:
            return  # stopping: the next start meets the batch again
        try:
            send_all(self._producer, result.outgoing, self.settings.produce_timeout_s)
        except (KafkaProducerDeliveryError, KafkaError) as exc:
            metrics.PRODUCE_FAILURES.labels(self.stage.name).inc()
            log.warning("%s: produce failed (%s); the batch is met again", self.stage.name, exc)
            return  # its dead letters are recorded: the next pass sends the same ones again
        consumer.seek(tp, after)
        self._commit_offsets({tp: after})
        metrics.CORRUPT_BATCHES.labels(self.stage.name, batch.topic).inc()
        metrics.CORRUPT_OFFSETS_SKIPPED.labels(self.stage.name, batch.topic).inc(after - first)
        metrics.DEAD_LETTERS.labels(self.stage.name, batch.topic, CORRUPT_BATCH_KIND).inc(
            result.dead_lettered
        )
        metrics.MESSAGES.labels(self.stage.name, batch.topic, Outcome.DEAD_LETTERED).inc(
            result.dead_lettered
        )

    def _process_with_retry(self, unit: Unit) -> BatchResult | None:
        if unit.poison:
            message, deaths = unit.poison[0]
            return self._with_db_retry(
                lambda: self.processor.dead_letter(
                    [message], POISON_KIND, poison_reason(deaths), unit.clears
                )
            )
        return self._with_db_retry(lambda: self.processor.process(unit.messages, unit.clears))

    def _with_db_retry(self, work: Callable[[], T]) -> T | None:
        """Retry transient database faults with capped exponential backoff; None if stopped."""
        delay_s = 0.05
        cap_s = self.settings.db_retry_backoff_max_ms / 1000
        for attempt in range(1, self.settings.db_retry_max_attempts + 1):
            try:
                return work()
            except Exception as exc:
                if not isinstance(exc, Retryable) and not Retryable.covers(exc):
                    raise
                metrics.DB_RETRIES.labels(self.stage.name).inc()
                log.warning(
                    "%s: database unavailable (attempt %d/%d): %s",
                    self.stage.name,
                    attempt,
                    self.settings.db_retry_max_attempts,
                    exc,
                )
                if self.stop_event.wait(delay_s):
                    return None
                delay_s = min(delay_s * 2, cap_s)
        raise RuntimeError(
            f"{self.stage.name}: database unavailable after "
            f"{self.settings.db_retry_max_attempts} attempts; exiting without committing offsets"
        )

    def _clear_marks(self, unit: Unit) -> None:
        """A stop in the middle of a unit is no death: clear its marks if the database lets us."""
        try:
            with self.engine.begin() as conn:
                self.processor.recorder.record(conn, unit.clears)
        except Exception as exc:  # the database is why we stopped: the next start counts one
            log.warning("%s: could not clear the offsets in hand: %s", self.stage.name, exc)

    def _rewind(self, polled: dict) -> None:
        consumer = self._consumer
        assert consumer is not None  # only called while running
        for tp, records in polled.items():
            consumer.seek(tp, records[0].offset)

    def _rewind_units(self, units: list[Unit]) -> None:
        """Poll these units' partitions again from their first offsets."""
        consumer = self._consumer
        assert consumer is not None  # only called while running
        first: dict[tuple[str, int], int] = {}
        for unit in units:
            for tp, (lo, _hi) in unit.partitions.items():
                first[tp] = min(lo, first.get(tp, lo))
        for (topic, partition), offset in first.items():
            consumer.seek(TopicPartition(topic, partition), offset)

    def _commit(self, unit: Unit) -> None:
        """Commit the unit's offsets; a message handled alone: its partition resumes after it."""
        consumer = self._consumer
        assert consumer is not None  # only called while running
        spans = unit.partitions
        if unit.alone:
            for (topic, partition), (_lo, hi) in spans.items():
                consumer.seek(TopicPartition(topic, partition), hi + 1)  # the rest, polled again
        self._commit_offsets({TopicPartition(t, p): hi + 1 for (t, p), (_lo, hi) in spans.items()})

    def _commit_offsets(self, next_offsets: dict[TopicPartition, int]) -> None:
        consumer = self._consumer
        assert consumer is not None  # only called while running
        offsets = {tp: OffsetAndMetadata(o, "", -1) for tp, o in next_offsets.items()}
        try:
            consumer.commit(offsets)
        except CommitFailedError as exc:
            # Partitions moved to another member; it redelivers and dedupes.
            metrics.OFFSET_COMMITS_REFUSED.labels(self.stage.name).inc()
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
        messages: Counter[tuple[str, str]] = Counter()
        outcomes: Counter[tuple[str, str, str]] = Counter()
        observed: dict[str, list[dict[str, Any]]] = {event: [] for event in self.observes}
        for inbound, handled in result.handled:  # counted per batch: one inc per label set
            messages[(inbound.topic, handled.outcome)] += 1
            for emit in handled.emits:
                if emit.event.name in observed:
                    observed[emit.event.name].append(emit.record)
            if handled.channel:
                outcomes[(handled.channel, handled.outcome, handled.reason)] += 1
            occurred = inbound.record.get("occurred_at")
            if isinstance(occurred, datetime):
                metrics.END_TO_END_SECONDS.labels(name, handled.outcome).observe(
                    max((now - occurred).total_seconds(), 0.0)
                )
        for event_name, records in observed.items():
            self.observes[event_name](records)
        for (topic, outcome), count in messages.items():
            metrics.MESSAGES.labels(name, topic, outcome).inc(count)
        for (channel, outcome, reason), count in outcomes.items():
            metrics.PAYMENT_OUTCOMES.labels(name, channel, outcome, reason).inc(count)
        if result.duplicates:
            metrics.MESSAGES.labels(name, "", Outcome.DUPLICATE).inc(result.duplicates)
        if result.dead_lettered:
            metrics.DEAD_LETTERS.labels(name, raw[0].topic, "any").inc(result.dead_lettered)
            metrics.MESSAGES.labels(name, raw[0].topic, Outcome.DEAD_LETTERED).inc(
                result.dead_lettered
            )
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
