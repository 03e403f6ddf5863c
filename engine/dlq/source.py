"""The original message where it still sits: its source topic, at its recorded coordinates.

The ledger keeps a dead letter's bytes but not its headers, and a bank's signature
travels in headers: only the source topic still holds it (until its retention ends).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kafka import TopicPartition
from kafka.errors import KafkaError

from engine.config import Settings
from engine.kafka.client import make_consumer
from engine.kafka.exceptions import KafkaPlumbingError

SOURCE_READ_TIMEOUT_S = 10.0  # one record at a known offset: seconds, not minutes
POLL_TIMEOUT_MS = 200


@dataclass(frozen=True, slots=True)
class SourceRecord:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def read_source_record(
    settings: Settings,
    topic: str,
    partition: int,
    offset: int,
    timeout_s: float = SOURCE_READ_TIMEOUT_S,
) -> SourceRecord | None:
    """The record at ``offset``; None when the topic no longer holds it (retention, deletion)."""
    if not 0 < timeout_s <= 600:
        raise ValueError(f"timeout_s={timeout_s} must be in (0, 600]")
    try:
        consumer = make_consumer(settings, group_id=None, client_id="sakk-dlq-source")
    except KafkaError as exc:
        raise KafkaPlumbingError(f"cannot reach {settings.kafka_bootstrap_servers}: {exc}") from exc
    try:
        if partition not in (consumer.partitions_for_topic(topic) or set()):
            return None
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=1).get(tp)
            if records:  # past the log start, the consumer resets to the earliest record
                r = records[0]
                if r.offset != offset:
                    return None
                headers = tuple((name, value or b"") for name, value in r.headers or ())
                return SourceRecord(r.key, r.value, headers)
        return None
    except KafkaError as exc:
        raise KafkaPlumbingError(f"cannot read {topic} partition {partition}: {exc}") from exc
    finally:
        consumer.close(autocommit=False)
