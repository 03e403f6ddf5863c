"""Reads topics back, start to end, after a run: what actually went over the wire."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from kafka import KafkaAdminClient, TopicPartition

from engine.chaos.exceptions import ChaosError
from engine.config import Settings
from engine.kafka.client import make_consumer, partitions_of

READ_TIMEOUT_S = 120.0
POLL_TIMEOUT_MS = 500


@dataclass(frozen=True, slots=True)
class WireRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def read_topics(
    settings: Settings, topics: Sequence[str], timeout_s: float = READ_TIMEOUT_S
) -> dict[str, list[WireRecord]]:
    """Every record of ``topics`` up to their end offsets of now, in partition order."""
    consumer = make_consumer(settings, group_id=None, client_id="sakk-chaos-reader")
    try:
        partitions = [tp for topic in topics for tp in partitions_of(consumer, topic)]
        found: dict[str, list[WireRecord]] = {topic: [] for topic in topics}
        if not partitions:
            return found
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            if time.monotonic() > deadline:
                raise ChaosError(
                    f"could not read {sorted(map(str, pending))} to the end within {timeout_s:.0f}s"
                )
            for tp, records in consumer.poll(timeout_ms=POLL_TIMEOUT_MS).items():
                found[tp.topic].extend(
                    WireRecord(
                        r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers or ())
                    )
                    for r in records
                    if r.offset < ends[tp]
                )
            pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
        return found
    finally:
        consumer.close(autocommit=False)


def committed_lag(settings: Settings, group: str, topics: Sequence[str]) -> dict[str, int]:
    """Messages of ``topics`` not yet covered by ``group``'s committed offsets, per partition."""
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id="sakk-chaos-offsets",
        request_timeout_ms=settings.request_timeout_ms,
    )
    consumer = make_consumer(settings, group_id=None, client_id="sakk-chaos-offsets")
    try:
        partitions: list[TopicPartition] = [tp for t in topics for tp in partitions_of(consumer, t)]
        ends = consumer.end_offsets(partitions)
        committed = admin.list_group_offsets({group: partitions}).get(group, {})
        lag = {}
        for tp in partitions:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            if ends[tp] > done:
                lag[f"{tp.topic}[{tp.partition}]"] = ends[tp] - done
        return lag
    finally:
        consumer.close(autocommit=False)
        admin.close()
