"""``SettlementWindowClosed`` on ``payments.windows``: the close as an event, and a chain anchor.

The event is Avro single-object encoded like every Sakk event; its writer schema is
the release's own (approved at start-up like every schema under ``schemas/``), and a
reader with the ledger also decodes the versions approved there. It has its own small
registry: the stage codecs neither produce nor consume it.

It carries every chain's head at the close (``chain_heads``); ``chain_seq`` and
``chain_hash`` stay chain 0's head, so readers of the first version still read it,
and events of that version (no ``chain_heads``) are read with an empty list.

``SettlementWindowChanged`` on ``settlement.windows`` (declared in ``engine.events``) is
each lifecycle row of a window (``engine.audit.window_lifecycle``) as an event, keyed by
the window; the auditor replays them (``replay_states``) and compares with the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.audit.offsets import OffsetLocator, PartitionRange
from engine.audit.reader import RangeReader
from engine.audit.window_lifecycle import WindowEventRow
from engine.audit.windows import WindowReport
from engine.config import Settings
from engine.events import SETTLEMENT_WINDOW_CHANGED
from engine.kafka.client import Outgoing, create_topics, make_consumer, make_producer, send_all
from engine.serialization import ApprovedSchemaSource, AvroCodec, DecodeError, SchemaRegistry

EVENT_TYPE = "SettlementWindowClosed"
SCHEMA_FILE = "settlement_window_closed.avsc"
WINDOWS_TOPIC = "windows"


def windows_topic(settings: Settings) -> str:
    return settings.topic(WINDOWS_TOPIC)


def _schema_text(settings: Settings) -> str:
    return (settings.schemas_dir / SCHEMA_FILE).read_text(encoding="utf-8")


def window_codec(settings: Settings, approved: ApprovedSchemaSource | None = None) -> AvroCodec:
    """The event's codec; with ``approved`` it also reads the other approved versions."""
    return AvroCodec(SchemaRegistry({EVENT_TYPE: _schema_text(settings)}), approved)


def closed_event(report: WindowReport) -> dict[str, Any]:
    close = report.close
    if close is None:
        raise ValueError(f"window {report.window.label} is not closed")
    return {
        "event_id": close.event_id, "window": report.window.label,
        "window_start": report.window.start, "window_end": report.window.end,
        "window_hours": report.window.hours, "closed_at": close.closed_at,
        "chain_seq": close.chain_seq, "chain_hash": close.chain_hash, "postings": close.postings,
        "chain_heads": close.heads_list(),
        "positions": [
            {"bank_code": r["bank_code"], "currency": r["currency"],
             "gross_debits_minor": int(r["gross_debits_minor"]),
             "gross_credits_minor": int(r["gross_credits_minor"]), "net_minor": int(r["net_minor"])}
            for r in report.recorded
        ],
    }  # fmt: skip


def publish_close(settings: Settings, report: WindowReport) -> str:
    """Produce the window's closed event (acks=all); returns the topic. Safe to repeat."""
    topic = windows_topic(settings)
    create_topics(settings, [topic])
    value = window_codec(settings).encode(EVENT_TYPE, closed_event(report), validate=True)
    producer = make_producer(settings, client_id="sakk-settlement")
    try:
        send_all(
            producer,
            [Outgoing(topic, report.window.label.encode(), value)],
            settings.produce_timeout_s,
        )
    finally:
        producer.close(timeout=settings.produce_timeout_s)
    return topic


def read_closed_events(
    settings: Settings, approved: ApprovedSchemaSource | None = None
) -> list[dict[str, Any]]:
    """Every window-closed event on the topic (none when the topic does not exist)."""
    # earlier versions: those approved in the ledger
    return _read_events(settings, windows_topic(settings), window_codec(settings, approved))


# -- the lifecycle: SettlementWindowChanged on settlement.windows ---------------------------


def lifecycle_codec(settings: Settings, approved: ApprovedSchemaSource | None = None) -> AvroCodec:
    event = SETTLEMENT_WINDOW_CHANGED
    text = (settings.schemas_dir / event.schema_file).read_text(encoding="utf-8")
    return AvroCodec(SchemaRegistry({event.name: text}), approved)


def publish_transitions(settings: Settings, rows: Sequence[WindowEventRow]) -> str:
    """Produce each row's ``SettlementWindowChanged`` (acks=all), keyed by its window, in
    seq order; returns the topic. Safe to repeat: a row's event id never changes."""
    event = SETTLEMENT_WINDOW_CHANGED
    topic = event.topic(settings)
    create_topics(settings, [topic])
    codec = lifecycle_codec(settings)
    messages = [
        Outgoing(topic, event.key(row.as_event()),
                 codec.encode(event.name, row.as_event(), validate=True))
        for row in rows
    ]  # fmt: skip
    producer = make_producer(settings, client_id="sakk-settlement")
    try:
        send_all(producer, messages, settings.produce_timeout_s)
    finally:
        producer.close(timeout=settings.produce_timeout_s)
    return topic


def read_transition_events(
    settings: Settings, approved: ApprovedSchemaSource | None = None
) -> list[dict[str, Any]]:
    """Every ``SettlementWindowChanged`` on its topic (none when the topic does not exist)."""
    topic = SETTLEMENT_WINDOW_CHANGED.topic(settings)
    return _read_events(settings, topic, lifecycle_codec(settings, approved))


def _read_events(settings: Settings, topic: str, codec: AvroCodec) -> list[dict[str, Any]]:
    consumer = make_consumer(settings, group_id=None, client_id="sakk-audit")
    try:
        if not consumer.partitions_for_topic(topic):
            return []
        locator = OffsetLocator(consumer, topic)
        ranges = []
        for tp in locator.partitions():
            start, end = locator.bounds(tp)
            ranges.append(PartitionRange(tp.partition, start, end, start, "log-start"))
        events = []
        for record in RangeReader(consumer, topic, ranges).records():
            try:
                events.append(codec.decode(record.value).record)
            except DecodeError:
                continue  # not ours to judge here: the topic may carry other writers' versions
        return events
    finally:
        consumer.close(autocommit=False)
