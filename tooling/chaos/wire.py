"""Reads topics back, start to end, after a run: what actually went over the wire."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from engine.config import Settings
from engine.kafka.client import make_admin, make_consumer, partitions_of
from tooling.chaos.exceptions import ChaosError

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
    """Every record of ``topics`` up to their high watermarks, in partition order.

    The end is the high watermark of fetch responses, not ``ListOffsets``: the embedded
    broker answers ``ListOffsets(latest)`` with the last batch's base offset + 1, short
    of the end whenever a producer batched several records.
    """
    consumer = make_consumer(settings, group_id=None, client_id="sakk-chaos-reader")
    try:
        partitions = [tp for topic in topics for tp in partitions_of(consumer, topic)]
        found: dict[str, list[WireRecord]] = {topic: [] for topic in topics}
        if not partitions:
            return found
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        pending = set(partitions)
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
                )
            pending = {tp for tp in pending if not _at_end(consumer, tp)}
        return found
    finally:
        consumer.close(autocommit=False)


def _at_end(consumer: KafkaConsumer, tp: TopicPartition) -> bool:
    high = consumer.highwater(tp)
    return high is not None and consumer.position(tp) >= high


def high_watermarks(
    consumer: KafkaConsumer, partitions: Sequence[TopicPartition], timeout_s: float
) -> dict[TopicPartition, int]:
    """End offsets as fetch responses report them (see ``read_topics`` for why)."""
    consumer.assign(list(partitions))
    consumer.seek_to_beginning(*partitions)
    deadline = time.monotonic() + timeout_s
    while any(consumer.highwater(tp) is None for tp in partitions):
        if time.monotonic() > deadline:
            raise ChaosError(f"no fetch response for {partitions} within {timeout_s:.0f}s")
        consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=1)
    return {tp: int(consumer.highwater(tp)) for tp in partitions}


def committed_lag(settings: Settings, group: str, topics: Sequence[str]) -> dict[str, int]:
    """Messages of ``topics`` not yet covered by ``group``'s committed offsets, per partition."""
    admin = make_admin(settings, "sakk-chaos-offsets")
    consumer = make_consumer(settings, group_id=None, client_id="sakk-chaos-offsets")
    try:
        partitions: list[TopicPartition] = [tp for t in topics for tp in partitions_of(consumer, t)]
        ends = high_watermarks(consumer, partitions, READ_TIMEOUT_S)
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
