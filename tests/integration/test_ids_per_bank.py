"""A bank's ids are its own, through the embedded broker, on SQLite and PostgreSQL.

Bank 007 (A) attacks bank 011 (B) with nothing but its own key and the rights a bank
has: it publishes messages of its own carrying ids it predicted B would use, keys a
message as it likes, or asks for a step of B's payment. Each time B's genuine payment
settles as B sent it, A learns nothing of B's payments, and the counts add up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from engine.iso import safe_xml
from engine.iso.directory import BankDirectory
from engine.iso.reader import read_message
from engine.kafka.client import Outgoing
from engine.ledger.checks import check_ledger, expected_notifications, flow_counts
from engine.ledger.models import (
    BankReference,
    DeadLetter,
    HandledEvent,
    Hold,
    Notification,
    Payment,
    PaymentStep,
)
from producers.iso_import import import_file
from sakk.app import TOPOLOGY
from tests.factories import (
    AMINA,
    KARIM,
    RAM,
    SIGNERS,
    authorization,
    payment,
    signed,
    step,
    switch_id,
)
from tests.fixtures.iso.messages import Tx, pacs008
from tests.integration.test_flow import states
from tests.integration.test_lifecycle import done, run

pytestmark = pytest.mark.integration

A, B, C = "007", "011", "310"  # the attacker, its victim, a bank that is no party


def answered(flow: Any, published: int) -> bool:
    with flow.engine.connect() as conn:
        counts = flow_counts(conn, TOPOLOGY.entry.name)
        expected, finished = expected_notifications(conn)
    return counts.terminal + counts.dead_lettered >= published and finished >= expected


def ledger_ok(flow: Any, payments: int, dead_lettered: int = 0) -> None:
    """The ledger checks out, and in = out + rejected + dead-lettered: every payment
    published was answered (none left in flight) or dead-lettered."""
    with flow.engine.connect() as conn:
        report = check_ledger(conn)
        assert report.ok, report.sections()
        counts = flow_counts(conn, TOPOLOGY.entry.name)
    assert (counts.terminal, counts.in_flight) == (payments, 0)
    assert counts.dead_lettered == dead_lettered


def test_a_payment_carrying_another_banks_predicted_event_id_leaves_its_payment_alone(
    flow_factory, database_url
):
    flow = flow_factory(database_url)
    genuine = payment(KARIM, AMINA, 5_000)  # bank 011's, with the event id A predicted
    attack = payment(AMINA, KARIM, 0, event_id=genuine["event_id"])  # rejected AM12, free to A
    flow.publish([attack])
    flow.wait_until(lambda: answered(flow, 1))

    flow.publish([genuine])
    flow.wait_until(lambda: answered(flow, 2))

    assert states(flow) == {
        switch_id(attack): ("REJECTED", "AM12"),
        switch_id(genuine): ("SETTLED", None),
    }
    with flow.engine.connect() as conn:
        handled = set(
            conn.execute(select(HandledEvent.event_id).where(HandledEvent.consumer == "validator"))
            .scalars()
        )  # fmt: skip
    assert handled == {f"{A}:{genuine['event_id']}", f"{B}:{genuine['event_id']}"}
    ledger_ok(flow, 2)


def test_a_payment_carrying_another_banks_predicted_payment_id_leaves_its_payment_alone(
    flow_factory, database_url
):
    flow = flow_factory(database_url)
    genuine = payment(KARIM, AMINA, 5_000)
    attack = payment(AMINA, KARIM, 0, payment_id=genuine["payment_id"])
    flow.publish([attack])
    flow.wait_until(lambda: answered(flow, 1))

    flow.publish([genuine])
    flow.wait_until(lambda: answered(flow, 2))

    assert states(flow)[f"{B}:{genuine['payment_id']}"] == ("SETTLED", None)
    assert states(flow)[f"{A}:{genuine['payment_id']}"] == ("REJECTED", "AM12")
    with flow.engine.connect() as conn:
        assert conn.execute(select(DeadLetter)).all() == []  # no payment_id_reused
    ledger_ok(flow, 2)


def test_a_bank_reusing_its_own_payment_id_is_still_refused_as_reused(flow_factory, database_url):
    flow = flow_factory(database_url)
    first = payment(AMINA, KARIM, 1_000)
    again = payment(AMINA, KARIM, 2_000, payment_id=first["payment_id"])
    flow.publish([first])
    flow.wait_until(lambda: answered(flow, 1))

    flow.publish([again])
    flow.wait_until(lambda: answered(flow, 2))

    with flow.engine.connect() as conn:
        kinds = conn.execute(select(DeadLetter.kind)).scalars().all()
    assert kinds == ["payment_id_reused"]
    assert states(flow) == {switch_id(first): ("SETTLED", None)}


def test_a_step_carrying_another_banks_predicted_step_id_leaves_its_step_alone(
    flow_factory, database_url
):
    flow = flow_factory(database_url)
    victims = authorization(KARIM, RAM, 4_000)  # bank 011's card purchase at a 007 merchant
    own = authorization(AMINA, RAM, 1_000)  # bank 007's own
    capture = step(victims, "CAPTURE", B, 4_000)  # its id is its event id: A predicted it
    decoy = dict(step(own, "VOID", A), event_id=capture["event_id"])
    run(flow, [victims, own], [decoy])

    flow.publish_steps([capture])
    flow.wait_until(lambda: done(flow, 2, 2))

    with flow.engine.connect() as conn:
        steps = {
            r.step_id: (r.payment_id, r.kind, r.outcome) for r in conn.execute(select(PaymentStep))
        }
    sid = capture["event_id"]
    assert steps == {
        f"{A}:{sid}": (switch_id(own), "VOID", "APPLIED"),
        f"{B}:{sid}": (switch_id(victims), "CAPTURE", "APPLIED"),
    }
    assert states(flow)[switch_id(victims)] == ("CAPTURED", None)
    ledger_ok(flow, 2)


def test_predicted_ids_of_another_banks_iso_import_leave_its_payments_alone(
    flow_factory, database_url, tmp_path: Path
):
    flow = flow_factory(database_url)
    path = tmp_path / "b.xml"
    path.write_bytes(pacs008([Tx("B-ISO-1", KARIM, AMINA, "50.00")], msg_id="B-2026-000042"))
    with flow.engine.connect() as conn:
        directory = BankDirectory.load(conn)
    # The ids are derived from payer bank, MsgId and position: anyone can compute them.
    (predicted,) = [
        t.payment for t in read_message(safe_xml.read_file(path), directory).transactions
    ]
    attack = payment(
        AMINA, KARIM, 0, event_id=predicted["event_id"], payment_id=predicted["payment_id"]
    )
    flow.publish([attack])
    flow.wait_until(lambda: answered(flow, 1))

    report = import_file(
        flow.settings,
        BankDirectory.from_ledger(flow.engine),
        path,
        signers=SIGNERS,
        codec=flow.codec,
    )
    flow.wait_until(lambda: answered(flow, 2))

    (published,) = report.published
    assert published.payment_id == f"{B}:{predicted['payment_id']}"  # what to trace it by
    assert states(flow) == {
        switch_id(attack): ("REJECTED", "AM12"),
        published.payment_id: ("SETTLED", None),
    }
    ledger_ok(flow, 2)


def test_a_message_keyed_by_another_account_than_its_payer_is_refused_and_nothing_recorded(
    flow_factory, database_url
):
    flow = flow_factory(database_url)
    topic = flow.settings.topic("initiated")
    genuine = payment(KARIM, AMINA, 5_000)
    value = flow.codec.encode("PaymentInitiated", genuine)
    chosen = AMINA[1].encode()  # a partition of the bank's choosing, signed over
    flow.send([Outgoing(topic, chosen, value, signed(topic, chosen, value, B))])
    flow.wait_until(lambda: answered(flow, 1))

    with flow.engine.connect() as conn:
        (dead,) = conn.execute(select(DeadLetter.kind, DeadLetter.reason)).all()
        assert conn.execute(select(Payment)).all() == []
        assert conn.execute(select(BankReference)).all() == []
    assert dead.kind == "security" and dead.reason.startswith("key_mismatch:")
    assert AMINA[1] not in dead.reason and KARIM[1] not in dead.reason

    flow.publish([genuine])  # keyed by its payer: the same reference is still free
    flow.wait_until(lambda: answered(flow, 2))
    assert states(flow) == {switch_id(genuine): ("SETTLED", None)}
    ledger_ok(flow, 1, dead_lettered=1)


def test_a_capture_by_a_bank_that_is_no_party_learns_nothing_whatever_it_guessed(
    flow_factory, database_url
):
    flow = flow_factory(database_url)
    victims = authorization(KARIM, RAM, 4_000)  # parties: banks 011 and 007; 310 is none
    known = switch_id(victims)  # suppose bank 310 even knows the switch's id
    asks = [
        step(victims, "CAPTURE", C, 1_000) | {"payment_id": known},  # payer account right
        step(victims, "CAPTURE", C, 1_000) | {"payment_id": known, "payer_account": AMINA[1]},
        step(victims, "CAPTURE", C, 1_000) | {"payment_id": f"{B}:no-such-payment"},
        step(victims, "CAPTURE", C, 1_000) | {"payment_id": victims["payment_id"]},  # 310's own
    ]
    run(flow, [victims], asks)

    with flow.engine.connect() as conn:
        refusals = {
            (r.reason_code, r.reason_message)
            for r in conn.execute(select(PaymentStep).where(PaymentStep.sender_bank == C))
        }
        told = [
            json.loads(n.payload)
            for n in conn.execute(select(Notification).where(Notification.recipient_bank == C))
        ]
        hold = conn.execute(select(Hold.state, Hold.captured_minor)).all()
        dead = conn.execute(select(DeadLetter.kind, DeadLetter.reason)).all()
    assert hold == [("ACTIVE", 0)], dead
    assert refusals == {("AG01", "not a party to this payment or no such payment")}
    assert len(told) == len(asks)
    for payload in told:
        assert payload["reason_code"] == "AG01"
        assert payload["reason_message"] == "not a party to this payment or no such payment"
        assert not {"payer_bank", "payee_bank", "payee_account", "fee_minor"} & set(payload)
        assert payload["sender_bank"] == C
    ledger_ok(flow, 1)


def test_a_bank_retrying_an_event_from_before_namespaces_is_refused_am05(
    flow_factory, database_url
):
    """A ledger from before ids were per bank holds the bank's bare ids; the bank's retry
    after the upgrade is a new event (its id is now qualified), caught by its reference."""
    flow = flow_factory(database_url)
    retry = payment(KARIM, AMINA, 5_000, reference="BOA-OLD-1")
    with flow.engine.begin() as conn:  # what revision 0008 left of the first attempt
        conn.execute(
            insert(BankReference),
            [{"bank_code": B, "bank_reference": "BOA-OLD-1", "payment_id": retry["payment_id"]}],
        )
    flow.publish([retry])
    flow.wait_until(lambda: answered(flow, 1))

    assert states(flow) == {switch_id(retry): ("REJECTED", "AM05")}
