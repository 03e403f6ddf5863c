"""A payment's life: its hold, its steps, events, state changes, postings, notifications,
from the ledger and topics.

The ledger knows where every consumed event sat (``handled_events``: topic,
partition, offset) and every event produced (``emitted_events``). With
``scan_topics`` the trace also reads those records back from the broker and
confirms each one holds the event the ledger says it does, and finds the events
nobody consumes (``payments.notified``) by their key's partition and time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from kafka import TopicPartition
from kafka.partitioner.default import murmur2
from sqlalchemy import Connection, select

from engine.audit.exceptions import PaymentNotFoundError
from engine.audit.offsets import OffsetLocator
from engine.config import Settings
from engine.events import EVENTS
from engine.ids import SEPARATOR
from engine.kafka.client import make_consumer
from engine.ledger.models import (
    DeadLetter,
    DeadLetterRedrive,
    EmittedEvent,
    HandledEvent,
    Hold,
    LedgerEntry,
    Notification,
    NotificationAttempt,
    Payment,
    PaymentStep,
    PaymentTransition,
    Posting,
)
from engine.ledger.notifications import redeliveries_of
from engine.serialization import AvroCodec, DecodeError
from engine.times import as_utc, from_ms, to_ms

SCAN_MAX_RECORDS = 20_000  # per topic partition searched for an unconsumed event
SCAN_LOOKBACK = timedelta(minutes=1)  # before the first handling of its source event


@dataclass
class PaymentTrace:
    payment: dict[str, Any]
    hold: dict[str, Any] | None = None  # an authorization's: amount, reserved, captured, state
    steps: list[dict[str, Any]] = field(default_factory=list)  # applied or refused, with why
    events: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    postings: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    redrives: list[dict[str, Any]] = field(default_factory=list)
    redeliveries: list[dict[str, Any]] = field(default_factory=list)  # operators' requests

    @property
    def payment_id(self) -> str:
        return str(self.payment["payment_id"])

    def sections(self) -> dict[str, list[dict[str, Any]]]:
        return {"hold": [self.hold] if self.hold else [], "steps": self.steps,
                "events": self.events, "transitions": self.transitions, "postings": self.postings,
                "entries": self.entries, "notifications": self.notifications,
                "attempts": self.attempts, "dead_letters": self.dead_letters,
                "redrives": self.redrives, "redeliveries": self.redeliveries}  # fmt: skip

    def signer(self) -> str:
        """Who signed the payment's PaymentInitiated (proof of origin), as a line of text."""
        bank, key_id = self.payment.get("signer_bank"), self.payment.get("signer_key_id")
        if not bank:
            return "not signed (recorded before signed events)"
        digest = self.payment.get("signed_digest") or b""
        return f"signed by bank {bank} with key {key_id} (digest {bytes(digest).hex()[:16]}…)"


def find_payment_ids(
    conn: Connection, payment_id: str | None = None, bank_reference: str | None = None
) -> list[str]:
    """The payment with that id, or every payment a bank sent with that reference (``BANK:REF``).

    A payment id is the switch's, ``BANK:ID`` (engine.ids); given a bank's own id alone
    (no ``:``) and no payment from before namespaces bears it, every bank's payment of
    that own id is found.
    """
    p = Payment.__table__
    if payment_id is not None:
        found = list(
            conn.execute(select(p.c.payment_id).where(p.c.payment_id == payment_id)).scalars()
        )
        if not found and SEPARATOR not in payment_id:
            in_namespaces = p.c.payment_id.endswith(SEPARATOR + payment_id, autoescape=True)
            found = list(
                conn.execute(
                    select(p.c.payment_id).where(in_namespaces).order_by(p.c.payment_id)
                ).scalars()
            )
        if not found:
            raise PaymentNotFoundError(f"no payment {payment_id} in the ledger")
        return found
    if bank_reference is None or ":" not in bank_reference:
        raise PaymentNotFoundError("give a payment id or a bank reference as BANK:REFERENCE")
    bank, _, reference = bank_reference.partition(":")
    found = list(conn.execute(
        select(p.c.payment_id)
        .where(p.c.payer_bank == bank, p.c.bank_reference == reference)
        .order_by(p.c.occurred_at, p.c.payment_id)
    ).scalars())  # fmt: skip
    if not found:
        raise PaymentNotFoundError(f"no payment with reference {reference!r} from bank {bank}")
    return found


def _rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(query)]


def trace_payment(conn: Connection, payment_id: str) -> PaymentTrace:
    p = Payment.__table__
    payment = conn.execute(select(p).where(p.c.payment_id == payment_id)).mappings().one_or_none()
    if payment is None:
        raise PaymentNotFoundError(f"no payment {payment_id} in the ledger")
    trace = PaymentTrace(dict(payment))
    trace.hold, trace.steps = _hold(conn, payment_id), _steps(conn, payment_id)
    trace.events = _events(conn, payment_id)
    t = PaymentTransition.__table__
    trace.transitions = _rows(conn, select(t).where(t.c.payment_id == payment_id).order_by(t.c.id))
    po, e = Posting.__table__, LedgerEntry.__table__
    trace.postings = _rows(conn, select(po).where(po.c.payment_id == payment_id))
    posting_ids = [x["posting_id"] for x in trace.postings]
    if posting_ids:
        # Each entry with its place in its hash chain (chain_id, chain_seq, the hashes).
        trace.entries = _rows(
            conn,
            select(e).where(e.c.posting_id.in_(posting_ids)).order_by(e.c.chain_id, e.c.chain_seq),
        )
    n, a = Notification.__table__, NotificationAttempt.__table__
    trace.notifications = _rows(
        conn,
        select(
            n.c.notification_id,
            n.c.outcome,
            n.c.recipient_bank,
            n.c.sender,
            n.c.status,
            n.c.attempts,
            n.c.round,
            n.c.next_attempt_at,
            n.c.last_error,
            n.c.created_at,
            n.c.finished_at,
        )
        .where(n.c.payment_id == payment_id)
        .order_by(n.c.created_at, n.c.recipient_bank),
    )
    ids = [x["notification_id"] for x in trace.notifications]
    if ids:
        trace.attempts = _rows(
            conn,
            select(a).where(a.c.notification_id.in_(ids)).order_by(a.c.notification_id, a.c.number),
        )
        trace.redeliveries = redeliveries_of(conn, ids)
    trace.redrives = _redrives(conn, payment_id)
    d = DeadLetter.__table__
    redriven = [r["dead_letter_id"] for r in trace.redrives]
    trace.dead_letters = _rows(
        conn,
        select(d).where((d.c.payment_id == payment_id) | d.c.id.in_(redriven)).order_by(d.c.id),
    )
    return trace


def _hold(conn: Connection, payment_id: str) -> dict[str, Any] | None:
    h = Hold.__table__
    row = conn.execute(select(h).where(h.c.payment_id == payment_id)).mappings().one_or_none()
    return dict(row) if row is not None else None


def _steps(conn: Connection, payment_id: str) -> list[dict[str, Any]]:
    """Every step asked of the payment, applied or refused, in the order it was answered.

    A step's answer is the last event a stage emitted for it (``emitted_events.id`` is
    one sequence for every stage): settlement's for a step it decided, the validator's
    for one it refused. Its request's event id is the step id; the validator forwards it
    under a derived id, which settlement's answer names as its source.
    """
    st, em = PaymentStep.__table__, EmittedEvent.__table__
    steps = _rows(conn, select(st).where(st.c.payment_id == payment_id))
    emitted = conn.execute(
        select(em.c.id, em.c.consumer, em.c.source_event_id, em.c.event_id)
        .where(em.c.payment_id == payment_id, em.c.consumer.in_(("validator", "settlement")))
        .order_by(em.c.id)
    ).all()
    request_of = {r.event_id: r.source_event_id for r in emitted if r.consumer == "validator"}
    answered: dict[str, int] = {}
    for r in emitted:  # in id order: the last answer stays
        answered[request_of.get(r.source_event_id, r.source_event_id)] = r.id
    steps.sort(key=lambda r: (answered.get(r["step_id"], 0), as_utc(r["occurred_at"])))
    return steps


def _redrives(conn: Connection, payment_id: str) -> list[dict[str, Any]]:
    """Dead letters of this payment sent again: who asked, when, why, where the copy went.

    A dead letter is recorded before its body is read, so it rarely names its payment;
    its redrive does, once the body decoded. The bytes and key stay out (the key is the
    payer's account).
    """
    r = DeadLetterRedrive.__table__
    return _rows(
        conn,
        select(
            r.c.dead_letter_id, r.c.requested_by, r.c.requested_at, r.c.reason,
            r.c.body_source, r.c.status, r.c.target_topic, r.c.published_partition,
            r.c.published_offset, r.c.published_at, r.c.event_id,
        )
        .where(r.c.payment_id == payment_id)
        .order_by(r.c.id),
    )  # fmt: skip


def _events(conn: Connection, payment_id: str) -> list[dict[str, Any]]:
    """Every event of the payment: those from outside the stages (banks' payments and steps,
    the switch's expiries) with their coordinates, then those the stages emitted.
    """
    h, em = HandledEvent.__table__, EmittedEvent.__table__
    handled = _rows(conn, select(h).where(h.c.payment_id == payment_id).order_by(h.c.handled_at))
    emitted = _rows(
        conn,
        select(em.c.consumer, em.c.source_event_id, em.c.event_id, em.c.topic, em.c.key)
        .where(em.c.payment_id == payment_id)
        .order_by(em.c.id),
    )
    consumed_by: dict[str, list[dict[str, Any]]] = {}
    for row in handled:
        consumed_by.setdefault(row["event_id"], []).append(row)
    handled_at = {row["event_id"]: row["handled_at"] for row in handled}
    events: list[dict[str, Any]] = []
    made_by_stages = {row["event_id"] for row in emitted}
    for row in handled:  # what no stage produced: the banks' events and the switch's expiries
        if row["consumer"] == "validator":
            producer = "bank"
        elif row["event_id"] not in made_by_stages:
            producer = "switch (expiry scheduler)"
        else:
            continue
        events.append(_event_row(row["event_id"], row["event_type"], row["topic"], producer, row))
    for row in emitted:
        producer = row["consumer"]
        consumers = consumed_by.get(row["event_id"], [])
        first = consumers[0] if consumers else None
        event = _event_row(
            row["event_id"], first["event_type"] if first else "", row["topic"], producer, first
        )
        event["key"] = row["key"]
        event["source_handled_at"] = handled_at.get(row["source_event_id"])
        events.append(event)
    return events


def _event_row(
    event_id: str, event_type: str, topic: str, producer: str, consumed: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "event_id": event_id, "event_type": event_type, "topic": topic, "produced_by": producer,
        "consumed_by": consumed["consumer"] if consumed else None,
        "partition": consumed["partition"] if consumed else None,
        "offset": consumed["offset"] if consumed else None,
        "outcome": consumed["outcome"] if consumed else None,
        "handled_at": consumed["handled_at"] if consumed else None,
        "record_time": None, "on_topic": None,
    }  # fmt: skip


def scan_topics(
    settings: Settings, codec: AvroCodec, trace: PaymentTrace, max_records: int = SCAN_MAX_RECORDS
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
