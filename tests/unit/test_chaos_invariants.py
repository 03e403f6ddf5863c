"""The invariant checker on a real SQLite ledger, fed Kafka-free through ``BatchProcessor``.

A clean flow must pass every check; each doctored ledger or wire must be caught.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, update

from consumers.delivery import DeliveryBook, deliver_due
from consumers.notification import NotificationStage
from consumers.senders import LogSender
from consumers.settlement import Settlement
from consumers.validator import Validator
from engine.app import make_codec
from engine.chaos.faults import Receipt, WebhookLog
from engine.chaos.invariants import Evidence, check_all
from engine.chaos.wire import WireRecord
from engine.chaos.workload import ABSURD_REASONS, GOOD_OUTCOMES, ExpectedPayment, Message, Workload
from engine.config import Settings, load_settings
from engine.kafka.client import Outgoing
from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import Account, Notification, NotificationAttempt, Payment
from engine.ledger.reference import load_reference_data, read_file
from engine.runtime import BatchProcessor, RawMessage
from tests.factories import AMINA, KARIM, REFERENCE_FILE, payment


def now_ms() -> int:
    """The broker's record time: now, as the validator compares it with the event's time."""
    return int(datetime.now(UTC).timestamp() * 1000)


class Pump:
    """Runs the three stages in order over in-memory topics: the wire, without Kafka."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.codec = make_codec(settings, with_store=False)
        self.sender = LogSender(settings.notify_log_path)
        self.book = DeliveryBook(settings, engine, self.codec, self.sender.name)
        self.stages = [
            BatchProcessor(Validator(settings), engine, self.codec, settings),
            BatchProcessor(Settlement(settings), engine, self.codec, settings),
            BatchProcessor(NotificationStage(settings), engine, self.codec, settings),
        ]
        self.wire: dict[str, list[WireRecord]] = {
            n: [] for n in ("initiated", "validated", "rejected", "settled", "failed", "notified",
                            "dlq")
        }  # fmt: skip

    def publish(self, messages: list[Message]) -> None:
        self._append(
            [Outgoing(self.settings.topic("initiated"), m.key or b"", m.value) for m in messages]
        )  # type: ignore[arg-type]

    def run(self) -> None:
        inputs = (("initiated",), ("validated",), ("rejected", "settled", "failed"))
        for processor, topics in zip(self.stages, inputs, strict=True):
            raw = [
                RawMessage(self.settings.topic(t), r.partition, r.offset, r.key, r.value, now_ms())
                for t in topics
                for r in self.wire[t]
            ]
            self._append(processor.process(raw).outgoing)
        self._append(deliver_due(self.book, self.sender, datetime.now(UTC)))

    def _append(self, outgoing: list[Outgoing]) -> None:
        for m in outgoing:
            name = m.topic.split(".", 1)[1]
            records = self.wire[name]
            records.append(WireRecord(m.topic, 0, len(records), m.key, m.value, m.headers))


@pytest.fixture
def ledger(tmp_path: Path) -> tuple[Settings, Engine, dict[str, int]]:
    settings = load_settings(
        environ={},
        database_url=f"sqlite:///{tmp_path / 'l.db'}",
        data_dir=tmp_path,
        notify_log_path=tmp_path / "n.jsonl",
    )
    upgrade(settings.ledger_url)
    engine = make_engine(settings.ledger_url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    with engine.connect() as conn:
        balances = {n: b for n, b in conn.execute(select(Account.number, Account.balance_minor))}
    return settings, engine, balances


def flow(ledger: tuple[Settings, Engine, dict[str, int]]) -> tuple[Pump, Evidence]:
    settings, engine, balances = ledger
    pump = Pump(settings, engine)
    now = datetime.now(UTC).replace(microsecond=0)
    good = payment(AMINA, KARIM, 10_000, occurred_at=now)
    short = payment(KARIM, AMINA, 50_000, occurred_at=now)  # fails AM04
    zero = payment(AMINA, KARIM, 0, occurred_at=now)  # rejected AM12
    encode = pump.codec.encode
    messages = [
        Message(
            r["payer_account"].encode(), encode("PaymentInitiated", r), "payment", r["payment_id"]
        )
        for r in (good, short, zero)
    ]
    copy = Message(messages[0].key, messages[0].value, "bank_retry")
    poison = Message(b"k", b"not avro", "random_bytes")
    expected = {
        r["payment_id"]: ExpectedPayment(r["payment_id"], "payment", GOOD_OUTCOMES)
        for r in (good, short)
    }
    expected[zero["payment_id"]] = ExpectedPayment(
        zero["payment_id"], "zero_amount", {"REJECTED": ABSURD_REASONS["zero_amount"]}
    )
    workload = Workload(1, [*messages, copy, poison], expected, Counter({"undecodable": 1}))
    pump.publish(workload.messages)
    pump.run()
    return pump, Evidence(settings, pump.codec, workload, balances, pump.wire, None)


def violations(engine: Engine, evidence: Evidence) -> list[str]:
    with engine.connect() as conn:
        return check_all(conn, evidence)[1]


def test_clean_flow_keeps_every_invariant(ledger):
    _pump, evidence = flow(ledger)
    engine = ledger[1]
    with engine.connect() as conn:
        checked, found = check_all(conn, evidence)
    assert found == []
    assert checked.states == Counter({"SETTLED": 1, "FAILED": 1, "REJECTED": 1})
    assert checked.dead_lettered == 1
    assert checked.postings == 1


def test_a_second_delivery_of_the_whole_wire_changes_nothing(ledger):
    pump, evidence = flow(ledger)
    pump.run()  # every stage reads its input topics again, same offsets: a redelivery
    assert violations(ledger[1], evidence) == []
    assert len(pump.wire["settled"]) == 2  # the stored event re-sent, same bytes


def test_a_balance_that_moved_twice_is_caught(ledger):
    _pump, evidence = flow(ledger)
    engine = ledger[1]
    with engine.begin() as conn:
        conn.execute(
            update(Account)
            .where(Account.number == KARIM[1])
            .values(balance_minor=Account.balance_minor + 10_000)
        )
    found = violations(engine, evidence)
    assert any(KARIM[1] in v and v.startswith("balance") for v in found)
    assert any("balance" in v and "sum of entries" in v for v in found)


def test_money_from_nowhere_is_caught(ledger):
    _pump, evidence = flow(ledger)
    engine = ledger[1]
    with engine.begin() as conn:
        conn.execute(
            insert(Account),
            [
                {
                    "number": "007000000000000000000777",
                    "bank_code": "007",
                    "kind": "CUSTOMER",
                    "holder": "Nobody",
                    "currency": "MAD",
                    "balance_minor": 1,
                }
            ],
        )
    found = violations(engine, evidence)
    assert any(v.startswith("money not conserved: MAD") for v in found)
    assert any("007000000000000000000777: balance 1 != sum of entries 0" in v for v in found)


def test_a_lost_payment_and_a_missing_notification_are_caught(ledger):
    _pump, evidence = flow(ledger)
    engine = ledger[1]
    rejected = next(p for p, e in evidence.workload.payments.items() if e.label == "zero_amount")
    with engine.begin() as conn:
        ids = select(Notification.notification_id).where(Notification.payment_id == rejected)
        attempts = NotificationAttempt.__table__
        conn.execute(attempts.delete().where(attempts.c.notification_id.in_(ids)))
        conn.execute(Notification.__table__.delete().where(Notification.payment_id == rejected))
        conn.execute(Payment.__table__.delete().where(Payment.payment_id == rejected))
    found = violations(engine, evidence)
    assert any(v.startswith("payment lost") and rejected in v for v in found)
    assert any(v.startswith("published 4 != ") for v in found)


def test_an_event_whose_copies_differ_on_the_wire_is_caught(ledger):
    _pump, evidence = flow(ledger)
    settled = evidence.wire["settled"][0]
    other = evidence.codec.decode(settled.value).record | {"fee_minor": 1}
    changed = evidence.codec.encode("PaymentSettled", other)
    evidence.wire["settled"].append(WireRecord(settled.topic, 0, 1, settled.key, changed, ()))  # type: ignore[index]
    assert any("different content" in v for v in violations(ledger[1], evidence))


def test_a_dead_letter_without_its_reason_is_caught(ledger):
    _pump, evidence = flow(ledger)
    dead = evidence.wire["dlq"][0]
    evidence.wire["dlq"][0] = WireRecord(dead.topic, 0, 0, dead.key, dead.value, ())  # type: ignore[index]
    assert any("carries no reason" in v for v in violations(ledger[1], evidence))


def test_a_receiver_that_never_accepted_a_delivered_notification_is_caught(ledger):
    _pump, evidence = flow(ledger)
    engine = ledger[1]
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                Notification.notification_id,
                Notification.payment_id,
                Notification.outcome,
                Notification.recipient_bank,
            )
        ).all()
    log = WebhookLog(
        receipts={r[0]: Receipt(r[1], r[2], r[3], requests=1, accepted=1) for r in rows[1:]}
    )
    evidence.webhook = log
    found = violations(engine, evidence)
    assert found == [
        f"notification: notification {rows[0][0]} recorded DELIVERED, the bank never accepted it"
    ]
