"""The whole flow through the embedded broker, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from kafka.partitioner.default import murmur2
from sqlalchemy import func, select

from engine.kafka.client import make_consumer
from engine.ledger.balances import balance_of
from engine.ledger.checks import check_ledger, expected_notifications, flow_counts
from engine.ledger.models import (
    DeadLetter,
    HandledEvent,
    LedgerEntry,
    Notification,
    Payment,
    Posting,
)
from sakk.app import TOPOLOGY
from tests.factories import (
    AMINA,
    BLOCKED,
    CLOSED,
    KARIM,
    RAM,
    YOUSSEF,
    payment,
    switch_id,
    vignette,
)

pytestmark = pytest.mark.integration


def drained(flow, published: int) -> bool:  # type: ignore[no-untyped-def]
    with flow.engine.connect() as conn:
        counts = flow_counts(conn, TOPOLOGY.entry.name)
        expected, finished = expected_notifications(conn)
    return counts.terminal + counts.dead_lettered >= published and finished >= expected


def states(flow) -> dict[str, tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    with flow.engine.connect() as conn:
        rows = conn.execute(select(Payment.payment_id, Payment.state, Payment.reason_code))
        return {r.payment_id: (r.state, r.reason_code) for r in rows}


def balance(flow, account: tuple[str, str]) -> int:  # type: ignore[no-untyped-def]
    with flow.engine.connect() as conn:
        return balance_of(conn, account[1])


def test_mixed_payments_each_reach_their_outcome_and_the_ledger_balances(
    flow_factory, database_url
):
    flow = flow_factory(database_url)
    good = payment(AMINA, KARIM, 10_000)  # interbank, fee 5.00
    merchant = payment(YOUSSEF, RAM, 40_000, payment_type="PURCHASE", merchant_category_code="4511")
    tax = vignette(70_000, payer=AMINA)
    unknown = payment(AMINA, ("011", "011000000000000000000000"), 1_000)
    closed = payment(AMINA, CLOSED, 1_000)
    blocked = payment(AMINA, BLOCKED, 1_000)
    too_much = payment(KARIM, AMINA, 50_000)  # Karim has 200.00
    zero = payment(AMINA, KARIM, 0)
    records = [good, merchant, tax, unknown, closed, blocked, too_much, zero]
    flow.publish(records)
    flow.wait_until(lambda: drained(flow, len(records)))

    outcome = states(flow)
    assert outcome[switch_id(good)] == ("SETTLED", None)
    assert outcome[switch_id(merchant)] == ("SETTLED", None)
    assert outcome[switch_id(tax)] == ("SETTLED", None)
    assert outcome[switch_id(unknown)] == ("REJECTED", "AC01")
    assert outcome[switch_id(closed)] == ("REJECTED", "AC04")
    assert outcome[switch_id(blocked)] == ("REJECTED", "AC06")
    assert outcome[switch_id(too_much)] == ("FAILED", "AM04")
    assert outcome[switch_id(zero)] == ("REJECTED", "AM12")
    # Amina: 1,000.00 - (100.00 + 5.00 fee) - 700.00 vignette (no fee, ever) = 195.00
    assert balance(flow, AMINA) == 100_000 - 10_500 - 70_000
    assert balance(flow, KARIM) == 20_000 + 10_000
    # Youssef: 500.00 - 400.00 - 1.00 (25 bps of 400.00) = 99.00
    assert balance(flow, YOUSSEF) == 50_000 - 40_000 - 100
    with flow.engine.connect() as conn:
        assert check_ledger(conn).ok
        fee = conn.execute(select(Payment.fee_minor).where(Payment.payment_id == switch_id(tax)))
        assert fee.scalar_one() == 0
        notified = conn.execute(
            select(func.count()).select_from(Notification).where(Notification.status == "DELIVERED")
        ).scalar_one()
    # one per terminal payment, plus the payee's bank of the settled interbank transfer and vignette
    assert notified == len(records) + 2


def test_redelivered_message_is_processed_once(flow_factory, database_url):
    flow = flow_factory(database_url)
    p = payment(AMINA, KARIM, 5_000)
    encoded = flow.codec.encode("PaymentInitiated", p)
    flow.publish_encoded([encoded, encoded, encoded], key=AMINA[1].encode())
    flow.wait_until(lambda: drained(flow, 1))
    flow.publish([payment(AMINA, KARIM, 1)])  # a marker: once it is done, the copies were handled
    flow.wait_until(lambda: drained(flow, 2))
    with flow.engine.connect() as conn:
        handled = conn.execute(
            select(func.count())
            .select_from(HandledEvent)
            .where(HandledEvent.event_id == switch_id(p, "event_id"))
        ).scalar_one()
        postings = conn.execute(
            select(func.count()).select_from(Posting).where(Posting.payment_id == switch_id(p))
        ).scalar_one()
    assert handled == 1
    assert postings == 1
    assert balance(flow, KARIM) == 20_000 + 5_000 + 1


def test_duplicate_bank_reference_is_rejected_am05(flow_factory, database_url):
    flow = flow_factory(database_url)
    first = payment(AMINA, KARIM, 2_000, reference="ATW-2026-000042")
    retry = payment(AMINA, KARIM, 2_000, reference="ATW-2026-000042")  # new ids, same reference
    flow.publish([first, retry])
    flow.wait_until(lambda: drained(flow, 2))
    outcome = states(flow)
    assert outcome[switch_id(first)] == ("SETTLED", None)
    assert outcome[switch_id(retry)] == ("REJECTED", "AM05")
    assert balance(flow, KARIM) == 20_000 + 2_000


def test_garbage_and_unapproved_schema_are_dead_lettered_while_the_flow_carries_on(
    flow_factory, database_url
):
    flow = flow_factory(database_url)
    before = payment(AMINA, KARIM, 1_000)
    after = payment(AMINA, KARIM, 2_000)
    good_bytes = flow.codec.encode("PaymentInitiated", before)
    unknown_schema = b"\xc3\x01" + b"\x00" * 8 + good_bytes[10:]
    flow.publish([before])
    flow.publish_encoded([b"not avro at all", unknown_schema, good_bytes[:15]])
    flow.publish([after])
    flow.wait_until(lambda: drained(flow, 5))
    outcome = states(flow)
    assert outcome[switch_id(before)][0] == "SETTLED"
    assert outcome[switch_id(after)][0] == "SETTLED"
    with flow.engine.connect() as conn:
        kinds = sorted(conn.execute(select(DeadLetter.kind)).scalars())
    assert kinds == ["schema_not_approved", "undecodable", "undecodable"]

    consumer = make_consumer(flow.settings, None)
    from kafka import TopicPartition

    parts = [TopicPartition(flow.settings.topic("dlq"), p) for p in range(3)]
    consumer.assign(parts)
    consumer.seek_to_beginning()
    seen = []
    for _ in range(20):
        for records in consumer.poll(500).values():
            seen.extend(records)
        if len(seen) >= 3:
            break
    consumer.close()
    assert len(seen) == 3
    headers = [dict(r.headers) for r in seen]
    assert all(h["sakk.source.topic"] == flow.settings.topic("initiated").encode() for h in headers)
    assert {h["sakk.kind"] for h in headers} == {b"undecodable", b"schema_not_approved"}
    assert all("sakk.source.offset" in h for h in headers)


def test_a_newer_writer_settles_on_a_running_consumer_once_the_operator_approved_it(
    flow_factory, database_url, tmp_path
):
    import json
    import shutil

    from engine.config import PROJECT_ROOT
    from engine.ledger.schemas import ApprovalStatus, approve
    from engine.serialization import AvroCodec, SchemaRegistry, read_release_schemas

    flow = flow_factory(database_url)  # consumers already running with the v1 schemas
    newer = tmp_path / "schemas"
    shutil.copytree(PROJECT_ROOT / "schemas", newer)
    path = newer / "payment_initiated.avsc"
    schema = json.loads(path.read_text())
    schema["fields"].append({"name": "device_id", "type": ["null", "string"], "default": None})
    path.write_text(json.dumps(schema))
    writer = AvroCodec(SchemaRegistry.from_dir(newer))
    release = {k: json.loads(v) for k, v in read_release_schemas(PROJECT_ROOT / "schemas").items()}
    approval = approve(flow.engine, json.dumps(schema), release, "operator-1")
    assert approval.status is ApprovalStatus.APPROVED, approval.reason
    p = payment(AMINA, KARIM, 3_000)
    p["device_id"] = "android-7f3a"
    flow.publish_encoded(
        [writer.encode("PaymentInitiated", p)], key=AMINA[1].encode(), bank=AMINA[0]
    )
    flow.wait_until(lambda: drained(flow, 1))
    assert states(flow)[switch_id(p)] == ("SETTLED", None)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as the producers)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_each_partition_appends_to_its_own_hash_chain(flow_factory, database_url):
    """No chain head that every settlement must lock: a posting goes to its partition's chain."""
    flow = flow_factory(database_url)
    payers = [AMINA, YOUSSEF, KARIM]
    records = [payment(payer, RAM if payer is KARIM else KARIM, 100) for payer in payers * 4]
    flow.publish(records)
    flow.wait_until(lambda: drained(flow, len(records)))
    partitions = flow.settings.topic_partitions
    e, po = LedgerEntry.__table__, Posting.__table__
    with flow.engine.connect() as conn:
        chains = {
            (r.payment_id, r.chain_id)
            for r in conn.execute(
                select(po.c.payment_id, e.c.chain_id)
                .join(po, po.c.posting_id == e.c.posting_id)
                .where(po.c.kind == "PAYMENT")
            )
        }
    payer_of = {switch_id(r): r["payer_account"] for r in records}
    expected = {(pid, partition_of(payer_of[pid].encode(), partitions)) for pid, _ in chains}
    assert chains == expected and len(chains) == len(records)
    assert len({chain for _, chain in chains}) > 1  # three payers, three partitions: not one
