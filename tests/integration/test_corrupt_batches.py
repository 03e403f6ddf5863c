"""A record batch the client cannot read is dead-lettered by its offsets and skipped.

Reproduced through the embedded broker: a producer that sets the timestamp-type bit in
its record batch attributes (LogAppendTime, which only a broker may set) makes the
broker store a batch whose CRC no longer matches, and kafka-python's fetcher raises
``CorruptRecordError`` on it at every poll. The validator dead-letters its offsets
(kind ``corrupt_batch``), counts it in a metric, goes on after it, and settles the
payments before and behind it on the same partition.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from kafka import KafkaProducer
from kafka.record.default_records import DefaultRecordBatchBuilder
from prometheus_client import REGISTRY
from sqlalchemy import select

from engine.kafka.security import kafka_security_options
from engine.ledger.models import DeadLetter, HandledEvent, Payment, table_of
from sakk.app import run_consumers
from tests.factories import AMINA, KARIM, YOUSSEF, payment, switch_id

pytestmark = pytest.mark.integration

CORRUPT_RECORDS = 3


@contextmanager
def log_append_time_bit_set() -> Iterator[None]:
    """Record batches built meanwhile claim LogAppendTime, a bit only a broker may set."""
    original = DefaultRecordBatchBuilder._get_attributes

    def with_bit(self, include_compression_type=True):  # type: ignore[no-untyped-def]
        return original(self, include_compression_type) | self.TIMESTAMP_TYPE_MASK

    DefaultRecordBatchBuilder._get_attributes = with_bit  # type: ignore[method-assign]
    try:
        yield
    finally:
        DefaultRecordBatchBuilder._get_attributes = original  # type: ignore[method-assign]


def publish_one_batch_with_the_bit(flow, records) -> list[int]:
    """One record batch of signed payments, its attributes claiming LogAppendTime."""
    messages = [
        flow.signed_message(
            r["payer_account"].encode(), flow.codec.encode("PaymentInitiated", r), r["payer_bank"]
        )
        for r in records
    ]
    with log_append_time_bit_set():
        producer = KafkaProducer(
            bootstrap_servers=flow.settings.kafka_bootstrap_servers,
            linger_ms=200,  # the records go in one batch
            acks="all",
            **kafka_security_options(flow.settings),
        )
        futures = [
            producer.send(m.topic, key=m.key, value=m.value, headers=list(m.headers))
            for m in messages
        ]
        producer.flush()
        offsets = [f.get(timeout=30).offset for f in futures]
        producer.close()
    return offsets


def corrupt_batches_counted(topic: str) -> float:
    value = REGISTRY.get_sample_value(
        "sakk_corrupt_record_batches_total", {"consumer": "validator", "source_topic": topic}
    )
    return value or 0.0


def test_an_unreadable_record_batch_is_dead_lettered_by_offset_and_skipped(
    flow_factory, database_url
):
    flow = flow_factory(database_url, consumers=(), topic_partitions=1)
    topic = flow.settings.topic("initiated")
    before, behind = payment(AMINA, KARIM, 1_000), payment(KARIM, AMINA, 2_000)
    flow.publish([before])
    lost = [payment(YOUSSEF, KARIM, 100 + i) for i in range(CORRUPT_RECORDS)]
    offsets = publish_one_batch_with_the_bit(flow, lost)
    assert offsets == [1, 2, 3]  # one batch: its records follow each other
    flow.publish([behind])
    counted = corrupt_batches_counted(topic)

    flow.threads = run_consumers(flow.settings, ("validator", "settlement"), flow.stop_event)
    p = table_of(Payment)

    def settled() -> bool:
        with flow.engine.connect() as conn:
            ids = [switch_id(before), switch_id(behind)]
            states = conn.execute(select(p.c.state).where(p.c.payment_id.in_(ids))).all()
        return [s for (s,) in states] == ["SETTLED", "SETTLED"]

    flow.wait_until(settled)  # raises if a stage thread died on the way
    d, h = table_of(DeadLetter), table_of(HandledEvent)
    with flow.engine.connect() as conn:
        letters = conn.execute(
            select(d.c.source_offset, d.c.kind, d.c.reason).order_by(d.c.source_offset)
        ).all()
        outcomes = conn.execute(
            select(h.c.offset, h.c.outcome).where(h.c.consumer == "validator").order_by(h.c.offset)
        ).all()
    assert [(o, k) for o, k, _ in letters] == [(o, "corrupt_batch") for o in offsets]
    assert all("offsets 1..3" in reason for _, _, reason in letters)
    # in = out + rejected + dead-lettered: five offsets in, two validated, three dead-lettered.
    assert outcomes == [(0, "validated"), (1, "dead_lettered"), (2, "dead_lettered"),
                        (3, "dead_lettered"), (4, "validated")]  # fmt: skip
    assert corrupt_batches_counted(topic) == counted + 1
    assert all(t.is_alive() for t in flow.threads)
