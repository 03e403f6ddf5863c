"""The bank side against a real broker: publisher, JSON Lines publishing, the simulator.

Every payment goes out signed as its payer's bank. The last test runs the simulator's
traffic through the real validator and settlement and checks that every message ends
as its kind says it should (forgeries: refused as a security matter).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka.consumer.fetcher import ConsumerRecord
from sqlalchemy import func, select

from engine.config import PROJECT_ROOT, Settings
from engine.kafka.client import all_topics, create_topics, make_admin, make_consumer, partitions_of
from engine.kafka.embedded import EmbeddedBroker
from engine.ledger.reference import read_file
from engine.serialization import AvroCodec, DecodeError, SchemaRegistry
from engine.trust.keys import KeyPair
from engine.trust.signing import KEY_ID_HEADER, SIGNER_HEADER, KeyRing, key_rows_as_ring
from producers.exceptions import PaymentSigningError
from producers.jsonl import publish_file
from producers.publisher import PaymentPublisher
from producers.signing import SIMULATED_KEYS_VALID_FROM, Signers
from tests.factories import as_read, switch_id
from tooling.workload.traffic import (
    SECURITY_KINDS,
    SimulatedMessage,
    TrafficSimulator,
    publish_message,
    register_simulated_keys,
    simulate,
    simulation_signers,
)

pytestmark = pytest.mark.integration

REFERENCE = PROJECT_ROOT / "reference" / "morocco.json"
EXAMPLES = PROJECT_ROOT / "producers" / "examples" / "payments.jsonl"
READ_TIMEOUT_S = 30.0
FLOW_TIMEOUT_S = 90.0
START = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
# One key for each bank of the committed reference: publishing as many banks at once.
BANKS = simulation_signers(read_file(REFERENCE), seed=0)


def ring_of(signers: Signers) -> KeyRing:
    return key_rows_as_ring(e.as_row() for e in signers.key_entries(SIMULATED_KEYS_VALID_FROM))


def verdict(signers: Signers, record: ConsumerRecord):  # type: ignore[no-untyped-def]
    """The validator's signature check of a record read back, with ``signers``' keys."""
    headers = tuple(record.headers or ())
    return ring_of(signers).verify(
        record.topic, record.key, record.value, headers, datetime.now(UTC)
    )


@pytest.fixture(scope="module")
def embedded_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture
def settings(embedded_broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    """Settings with this test's own topics on the module's broker."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    made = Settings(
        kafka_bootstrap_servers=embedded_broker.bootstrap_servers,
        topic_prefix=prefix,
        consumer_group_prefix=prefix,
        topic_partitions=3,
        data_dir=tmp_path,
    )
    create_topics(made)
    return made


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec(SchemaRegistry.from_dir(Settings().schemas_dir))


def read_initiated(settings: Settings) -> list[ConsumerRecord]:
    """Every record on payments.initiated, read without a consumer group up to its end."""
    consumer = make_consumer(settings, group_id=None, client_id="test-reader")
    try:
        partitions = partitions_of(consumer, settings.topic("initiated"))
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise AssertionError(f"topic not read to its end in {READ_TIMEOUT_S:.0f}s")
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close(autocommit=False)


def good_payments(n: int) -> list[dict[str, Any]]:
    sim = TrafficSimulator(read_file(REFERENCE), seed=21, start=START)
    found: list[dict[str, Any]] = []
    for m in sim.generate(n * 2):
        if m.expected_outcome == "settled" and m.payment is not None and len(found) < n:
            found.append(m.payment)
    return found


def test_published_payments_come_back_keyed_by_payer_and_decodable(
    settings: Settings, codec: AvroCodec
) -> None:
    payments = good_payments(50)
    with PaymentPublisher(settings, signers=BANKS) as publisher:
        for p in payments:
            publisher.publish(p)
        publisher.publish_raw(b"not avro at all", key=b"raw-key")
        assert publisher.flush() == 51
    assert publisher.published == 51

    records = read_initiated(settings)
    raw = [r for r in records if r.key == b"raw-key"]
    assert [r.value for r in raw] == [b"not avro at all"]
    assert not raw[0].headers  # publish_raw without a signer: unsigned
    with pytest.raises(DecodeError):
        codec.decode(raw[0].value)
    decoded = {codec.decode(r.value).record["payment_id"]: r for r in records if r not in raw}
    assert len(decoded) == 50
    for p in payments:
        record = decoded[p["payment_id"]]
        assert record.key == p["payer_account"].encode()
        assert codec.decode(record.value).record == as_read("PaymentInitiated", p)
        assert dict(record.headers)[SIGNER_HEADER] == p["payer_bank"].encode()
        assert verdict(BANKS, record).ok


def test_a_key_file_signs_as_its_bank_and_a_payment_of_another_bank_is_refused_unsent(
    settings: Settings, tmp_path: Path
) -> None:
    pair = KeyPair.generate()
    key_file = tmp_path / f"011-{pair.key_id}.key"  # as sakk keys generate 011 names it
    pair.write(key_file)
    own = [p for p in good_payments(60) if p["payer_bank"] == "011"][:3]
    other = next(p for p in good_payments(60) if p["payer_bank"] != "011")
    with PaymentPublisher(settings.replace(signing_key_file=key_file)) as publisher:
        publisher.publish(own[0])
        with pytest.raises(
            PaymentSigningError, match=f"payer_bank {other['payer_bank']} is not"
        ) as e:
            publisher.publish(other)
        assert e.value.bank == other["payer_bank"]
        for p in own[1:]:
            publisher.publish(p)
    records = read_initiated(settings)
    assert len(records) == 3
    assert {dict(r.headers)[KEY_ID_HEADER] for r in records} == {pair.key_id.encode()}
    signers = Signers.from_key_file("011", key_file)
    assert all(verdict(signers, r).ok for r in records)


def test_one_payers_payments_share_a_partition_in_publish_order(settings: Settings) -> None:
    payments = good_payments(200)
    with PaymentPublisher(settings, signers=BANKS) as publisher:
        for p in payments:
            publisher.publish(p)
    by_payer: dict[bytes, list[ConsumerRecord]] = {}
    for r in read_initiated(settings):
        by_payer.setdefault(r.key, []).append(r)
    index = {p["payment_id"]: i for i, p in enumerate(payments)}
    codec = AvroCodec(SchemaRegistry.from_dir(settings.schemas_dir))
    for records in by_payer.values():
        assert len({r.partition for r in records}) == 1
        order = [index[codec.decode(r.value).record["payment_id"]]
                 for r in sorted(records, key=lambda r: r.offset)]  # fmt: skip
        assert order == sorted(order)


def test_a_publisher_publishes_no_schema_only_payments(settings: Settings) -> None:
    with PaymentPublisher(settings, signers=BANKS) as publisher:
        publisher.publish(good_payments(1)[0])
    admin = make_admin(settings, "test-admin")
    try:
        mine = {t for t in admin.list_topics() if t.startswith(settings.topic_prefix + ".")}
    finally:
        admin.close()
    assert mine == set(all_topics(settings))  # no schema topic: the switch decides the schemas
    assert not any(t.endswith("._schemas") for t in mine)


def test_publish_file_publishes_good_lines_and_reports_bad_ones_by_number(
    settings: Settings, tmp_path: Path
) -> None:
    good = EXAMPLES.read_text(encoding="utf-8").splitlines()
    lines = [good[0], "{broken", good[1], "", '{"amount_minor": 10.5}', good[2], "[]"]
    path = tmp_path / "payments.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    report = publish_file(settings, path, signers=BANKS)

    assert (report.lines, report.published, report.skipped) == (6, 3, 3)
    assert [b.line_number for b in report.bad_lines] == [2, 5, 7]
    assert "(line): not JSON" in str(report.bad_lines[0])
    assert "line 5" in report.summary()
    assert len(read_initiated(settings)) == 3


def test_the_example_file_publishes_without_a_bad_line(settings: Settings) -> None:
    report = publish_file(settings, EXAMPLES, signers=BANKS)  # its lines are many banks'
    assert report.skipped == 0 and report.published == report.lines >= 10
    records = read_initiated(settings)
    assert len(records) == report.published
    assert all(verdict(BANKS, r).ok for r in records)


def test_publish_file_with_a_key_file_skips_the_lines_of_another_bank(
    settings: Settings, tmp_path: Path
) -> None:
    key_file = tmp_path / "007.key"  # not the name sakk keys generate gives: the bank is told
    KeyPair.generate().write(key_file)
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()
    banks = [json.loads(line)["payer_bank"] for line in lines]
    path = tmp_path / "payments.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    report = publish_file(settings.replace(signing_key_file=key_file, signing_bank="007"), path)

    assert report.published == banks.count("007")
    others = [i + 1 for i, bank in enumerate(banks) if bank != "007"]
    assert [b.line_number for b in report.bad_lines] == others
    assert f"payer_bank {banks[others[0] - 1]} is not this publisher's bank" in str(
        report.bad_lines[0]
    )
    assert len(read_initiated(settings)) == report.published


def test_sakk_publish_signs_with_the_signing_key_option(settings: Settings, tmp_path: Path) -> None:
    from click.testing import CliRunner

    import sakk.cli.publish  # noqa: F401  (registers the command)
    from sakk.cli import cli

    pair = KeyPair.generate()
    key_file = tmp_path / f"007-{pair.key_id}.key"
    pair.write(key_file)
    lines = [line for line in EXAMPLES.read_text(encoding="utf-8").splitlines()
             if json.loads(line)["payer_bank"] == "007"]  # fmt: skip
    path = tmp_path / "007.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {
        "SAKK_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "SAKK_TOPIC_PREFIX": settings.topic_prefix,
        "SAKK_DATA_DIR": str(tmp_path),
    }
    result = CliRunner().invoke(
        cli, ["publish", str(path), "--signing-key", str(key_file)], env=env
    )
    assert result.exit_code == 0, result.output
    assert f"{len(lines)} messages published" in result.output
    records = read_initiated(settings)
    assert len(records) == len(lines)
    assert all(verdict(Signers.from_key_file("007", key_file), r).ok for r in records)


def test_simulate_publishes_every_message_it_reports(settings: Settings, codec: AvroCodec) -> None:
    seen: list[int] = []
    before_ms = int(time.time() * 1000)
    report = simulate(settings, payments=400, seed=3, rate_per_s=None, progress=seen.append,
                      reference_path=REFERENCE, register_keys=False)  # fmt: skip

    records = read_initiated(settings)
    assert report.published == len(records) == 400
    assert sum(report.by_kind.values()) == 400
    assert seen[-1] == 400 and seen == sorted(seen)
    undecodable = 0
    for r in records:
        try:
            event = codec.decode(r.value).record
        except DecodeError:
            undecodable += 1
            continue
        occurred_ms = int(event["occurred_at"].timestamp() * 1000)
        assert before_ms <= occurred_ms <= r.timestamp  # never in the future of the broker
    assert undecodable == report.malformed == report.by_kind["malformed"]
    assert sum(report.by_channel.values()) == 400 - report.malformed
    assert "published 400 messages" in report.summary()
    signers = simulation_signers(read_file(REFERENCE), 3)
    refused = [verdict(signers, r).refusal for r in records]
    assert sum(r is None for r in refused) == report.signed  # a forger signs validly too
    assert refused.count("signature_missing") == report.by_kind["unsigned_payment"]


def test_simulate_at_a_rate_takes_as_long_as_the_rate_says(settings: Settings) -> None:
    started = time.monotonic()
    report = simulate(settings, payments=150, seed=4, rate_per_s=300, progress=None,
                      reference_path=REFERENCE, register_keys=False)  # fmt: skip
    assert report.published == 150
    assert time.monotonic() - started >= 150 / 300 * 0.8


def test_two_runs_of_one_seed_publish_distinct_ids_and_references(settings: Settings) -> None:
    one = simulate(settings, 100, seed=9, reference_path=REFERENCE, run_tag="a",
                   register_keys=False)  # fmt: skip
    two = simulate(settings, 100, seed=9, reference_path=REFERENCE, run_tag="b",
                   register_keys=False)  # fmt: skip
    assert one.by_kind == two.by_kind
    codec = AvroCodec(SchemaRegistry.from_dir(settings.schemas_dir))
    events = []
    for r in read_initiated(settings):
        try:
            events.append(codec.decode(r.value).record)
        except DecodeError:
            continue
    assert len({e["payment_id"] for e in events}) == len(events)
    references = {(e["payer_bank"], e["bank_reference"]) for e in events}
    retries = one.by_kind["duplicate_retry"] + two.by_kind["duplicate_retry"]
    assert len(references) == len(events) - retries  # only a bank's retry repeats a reference


# --- the labels hold through the real consumers ----------------------------------------


def test_simulated_traffic_ends_as_each_kind_says(
    embedded_broker: EmbeddedBroker,
    settings_factory: Callable[..., Settings],
    database_url: str,
) -> None:
    from engine.ledger.database import make_engine, upgrade
    from engine.ledger.models import DeadLetter, Payment, PaymentState
    from engine.ledger.reference import load_reference_data
    from sakk.app import run_consumers

    flow_settings = settings_factory(embedded_broker.bootstrap_servers, database_url)
    create_topics(flow_settings)
    upgrade(flow_settings.ledger_url)
    engine = make_engine(flow_settings.ledger_url)
    load_reference_data(engine, read_file(REFERENCE))
    signers = simulation_signers(read_file(REFERENCE), 17)
    register_simulated_keys(flow_settings, signers)
    stop = threading.Event()
    threads = run_consumers(flow_settings, ("validator", "settlement"), stop)
    expected: dict[str, SimulatedMessage] = {}
    refused: list[SimulatedMessage] = []
    try:
        with PaymentPublisher(flow_settings, signers=signers) as publisher:
            sim = TrafficSimulator(read_file(REFERENCE), 17, START, codec=publisher.codec,
                                   live=True, run_tag="e2e")  # fmt: skip
            for m in sim.generate(700):
                publish_message(publisher, m)
                if m.kind in SECURITY_KINDS:
                    refused.append(m)
                elif m.payment is not None:
                    expected[switch_id(m.payment)] = m
        malformed = 700 - len(expected) - len(refused)

        terminal = (PaymentState.SETTLED, PaymentState.REJECTED, PaymentState.FAILED)
        deadline = time.monotonic() + FLOW_TIMEOUT_S
        while True:
            with engine.connect() as conn:
                done = conn.scalar(select(func.count()).select_from(Payment)
                                   .where(Payment.state.in_(terminal)))  # fmt: skip
                dead = conn.scalar(select(func.count()).select_from(DeadLetter))
            if done == len(expected) and dead == malformed + len(refused):
                break
            assert time.monotonic() < deadline, f"{done} terminal, {dead} dead-lettered"
            assert all(t.is_alive() for t in threads), "a consumer thread died"
            time.sleep(0.2)
        with engine.connect() as conn:
            rows = conn.execute(select(Payment.payment_id, Payment.state, Payment.reason_code))
            outcomes = {r.payment_id: (r.state.lower(), r.reason_code) for r in rows}
            kinds_dead = Counter(conn.execute(select(DeadLetter.kind)).scalars())
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        engine.dispose()

    wrong = [
        (m.kind, outcomes.get(pid), (m.expected_outcome, m.expected_reason))
        for pid, m in expected.items()
        if outcomes.get(pid) != (m.expected_outcome, m.expected_reason)
    ]
    assert wrong == []
    kinds = Counter(m.kind for m in expected.values())
    assert kinds["insufficient_funds"] and kinds["duplicate_retry"] and kinds["vignette"]
    assert refused and kinds_dead["security"] == len(refused)  # every forgery, nothing else
    assert not {switch_id(m.payment) for m in refused if m.payment} & set(outcomes)
