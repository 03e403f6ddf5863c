"""A payment's life confirmed against the topics.

The ledger knows where every consumed event sat (``handled_events``: topic,
partition, offset) and every event produced (``emitted_events``); the read side
(``engine.read.trace``) reads them. :func:`scan_topics` reads those records back
from the broker and confirms each one holds the event the ledger says it does, and
finds the events nobody consumes (``payments.notified``) by their key's partition
and time. It needs the events' keys as stored: scan a :class:`PaymentTrace` (from
``read_trace``) or an auditor's view, then show the view of whoever asked.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kafka import TopicPartition
from kafka.partitioner.default import murmur2

from engine.audit.offsets import OffsetLocator
from engine.config import Settings
from engine.events import EVENTS
from engine.kafka.client import make_consumer
from engine.read.trace import (
    PaymentTrace,
    TraceView,
    find_payment_ids,
    read_trace,
    trace_payment,
)
from engine.serialization import AvroCodec, DecodeError
from engine.times import as_utc, from_ms, to_ms

__all__ = [
    "PaymentTrace", "TraceView", "find_payment_ids", "read_trace", "scan_topics", "trace_payment",
]  # fmt: skip

SCAN_MAX_RECORDS = 20_000  # per topic partition searched for an unconsumed event
SCAN_LOOKBACK = timedelta(minutes=1)  # before the first handling of its source event


def scan_topics(
    settings: Settings,
    codec: AvroCodec,
    trace: PaymentTrace | TraceView,
    max_records: int = SCAN_MAX_RECORDS,
) -> None:
    """Confirm each event on its topic; find unconsumed ones. Fills record_time and on_topic."""
    consumer = make_consumer(settings, group_id=None, client_id="sakk-trace")
    try:
        for event in trace.events:
            locator = OffsetLocator(consumer, event["topic"])
            if event["partition"] is not None and event["offset"] is not None:
                _confirm(locator, codec, event)
            else:
                _search(locator, codec, event, max_records)
    finally:
        consumer.close(autocommit=False)


def _decoded_event_id(codec: AvroCodec, value: bytes | None) -> str | None:
    """The event id of a record as the ledger knows it: a bank's in the bank's namespace."""
    try:
        event = codec.decode(value)
    except DecodeError:
        return None
    declared = EVENTS.get(event.event_type)
    record = declared.as_switch_knows(event.record) if declared else event.record
    return str(record.get("event_id"))


def _confirm(locator: OffsetLocator, codec: AvroCodec, event: dict[str, Any]) -> None:
    tp = TopicPartition(event["topic"], int(event["partition"]))
    if not locator.consumer.partitions_for_topic(tp.topic):
        event["on_topic"] = "topic missing"
        return
    _start, end = locator.bounds(tp)
    record = _record_at(locator, tp, int(event["offset"]), end)
    if record is None:
        event["on_topic"] = "record gone (retention?)"
        return
    event["record_time"] = from_ms(record.timestamp)
    found = _decoded_event_id(codec, record.value)
    event["on_topic"] = "confirmed" if found == event["event_id"] else f"MISMATCH: holds {found}"


def _record_at(locator: OffsetLocator, tp: TopicPartition, offset: int, end: int) -> Any:
    if offset >= end:
        return None
    locator.consumer.seek(tp, offset)
    for _ in range(50):
        records = locator.consumer.poll(timeout_ms=200, max_records=1).get(tp)
        if records:
            return records[0] if records[0].offset == offset else None
    return None


def _search(
    locator: OffsetLocator, codec: AvroCodec, event: dict[str, Any], max_records: int
) -> None:
    """Find an unconsumed event in its key's partition, from just before its source was handled."""
    partitions = locator.consumer.partitions_for_topic(event["topic"])
    if not partitions or event.get("key") is None:
        event["on_topic"] = "topic missing" if not partitions else "no key"
        return
    # The producers are kafka-python's: murmur2 of the key, like the Java client.
    partition = (murmur2(event["key"]) & 0x7FFFFFFF) % len(partitions)
    tp = TopicPartition(event["topic"], partition)
    log_start, end = locator.bounds(tp)
    since = event.get("source_handled_at")
    start = log_start
    if since is not None:
        start, _ = locator.first_at_or_after_time(
            tp, to_ms(as_utc(since) - SCAN_LOOKBACK), log_start, end
        )
    locator.consumer.seek(tp, start)
    read = 0
    while read < max_records:
        records = locator.consumer.poll(timeout_ms=500).get(tp)
        if not records:
            if locator.consumer.position(tp) >= end:
                break
            continue
        for r in records:
            read += 1
            if r.offset >= end:
                break
            if r.key == event["key"] and _decoded_event_id(codec, r.value) == event["event_id"]:
                event.update(
                    partition=partition,
                    offset=r.offset,
                    record_time=from_ms(r.timestamp),
                    on_topic="found by scan",
                )
                return
        if records[-1].offset >= end - 1:
            break
    event["on_topic"] = f"not found in {read} records of partition {partition}"
