"""Signed bank events through the embedded broker, on SQLite and PostgreSQL.

No bank may act for another: every refusal is a security dead letter that records
nothing else (no payment, no bank reference), and the line carries on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from engine.audit.replay import ReplayRequest, replay
from engine.kafka.client import Outgoing
from engine.ledger.keys import register_keys, revoke_key
from engine.ledger.models import BankReference, DeadLetter, Payment
from engine.trust.keys import KeyPair
from engine.trust.signing import SIGNATURE_HEADER, EventSigner
from producers.signing import Signers
from sakk.app import TOPOLOGY
from tests.factories import AMINA, KARIM, REFERENCE_FILE, SIGNERS, YOUSSEF, payment, switch_id
from tests.integration.test_flow import drained, states

pytestmark = pytest.mark.integration


def dead_letters(flow) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with flow.engine.connect() as conn:
        rows = conn.execute(select(DeadLetter.kind, DeadLetter.reason).order_by(DeadLetter.id))
        return [(kind, reason) for kind, reason in rows]


def count(flow, model) -> int:  # type: ignore[no-untyped-def]
    with flow.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def encoded(flow, record) -> tuple[bytes, bytes]:  # type: ignore[no-untyped-def]
    return record["payer_account"].encode(), flow.codec.encode("PaymentInitiated", record)


def refusals(reason: str) -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "sakk_security_refusals":
            total += sum(
                s.value
                for s in metric.samples
                if s.name.endswith("_total") and s.labels["reason"] == reason
            )
    return total


def test_a_forged_payment_is_dead_lettered_and_the_genuine_one_with_its_reference_settles(
    flow_factory, database_url
):
    flow = flow_factory(database_url)
    topic = flow.settings.topic("initiated")
    genuine = payment(KARIM, AMINA, 5_000, reference="BOA-2026-0001")  # bank 011's customer
    forged = dict(genuine, event_id="f" * 32, payment_id="forged-1")
    key, value = encoded(flow, forged)
    before = refusals("signer_not_payer_bank")
    # Bank 007 signs, with its own valid key, a payment out of a bank 011 account.
    flow.send([Outgoing(topic, key, value, SIGNERS.headers("007", topic, key, value))])
    # ... and claims to be bank 011, with 007's key: no such key of 011.
    impostor = Signers([EventSigner("011", SIGNERS.get("007").key)])
    forged2 = dict(genuine, event_id="e" * 32, payment_id="forged-2")
    key2, value2 = encoded(flow, forged2)
    flow.send([Outgoing(topic, key2, value2, impostor.headers("011", topic, key2, value2))])
    flow.wait_until(lambda: len(dead_letters(flow)) == 2)
    assert [kind for kind, _ in dead_letters(flow)] == ["security", "security"]
    reasons = sorted(reason.split(":", 1)[0] for _, reason in dead_letters(flow))
    assert reasons == ["key_unknown", "signer_not_payer_bank"]
    assert count(flow, Payment) == 0 and count(flow, BankReference) == 0  # nothing recorded
    assert refusals("signer_not_payer_bank") == before + 1

    flow.publish([genuine])  # signed by 011: the same reference is still free
    flow.wait_until(lambda: drained(flow, 3))
    assert states(flow)[switch_id(genuine)] == ("SETTLED", None)
    with flow.engine.connect() as conn:
        signer = conn.execute(
            select(Payment.signer_bank, Payment.signer_key_id, Payment.signature).where(
                Payment.payment_id == switch_id(genuine)
            )
        ).one()
    assert signer[:2] == ("011", SIGNERS.get("011").key_id) and len(signer[2]) == 64


def test_every_bad_signature_is_refused_with_its_reason_and_the_line_carries_on(
    flow_factory, database_url
):
    flow = flow_factory(database_url)
    topic = flow.settings.topic("initiated")
    bank = SIGNERS.get("007")

    def message(headers_of, change_value=lambda v: v) -> Outgoing:  # type: ignore[no-untyped-def]
        key, value = encoded(flow, payment(AMINA, KARIM, 100))
        return Outgoing(topic, key, change_value(value), tuple(headers_of(key, value)))

    def replaced(key, value, name, new):  # type: ignore[no-untyped-def]
        return [(n, new if n == name else v) for n, v in bank.headers(topic, key, value)]

    stranger = EventSigner("007", KeyPair.from_seed(b"never registered"))
    cases = {
        "signature_missing": message(lambda k, v: ()),
        "signature_malformed": message(lambda k, v: replaced(k, v, SIGNATURE_HEADER, b"x" * 10)),
        "key_unknown": message(lambda k, v: stranger.headers(topic, k, v)),
        "signature_invalid": message(
            lambda k, v: bank.headers(topic, k, v), lambda v: v[:-1] + bytes([v[-1] ^ 1])
        ),
        "header_too_large": message(
            lambda k, v: [*bank.headers(topic, k, v), ("sakk.note", b"x" * 100_000)]
        ),
    }
    moved = message(lambda k, v: bank.headers("other-switch.initiated", k, v))
    good = payment(AMINA, YOUSSEF, 100)
    flow.send([*cases.values(), moved])
    flow.publish([good])
    flow.wait_until(lambda: drained(flow, len(cases) + 2))
    reasons = [reason.split(":", 1)[0] for _, reason in dead_letters(flow)]
    assert sorted(reasons) == sorted([*cases, "signature_invalid"])
    assert {kind for kind, _ in dead_letters(flow)} == {"security"}
    assert states(flow) == {switch_id(good): ("SETTLED", None)}  # in = out + dead-lettered
    assert count(flow, BankReference) == 1


def test_a_rotated_key_is_accepted_and_a_revoked_one_refused_from_its_revocation(
    flow_factory, database_url
):
    flow = flow_factory(database_url)
    old = SIGNERS.get("007")
    new = EventSigner("007", KeyPair.from_seed(b"tests/007/rotation"))
    with flow.engine.begin() as conn:
        register_keys(conn, Signers([new]).key_entries(datetime.now(UTC) - timedelta(days=1)))
    topic = flow.settings.topic("initiated")
    first, second = payment(AMINA, YOUSSEF, 100), payment(AMINA, YOUSSEF, 200)
    k1, v1 = encoded(flow, first)
    k2, v2 = encoded(flow, second)
    flow.send(
        [
            Outgoing(topic, k1, v1, old.headers(topic, k1, v1)),
            Outgoing(topic, k2, v2, new.headers(topic, k2, v2)),
        ]
    )
    flow.wait_until(lambda: drained(flow, 2))
    assert set(states(flow).values()) == {("SETTLED", None)}  # both keys valid at once

    revoke_key(flow.engine, "007", old.key_id, datetime.now(UTC))
    late = payment(AMINA, YOUSSEF, 300)
    k3, v3 = encoded(flow, late)
    flow.send(
        [Outgoing(topic, k3, v3, old.headers(topic, k3, v3))]
    )  # judged at receipt, after the revocation
    flow.wait_until(lambda: len(dead_letters(flow)) == 1)
    assert dead_letters(flow)[0][1].startswith("key_revoked")
    assert switch_id(late) not in states(flow)


def test_replay_verifies_every_signature_against_the_reference_keys_and_reports_failures(
    flow_factory, sqlite_url, tmp_path
):
    flow = flow_factory(sqlite_url)
    topic = flow.settings.topic("initiated")
    good = [payment(AMINA, YOUSSEF, 100 + i) for i in range(3)]
    key, value = encoded(flow, payment(AMINA, YOUSSEF, 999))
    flow.publish(good)
    flow.send([Outgoing(topic, key, value, SIGNERS.headers("011", topic, key, value))])
    flow.wait_until(lambda: drained(flow, 4))

    report = replay(
        flow.settings,
        ReplayRequest(REFERENCE_FILE, f"sqlite:///{tmp_path / 'replay.db'}"),
        TOPOLOGY,
    )
    assert report.signatures_verified == 3
    assert len(report.signature_failures) == 1
    assert "signer_not_payer_bank" in report.signature_failures[0]
    assert report.summary()["signature_failures"] == 1
