"""Replay: a recorded flow replayed from its topic reproduces the live ledger; ranges are exact."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, select

from engine.audit.chain import verify
from engine.audit.exceptions import ReplayTargetError
from engine.audit.reconcile import reconcile
from engine.audit.replay import ReplayRequest, replay
from engine.events import FUNDS_IN, FUNDS_OUT, EventType
from engine.kafka.client import make_producer
from engine.ledger.balances import all_balances
from engine.ledger.database import make_engine
from engine.ledger.models import DeadLetter, LedgerEntry, LiquidityMovement, Payment, Posting
from engine.ledger.positions import read_banks
from engine.ops.action import Actor, run_action
from engine.ops.limits import SetBankLimit
from engine.pipeline.messages import RawMessage
from engine.pipeline.processor import BatchProcessor
from sakk.app import TOPOLOGY, build_stage
from sakk.cli.liquidity import movement_record, publish_movement
from tests.conftest import POSTGRES_ADMIN_URL
from tests.factories import (
    AMINA,
    BLOCKED,
    CLOSED,
    KARIM,
    RAM,
    REFERENCE_FILE,
    YOUSSEF,
    payment,
    signed,
    switch_id,
)
from tests.integration.test_flow import drained

pytestmark = pytest.mark.integration

RANGE_BASE = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture
def replay_url(database_url: str, tmp_path: Any) -> Iterator[str]:
    """A second, empty database of the same kind as ``database_url``: the replay's target."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'replay.db'}"
        return
    name = f"sakk_replay_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def traffic() -> list[dict[str, Any]]:
    """Outcomes that do not depend on how partitions interleave (see docs/auditing.md)."""
    records = [payment(AMINA, KARIM, 100 + i) for i in range(60)]  # interbank, fee 5.00 each
    records += [payment(YOUSSEF, RAM, 200 + i, payment_type="PURCHASE") for i in range(60)]
    records += [payment(KARIM, AMINA, 50 + i, channel="MOBILE") for i in range(20)]
    records += [
        payment(AMINA, CLOSED, 1_000),  # AC04
        payment(AMINA, BLOCKED, 1_000),  # AC06
        payment(AMINA, KARIM, 0),  # AM12
        payment(KARIM, AMINA, 5_000_000),  # AM04 whatever Karim received
        payment(AMINA, KARIM, 700, reference="ATW-DUP-1"),
        payment(AMINA, KARIM, 700, reference="ATW-DUP-1"),  # AM05: same payer, same partition
    ]
    return records


def snapshot(engine: Engine) -> dict[str, Any]:
    """Everything a replay must reproduce: outcomes, postings, entries, balances, dead letters."""
    with engine.connect() as conn:
        payments = {r.payment_id: dict(r._mapping) for r in conn.execute(select(Payment.__table__))}
        postings = {
            r.posting_id: (r.payment_id, r.kind, r.settlement_window)
            for r in conn.execute(select(Posting.__table__))
        }
        e = LedgerEntry.__table__
        legs = Counter(
            (r.posting_id, r.account_number, r.amount_minor, r.currency)
            for r in conn.execute(select(e))
        )
        balances = all_balances(conn)
        d = DeadLetter.__table__
        dead = sorted(
            conn.execute(
                select(d.c.source_partition, d.c.source_offset, d.c.kind).where(
                    d.c.consumer == TOPOLOGY.entry.name
                )
            ).all()
        )
    return {
        "payments": payments,
        "postings": postings,
        "legs": legs,
        "balances": balances,
        "dead": dead,
    }


def liquidity(engine: Engine) -> int:
    with engine.connect() as conn:
        row = read_banks(conn, [("007", "MAD")]).get(("007", "MAD"))
    return row.liquidity_minor if row is not None else 0


def test_replay_of_a_recorded_flow_reproduces_the_live_ledger(
    flow_factory, database_url, replay_url
):
    flow = flow_factory(database_url)
    records = traffic()
    deposit = movement_record("007", 100_000, "MAD", "ops", datetime.now(UTC))
    publish_movement(flow.settings, FUNDS_IN, deposit)  # the switch's own input, replayed too
    flow.publish(records, raw=[b"not avro", b"\xc3\x01garbage"])
    published = len(records) + 2
    flow.wait_until(lambda: drained(flow, published))
    flow.wait_until(lambda: liquidity(flow.engine) == 100_000)

    # Karim's AM04 message says what he had at that instant, which depends on how the
    # live settlement interleaved partitions: follow its order to reproduce it exactly.
    report = replay(
        flow.settings, ReplayRequest(REFERENCE_FILE, replay_url, order_from=database_url), TOPOLOGY
    )

    assert report.events_replayed == published
    assert report.order_forced == 0
    assert report.dead_lettered == 2
    assert all(r.from_beginning for r in report.ranges)
    replayed = make_engine(replay_url)
    try:
        live, again = snapshot(flow.engine), snapshot(replayed)
        assert again["payments"] == live["payments"]
        assert again["postings"] == live["postings"]
        assert again["legs"] == live["legs"]
        assert again["balances"] == live["balances"]
        assert again["dead"] == live["dead"]
        assert liquidity(replayed) == 100_000
        states = Counter((p["state"], p["reason_code"]) for p in live["payments"].values())
        assert states[("FAILED", "AM04")] == 1 and states[("REJECTED", "AM05")] == 1
        result = reconcile(flow.engine, replayed, TOPOLOGY)
        assert result.ok, result.sections()
        assert result.balances_compared
        assert result.matched == len(records)
        with replayed.connect() as conn:
            assert verify(conn).ok
        with flow.engine.connect() as conn:
            assert verify(conn).ok
    finally:
        replayed.dispose()


def movements(engine: Engine) -> dict[str, tuple[str, str | None]]:
    m = LiquidityMovement.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(m.c.movement_id, m.c.outcome, m.c.reason_code)).all()
    return {r.movement_id: (r.outcome, r.reason_code) for r in rows}


def outcomes(engine: Engine) -> dict[str, tuple[str, str | None]]:
    p = Payment.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(p.c.payment_id, p.c.state, p.c.reason_code)).all()
    return {r.payment_id: (r.state, r.reason_code) for r in rows}


def test_replay_and_reconcile_reproduce_cap_and_liquidity_refusals_and_funds_in_and_out(
    flow_factory, database_url, replay_url
):
    """007 capped at 500.00 by an operator, funded 600.00: a payment to the cap settles,
    one minor unit more is refused AM23; a withdrawal below its position is refused AM04,
    a smaller one posted; then a payment beyond what is left of its liquidity is refused
    AM04. The replay, applying the live cap version, gives every outcome again, and
    reconcile finds zero differences, movements and position rows included."""
    flow = flow_factory(database_url)
    cap = SetBankLimit("007", "MAD", 50_000, 90)
    run_action(flow.engine, cap, Actor("ops-amal"), datetime.now(UTC))
    expected: dict[str, tuple[str, str | None]] = {}

    def move(event: EventType, amount_minor: int, outcome: tuple[str, str | None]) -> None:
        record = movement_record("007", amount_minor, "MAD", "ops", datetime.now(UTC))
        publish_movement(flow.settings, event, record)
        flow.wait_until(lambda: record["payment_id"] in movements(flow.engine))
        expected[record["payment_id"]] = outcome

    def pay(payer: Any, amount_minor: int, outcome: tuple[str, str | None]) -> None:
        record = payment(payer, KARIM, amount_minor)
        flow.publish([record])
        flow.wait_until(lambda: switch_id(record) in outcomes(flow.engine))
        expected[switch_id(record)] = outcome

    move(FUNDS_IN, 60_000, ("POSTED", None))
    pay(AMINA, 50_000, ("SETTLED", None))  # exactly at the cap
    pay(YOUSSEF, 1, ("FAILED", "AM23"))  # one minor unit beyond it
    move(FUNDS_OUT, 10_001, ("REFUSED", "AM04"))  # would leave 499.99 under 500.00 owed
    move(FUNDS_OUT, 5_000, ("POSTED", None))  # leaves 550.00
    pay(AMINA, 10_000, ("FAILED", "AM04"))  # 600.00 owed: beyond the liquidity first
    pay(YOUSSEF, 1, ("FAILED", "AM23"))
    live = {**outcomes(flow.engine), **movements(flow.engine)}
    assert live == expected

    report = replay(flow.settings, ReplayRequest(REFERENCE_FILE, replay_url), TOPOLOGY)
    assert report.cap_versions_applied == 1
    replayed = make_engine(replay_url)
    try:
        assert {**outcomes(replayed), **movements(replayed)} == expected
        assert liquidity(replayed) == liquidity(flow.engine) == 55_000
        result = reconcile(flow.engine, replayed, TOPOLOGY)
        assert result.balances_compared
        assert result.differences == 0, result.sections()
        assert (result.movements, result.positions) == ([], [])
    finally:
        replayed.dispose()


def test_replay_refuses_the_live_ledger_and_a_used_one(flow_factory, sqlite_url, tmp_path):
    flow = flow_factory(sqlite_url, consumers=())
    with pytest.raises(ReplayTargetError, match="live ledger"):
        replay(flow.settings, ReplayRequest(REFERENCE_FILE, sqlite_url), TOPOLOGY)
    target = f"sqlite:///{tmp_path / 'used.db'}"
    replay(flow.settings, ReplayRequest(REFERENCE_FILE, target), TOPOLOGY)
    with pytest.raises(ReplayTargetError, match="not a new ledger"):
        replay(flow.settings, ReplayRequest(REFERENCE_FILE, target), TOPOLOGY)


def publish_at(flow, stamped: list[tuple[datetime, dict[str, Any]]]) -> None:  # type: ignore[no-untyped-def]
    """Publish each record with an explicit Kafka record time (CreateTime), signed by its bank."""
    producer = make_producer(flow.settings, "test-bank")
    topic = flow.settings.topic("initiated")
    for at, record in stamped:
        key, value = record["payer_account"].encode(), flow.codec.encode("PaymentInitiated", record)
        producer.send(
            topic,
            key=key,
            value=value,
            timestamp_ms=int(at.timestamp() * 1000),
            headers=list(signed(topic, key, value, record["payer_bank"])),
        )
    producer.flush(30)
    producer.close()


def ranged_traffic() -> tuple[list[tuple[datetime, dict[str, Any]]], dict[str, set[str]]]:
    """Three groups a minute apart on every partition, plus two events whose times disagree."""
    stamped: list[tuple[datetime, dict[str, Any]]] = []
    groups: dict[str, set[str]] = {"before": set(), "inside": set(), "after": set()}
    payers = [AMINA, YOUSSEF, KARIM]
    for g, name in enumerate(("before", "inside", "after")):
        for i in range(30):
            at = RANGE_BASE + timedelta(minutes=g, seconds=i)
            record = payment(
                payers[i % 3],
                RAM if i % 3 == 1 else (KARIM if i % 3 == 0 else AMINA),
                100 + i,
                payment_type="PURCHASE" if i % 3 == 1 else "TRANSFER",
                occurred_at=at,
            )
            stamped.append((at, record))
            groups[name].add(switch_id(record))
    # Recorded after the range but occurred inside it (a slow bank), and the reverse.
    late = payment(AMINA, KARIM, 77, occurred_at=RANGE_BASE + timedelta(seconds=100))
    stamped.append((RANGE_BASE + timedelta(minutes=2, seconds=40), late))
    early = payment(
        YOUSSEF, RAM, 88, payment_type="PURCHASE", occurred_at=RANGE_BASE + timedelta(seconds=20)
    )
    stamped.append((RANGE_BASE + timedelta(minutes=1, seconds=45), early))
    stamped.sort(key=lambda x: x[0])
    groups["late"] = {switch_id(late)}
    groups["early"] = {switch_id(early)}
    return stamped, groups


def replayed_ids(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(select(Payment.payment_id)).scalars())
    finally:
        engine.dispose()


def test_replay_over_a_mid_stream_time_range_picks_exactly_the_payments_in_it(
    flow_factory, sqlite_url, tmp_path
):
    flow = flow_factory(sqlite_url)
    stamped, groups = ranged_traffic()
    publish_at(flow, stamped)
    flow.wait_until(lambda: drained(flow, len(stamped)))
    t1, t2 = RANGE_BASE + timedelta(minutes=1), RANGE_BASE + timedelta(minutes=2)

    by_record = f"sqlite:///{tmp_path / 'by-record.db'}"
    report = replay(
        flow.settings, ReplayRequest(REFERENCE_FILE, by_record, "record-time", t1, t2), TOPOLOGY
    )
    by_occurrence = f"sqlite:///{tmp_path / 'by-occurrence.db'}"
    replay(
        flow.settings, ReplayRequest(REFERENCE_FILE, by_occurrence, "occurred-at", t1, t2), TOPOLOGY
    )

    # The embedded broker answers offset 0 for any time: the records disproved it; a search ran.
    used = [r for r in report.ranges if r.end > r.start]
    assert used and all(r.start > r.log_start and r.located_by == "search" for r in used)
    assert report.record_time_outside_range == 0
    assert replayed_ids(by_record) == groups["inside"] | groups["early"]
    assert replayed_ids(by_occurrence) == groups["inside"] | groups["late"]
    for url in (by_record, by_occurrence):
        replayed = make_engine(url)
        try:
            result = reconcile(flow.engine, replayed, TOPOLOGY)
        finally:
            replayed.dispose()
        assert result.ok, result.sections()
        assert not result.balances_compared  # mid-stream: movements are compared instead
        assert result.live_payments == result.replay_payments == 31


def test_replay_by_offsets_reads_exactly_those_offsets(flow_factory, sqlite_url, tmp_path):
    flow = flow_factory(sqlite_url, consumers=(), topic_partitions=1)
    records = [payment(AMINA, KARIM, 100 + i) for i in range(40)]
    flow.publish(records)  # one multi-record batch: the embedded broker misreports the log end
    target = f"sqlite:///{tmp_path / 'offsets.db'}"

    report = replay(
        flow.settings,
        ReplayRequest(REFERENCE_FILE, target, "offsets", from_offsets={0: 10}, to_offsets={0: 25}),
        TOPOLOGY,
    )

    assert [(r.start, r.end) for r in report.ranges] == [(10, 25)]
    assert replayed_ids(target) == {switch_id(r) for r in records[10:25]}
    whole = f"sqlite:///{tmp_path / 'whole.db'}"
    assert (
        replay(flow.settings, ReplayRequest(REFERENCE_FILE, whole), TOPOLOGY).events_replayed == 40
    )


def test_replay_in_a_ledgers_settlement_order_reproduces_a_cross_partition_credit(
    flow_factory, sqlite_url, tmp_path
):
    """Karim (200.00) spends 250.00 that Amina sends him from another partition.

    On the topic his debit is stamped first, but the live settlement stage happened
    to take Amina's partition first: the debit settled. Merged by record time the
    replay fails it (AM04); in the live ledger's settlement order it settles.
    """
    flow = flow_factory(sqlite_url, consumers=())
    credit = payment(AMINA, KARIM, 25_000, occurred_at=RANGE_BASE + timedelta(seconds=2))
    debit = payment(KARIM, YOUSSEF, 40_000, occurred_at=RANGE_BASE + timedelta(seconds=1))
    topic = flow.settings.topic("initiated")
    producer = make_producer(flow.settings, "test-bank")
    for partition, record in ((0, credit), (1, debit)):
        key, value = record["payer_account"].encode(), flow.codec.encode("PaymentInitiated", record)
        producer.send(
            topic,
            key=key,
            partition=partition,
            value=value,
            timestamp_ms=int(record["occurred_at"].timestamp() * 1000),
            headers=list(signed(topic, key, value, record["payer_bank"])),
        )
    producer.flush(30)
    producer.close()
    # The "live" run: the stages' own processors, settlement taking the credit first.
    settings = flow.settings
    validator = BatchProcessor(
        build_stage("validator", settings), flow.engine, flow.codec, settings
    )
    settlement = BatchProcessor(
        build_stage("settlement", settings), flow.engine, flow.codec, settings
    )
    raw = {}
    for p, r in ((0, credit), (1, debit)):
        key, value = r["payer_account"].encode(), flow.codec.encode("PaymentInitiated", r)
        raw[switch_id(r)] = RawMessage(
            topic, p, 0, key, value, int(r["occurred_at"].timestamp() * 1000),
            headers=signed(topic, key, value, r["payer_bank"]),
        )  # fmt: skip
    validated = {}
    for pid in (switch_id(debit), switch_id(credit)):
        [message] = [
            m
            for m in validator.process([raw[pid]]).outgoing
            if m.topic == settings.topic("validated")
        ]
        validated[pid] = RawMessage(message.topic, 0, 0, message.key, message.value, 0)
    for pid in (switch_id(credit), switch_id(debit)):
        settlement.process([validated[pid]])

    by_time = f"sqlite:///{tmp_path / 'by-time.db'}"
    replay(settings, ReplayRequest(REFERENCE_FILE, by_time), TOPOLOGY)
    in_order = f"sqlite:///{tmp_path / 'in-order.db'}"
    report = replay(
        settings, ReplayRequest(REFERENCE_FILE, in_order, order_from=sqlite_url), TOPOLOGY
    )

    assert report.order_forced == 0
    outcomes = {}
    for url in (by_time, in_order):
        replayed = make_engine(url)
        try:
            outcomes[url] = reconcile(flow.engine, replayed, TOPOLOGY)
        finally:
            replayed.dispose()
    assert not outcomes[by_time].ok
    assert {
        (d["field"], d["live"], d["replay"])
        for d in outcomes[by_time].payments
        if d["payment_id"] == switch_id(debit) and d["field"] == "state"
    } == {("state", "SETTLED", "FAILED")}
    assert outcomes[in_order].ok, outcomes[in_order].sections()
