"""The raw hop: consume and re-produce with no work, the ceiling of any kafka-python consumer."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kafka.structs import OffsetAndMetadata

from engine.config import Settings
from engine.kafka.client import Outgoing, create_topics, make_consumer, make_producer, send_all

PREFILL_CHUNK = 5_000
HOP_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class RawHopResult:
    messages: int
    message_bytes: int
    partitions: int
    seconds: float

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def measure_raw_hop(settings: Settings, messages: int, message_bytes: int) -> RawHopResult:
    """Prefill ``messages`` equally sized messages, then time a consume -> produce -> commit loop.

    The loop is the same shape as a Sakk consumer's (poll a batch, produce it, wait for
    acks, commit offsets) minus decoding and the database.
    """
    source, sink = settings.topic("bench-raw-in"), settings.topic("bench-raw-out")
    create_topics(settings, [source, sink])
    producer = make_producer(settings, "bench-raw-prefill")
    payload = b"x" * message_bytes
    for start in range(0, messages, PREFILL_CHUNK):
        batch = [
            Outgoing(source, f"acct-{i % 997}".encode(), payload)
            for i in range(start, min(start + PREFILL_CHUNK, messages))
        ]
        send_all(producer, batch, settings.produce_timeout_s)
    consumer = make_consumer(settings, settings.group("bench-raw"), [source])
    hop_producer = make_producer(settings, "bench-raw-hop")
    moved = 0
    started: float | None = None
    deadline = time.monotonic() + HOP_TIMEOUT_S
    try:
        while moved < messages and time.monotonic() < deadline:
            polled = consumer.poll(
                timeout_ms=settings.poll_timeout_ms, max_records=settings.batch_max_records
            )
            if not polled:
                continue
            if started is None:
                started = time.perf_counter()
            out = [Outgoing(sink, r.key, r.value) for records in polled.values() for r in records]
            send_all(hop_producer, out, settings.produce_timeout_s)
            consumer.commit(
                {tp: OffsetAndMetadata(rs[-1].offset + 1, "", -1) for tp, rs in polled.items()}
            )
            moved += len(out)
        seconds = time.perf_counter() - (started or time.perf_counter())
    finally:
        consumer.close()
        hop_producer.close()
        producer.close()
    return RawHopResult(moved, message_bytes, settings.topic_partitions, seconds)
