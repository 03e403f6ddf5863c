"""The invariant checker on a real SQLite ledger, fed Kafka-free through ``BatchProcessor``.

A clean flow must pass every check; each doctored ledger or wire must be caught.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, insert, select, update

from consumers.expiry import due_expiries
from consumers.notification import NotificationStage
from consumers.notify.book import DeliveryBook, deliver_due
from consumers.notify.channels import LogSender
from consumers.settlement import Settlement
from consumers.validator import Validator
from engine.config import Settings
from engine.kafka.client import Outgoing
from engine.ledger.models import Account, DeadLetter, Notification, NotificationAttempt, Payment
from engine.pipeline.messages import RawMessage
from engine.pipeline.processor import BatchProcessor
from engine.pipeline.quarantine import MAX_DEATHS, poison_reason
from sakk.app import make_codec
from tests.factories import AMINA, KARIM, payment, signed, switch_id
from tooling.chaos.faults import Receipt, WebhookLog
from tooling.chaos.invariants import Evidence, check_all
from tooling.chaos.wire import WireRecord
from tooling.workload.chaos import ABSURD_REASONS, GOOD_OUTCOMES, ExpectedPayment, Workload
from tooling.workload.core import Message


def now_ms() -> int:
    """The broker's record time: now, as the validator compares it with the event's time."""
    return int(datetime.now(UTC).timestamp() * 1000)


class Pump:
    """Runs the three stages in order over in-memory topics: the wire, without Kafka."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.codec = make_codec(settings)
        self.sender = LogSender(settings.notify_log_path)
        self.book = DeliveryBook(settings, engine, self.codec, self.sender.name)
        self.stages = [
            BatchProcessor(Validator(settings), engine, self.codec, settings),
            BatchProcessor(Settlement(settings), engine, self.codec, settings),
            BatchProcessor(NotificationStage(settings), engine, self.codec, settings),
        ]
        self.wire: dict[str, list[WireRecord]] = {
            n: [] for n in ("initiated", "validated", "rejected", "settled", "failed", "steps",
                            "steps-refused", "notified", "dlq")
        }  # fmt: skip

    def publish(self, messages: list[Message]) -> None:
        topic = self.settings.topic("initiated")
        self._append([Outgoing(topic, m.key or b"", m.value, m.headers) for m in messages])  # type: ignore[arg-type]

    def expire(self, now: datetime) -> None:
        """What the expiry scheduler does: the expiries due at ``now``, on payments.validated."""
        topic = self.settings.topic("validated")
        self._append([
            Outgoing(topic, e["payer_account"].encode(),
                     self.codec.encode("PaymentStepValidated", e))
            for e in due_expiries(self.book.engine, now, 100)
        ])  # fmt: skip

    def run(self) -> None:
        notified = ("rejected", "settled", "failed", "steps", "steps-refused")
        inputs = (("initiated",), ("validated",), notified)
        for processor, topics in zip(self.stages, inputs, strict=True):
            raw = [
                RawMessage(
                    self.settings.topic(t),
                    r.partition,
                    r.offset,
                    r.key,
                    r.value,
                    now_ms(),
                    headers=r.headers,
                )  # fmt: skip
                for t in topics
                for r in self.wire[t]
            ]
            self._append(processor.process(raw).outgoing)
        self._append([a.message for a in deliver_due(self.book, self.sender, datetime.now(UTC))])

    def _append(self, outgoing: list[Outgoing]) -> None:
        for m in outgoing:
            name = m.topic.split(".", 1)[1]
            records = self.wire[name]
            records.append(WireRecord(m.topic, 0, len(records), m.key, m.value, m.headers))


def flow(ledger: tuple[Settings, Engine, dict[str, int]]) -> tuple[Pump, Evidence]:
    settings, engine, balances = ledger
    pump = Pump(settings, engine)
    now = datetime.now(UTC).replace(microsecond=0)
    good = payment(AMINA, KARIM, 10_000, occurred_at=now)
    short = payment(KARIM, AMINA, 50_000, occurred_at=now)  # fails AM04
    zero = payment(AMINA, KARIM, 0, occurred_at=now)  # rejected AM12
    topic, encode = settings.topic("initiated"), pump.codec.encode
    messages = []
    for r in (good, short, zero):  # each signed by its payer's bank, as a bank publishes it
        key, value = r["payer_account"].encode(), encode("PaymentInitiated", r)
        headers = signed(topic, key, value, r["payer_bank"])
        messages.append(Message(key, value, "payment", switch_id(r), headers))
    copy = Message(messages[0].key, messages[0].value, "bank_retry", None, messages[0].headers)
    poison = Message(b"k", b"not avro", "random_bytes", None, signed(topic, b"k", b"not avro"))
    expected = {
        switch_id(r): ExpectedPayment(switch_id(r), "payment", GOOD_OUTCOMES) for r in (good, short)
    }
    expected[switch_id(zero)] = ExpectedPayment(
        switch_id(zero), "zero_amount", {"REJECTED": ABSURD_REASONS["zero_amount"]}
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


def _notified_of(evidence: Evidence, nid: str) -> list[int]:
    """Positions on the notified topic of the PaymentNotified records announcing ``nid``."""
    return [
        i
        for i, r in enumerate(evidence.wire["notified"])
        if evidence.codec.decode(r.value).record["notification_id"] == nid
    ]


def _a_notification(engine: Engine) -> str:
    with engine.connect() as conn:
        return (
            conn.execute(
                select(Notification.notification_id).order_by(Notification.notification_id)
            )
            .scalars()
            .first()
        )


def test_a_notification_given_up_is_caught_though_it_was_announced(ledger):
    _pump, evidence = flow(ledger)
    engine = ledger[1]
    nid = _a_notification(engine)
    with engine.begin() as conn:
        conn.execute(
            update(Notification)
            .where(Notification.notification_id == nid)
            .values(status="FAILED", last_error="timeout after 1000 ms")
        )
    found = violations(engine, evidence)
    assert any(f"notification {nid} to bank" in v and "was given up (FAILED" in v for v in found)
    assert any(
        f"PaymentNotified for {nid} says DELIVERED, the ledger says FAILED" in v for v in found
    )


def test_a_notification_still_pending_is_caught(ledger):
    _pump, evidence = flow(ledger)
    engine = ledger[1]
    nid = _a_notification(engine)
    with engine.begin() as conn:
        conn.execute(
            update(Notification).where(Notification.notification_id == nid).values(status="PENDING")
        )
    assert f"notification: notification {nid} is still PENDING" in violations(engine, evidence)


def test_a_missing_payment_notified_is_caught(ledger):
    _pump, evidence = flow(ledger)
    nid = _a_notification(ledger[1])
    (position,) = _notified_of(evidence, nid)
    del evidence.wire["notified"][position]  # type: ignore[attr-defined]
    assert violations(ledger[1], evidence) == [
        f"notification: notification {nid} is DELIVERED, no PaymentNotified says so"
    ]


def test_identical_copies_of_a_payment_notified_are_harmless_a_second_event_is_not(ledger):
    _pump, evidence = flow(ledger)
    engine, notified = ledger[1], evidence.wire["notified"]
    nid = _a_notification(engine)
    (position,) = _notified_of(evidence, nid)
    first = notified[position]
    notified.append(WireRecord(first.topic, 0, len(notified), first.key, first.value, ()))  # type: ignore[attr-defined]
    assert violations(engine, evidence) == []  # a copy: same event id, same bytes
    record = evidence.codec.decode(first.value).record | {"event_id": "another-event-id"}
    second = evidence.codec.encode("PaymentNotified", record)
    notified.append(WireRecord(first.topic, 0, len(notified), first.key, second, ()))  # type: ignore[attr-defined]
    found = violations(engine, evidence)
    assert any(f"notification {nid} has 2 distinct PaymentNotified events" in v for v in found)
    assert any(
        "PaymentNotified another-event-id" in v and "id derived from its cause" in v for v in found
    )


def test_delivered_without_a_successful_attempt_recorded_is_caught(ledger):
    _pump, evidence = flow(ledger)
    engine = ledger[1]
    nid = _a_notification(engine)
    attempts = NotificationAttempt.__table__
    with engine.begin() as conn:
        conn.execute(attempts.delete().where(attempts.c.notification_id == nid))
    assert violations(engine, evidence) == [
        f"notification: notification {nid} recorded DELIVERED without a successful attempt recorded"
    ]


@pytest.mark.parametrize(("deaths", "caught"), [(1, True), (MAX_DEATHS, False)])
def test_only_a_poison_killed_max_deaths_times_alone_is_expected(ledger, deaths, caught):
    """Random kills must never quarantine a message: a poison short of its deaths is caught."""
    _pump, evidence = flow(ledger)
    evidence.workload.dead_letters = Counter({"poison": 1})  # the planted killer
    with ledger[1].begin() as conn:
        conn.execute(update(DeadLetter).values(kind="poison", reason=poison_reason(deaths)))
    found = violations(ledger[1], evidence)
    assert any("poison dead-lettered without MAX_DEATHS" in v for v in found) == caught, found
