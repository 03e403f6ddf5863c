"""docs/banks.md proved: a bank's client written from the page alone reaches settlement.

``tests/bank_client/foreign_client.py`` imports nothing of Sakk (kafka-python, fastavro
and cryptography only). Here it publishes, as bank 007 with a key of its own, a signed
card authorization and the capture of it, through the embedded broker, on SQLite and
PostgreSQL; and a message in the Confluent wire format, which the switch dead-letters.
"""

from __future__ import annotations

import base64
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastavro import parse_schema, schemaless_writer
from sqlalchemy import select

from engine.ledger.balances import balance_of
from engine.ledger.checks import check_ledger, expected_notifications, flow_counts
from engine.ledger.keys import KeyEntry, register_keys
from engine.ledger.models import DeadLetter, Hold, Notification, Payment, PaymentStep
from sakk.app import TOPOLOGY
from tests.bank_client.foreign_client import BankPublisher, send
from tests.factories import AMINA, RAM

pytestmark = pytest.mark.integration

BANK = "007"


def bank_publisher(flow: Any) -> BankPublisher:
    """Bank 007's own publisher, its fresh key registered as the operator would."""
    private = Ed25519PrivateKey.generate()
    publisher = BankPublisher(
        BANK, private, flow.settings.schemas_dir, topic_prefix=flow.settings.topic_prefix
    )
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    entry = KeyEntry(
        BANK, publisher.key_id, base64.b64encode(raw).decode(),
        datetime.now(UTC) - timedelta(days=1),
    )  # fmt: skip
    with flow.engine.begin() as conn:
        register_keys(conn, [entry])
    return publisher


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def card_authorization(amount_minor: int) -> dict[str, Any]:
    """A PaymentInitiated as the page shows it: a POS purchase that asks for a hold."""
    return {
        "event_id": f"E-{uuid.uuid4().hex[:20]}",
        "payment_id": f"P-{uuid.uuid4().hex[:20]}",
        "bank_reference": f"AUTH-{uuid.uuid4().hex[:12]}",
        "occurred_at": now_ms(),
        "payer_bank": AMINA[0],
        "payer_account": AMINA[1],
        "payee_bank": RAM[0],
        "payee_account": RAM[1],
        "amount_minor": amount_minor,
        "currency": "MAD",
        "channel": "POS",
        "payment_type": "PURCHASE",
        "merchant_category_code": "4511",
        "egov_service": None,
        "intent": "AUTHORIZATION",
        "remittance_info": None,
    }


def capture(of: dict[str, Any], amount_minor: int) -> dict[str, Any]:
    """A PaymentStepRequested by the payer's bank, naming the payment by its own id."""
    return {
        "event_id": f"E-{uuid.uuid4().hex[:20]}",
        "payment_id": of["payment_id"],
        "bank_reference": f"CAP-{uuid.uuid4().hex[:12]}",
        "occurred_at": now_ms(),
        "sender_bank": BANK,
        "payer_account": of["payer_account"],
        "step": "CAPTURE",
        "amount_minor": amount_minor,
        "currency": "MAD",
        "final": True,
        "reason_code": None,
    }


def done(flow: Any, payments: int, steps: int, dead: int = 0) -> bool:
    with flow.engine.connect() as conn:
        counts = flow_counts(conn, TOPOLOGY.entry.name)
        expected, finished = expected_notifications(conn)
    return (
        counts.terminal + counts.dead_lettered >= payments + dead
        and counts.steps_applied + counts.steps_refused >= steps
        and finished >= expected
    )


def test_a_client_written_from_the_guide_authorizes_and_captures(flow_factory, database_url):
    flow = flow_factory(database_url)
    bank = bank_publisher(flow)
    auth = card_authorization(15_000)
    cap = capture(auth, 15_000)

    send(flow.settings.kafka_bootstrap_servers, [bank.payment(auth), bank.step(cap)])
    flow.wait_until(lambda: done(flow, 1, 1))

    payment_id = f"{BANK}:{auth['payment_id']}"  # the switch keeps BANK:ID
    with flow.engine.connect() as conn:
        payment = conn.execute(select(Payment).where(Payment.payment_id == payment_id)).one()
        hold = conn.execute(select(Hold).where(Hold.payment_id == payment_id)).one()
        steps = conn.execute(
            select(PaymentStep.kind, PaymentStep.outcome, PaymentStep.step_id).where(
                PaymentStep.payment_id == payment_id
            )
        ).all()
        told = {
            (r.outcome, r.recipient_bank)
            for r in conn.execute(select(Notification).where(Notification.payment_id == payment_id))
        }
        dead = conn.execute(select(DeadLetter.kind, DeadLetter.reason)).all()
        assert balance_of(conn, RAM[1]) == 15_000
        check = check_ledger(conn)
    assert dead == []
    assert (payment.state, payment.captured_minor) == ("CAPTURED", 15_000)
    assert (payment.signer_bank, payment.signer_key_id) == (BANK, bank.key_id)
    assert (hold.state, hold.reserved_minor) == ("CAPTURED", 0)
    assert [tuple(s) for s in steps] == [("CAPTURE", "APPLIED", f"{BANK}:{cap['event_id']}")]
    assert told == {("AUTHORIZE", BANK), ("CAPTURE", BANK)}
    assert check.ok, check.violations


def test_the_confluent_wire_format_is_dead_lettered_undecodable(flow_factory, sqlite_url):
    """Magic byte 0 and a 4-byte registry id instead of C3 01 and the fingerprint: refused,
    recorded as a dead letter, and the bank's correctly framed payment behind it settles."""
    flow = flow_factory(sqlite_url)
    bank = bank_publisher(flow)
    framed_as_confluent = card_authorization(10_000)
    sale = dict(card_authorization(10_000), intent="SALE")
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(bank.schemas["payment_initiated"]), framed_as_confluent)
    confluent = b"\x00" + (42).to_bytes(4, "big") + body.getvalue()

    send(
        flow.settings.kafka_bootstrap_servers,
        [bank.signed(AMINA[1].encode(), confluent), bank.payment(sale)],
    )
    flow.wait_until(lambda: done(flow, 1, 0, dead=1))

    with flow.engine.connect() as conn:
        dead = conn.execute(select(DeadLetter.kind, DeadLetter.reason)).all()
        states = dict(conn.execute(select(Payment.payment_id, Payment.state)).all())
    assert [kind for kind, _ in dead] == ["undecodable"]
    assert "Confluent wire format" in dead[0].reason, dead[0].reason
    assert states == {f"{BANK}:{sale['payment_id']}": "SETTLED"}
