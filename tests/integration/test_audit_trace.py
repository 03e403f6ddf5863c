"""Trace: a payment's life from the ledger, confirmed against the topics."""

from __future__ import annotations

import pytest

from engine.audit.exceptions import PaymentNotFoundError
from engine.audit.replay import replay_codec
from engine.audit.trace import find_payment_ids, scan_topics, trace_payment
from engine.read.audience import Audience
from sakk.app import TOPOLOGY
from tests.factories import AMINA, KARIM, payment, switch_id
from tests.integration.test_flow import drained

pytestmark = pytest.mark.integration

AUDITOR = Audience.auditor()  # the scan needs the events' keys whole


def test_trace_shows_every_event_state_posting_and_notification(flow_factory, database_url):
    flow = flow_factory(database_url)
    paid = payment(AMINA, KARIM, 12_345, reference="ATW-TRACE-1")
    retry = payment(AMINA, KARIM, 12_345, reference="ATW-TRACE-1")  # rejected AM05
    flow.publish([paid, retry])
    flow.wait_until(lambda: drained(flow, 2))

    with flow.engine.connect() as conn:
        assert set(find_payment_ids(conn, AUDITOR, bank_reference="007:ATW-TRACE-1")) == {
            switch_id(paid),
            switch_id(retry),
        }
        trace = trace_payment(conn, AUDITOR, switch_id(paid), TOPOLOGY)
        with pytest.raises(PaymentNotFoundError):
            find_payment_ids(conn, AUDITOR, "no-such-payment")

    kinds = [(e["topic"].rsplit(".", 1)[1], e["consumed_by"]) for e in trace.events]
    assert kinds[:3] == [
        ("initiated", "validator"),
        ("validated", "settlement"),
        ("settled", "notification"),
    ]
    assert sorted(kinds[3:]) == [("notified", None), ("notified", None)]  # payer's and payee's bank
    assert [t["to_state"] for t in trace.transitions] == ["VALIDATED", "SETTLED"]
    assert len(trace.postings) == 1 and len(trace.entries) == 5  # fee and two settlement legs
    assert sum(e["amount_minor"] for e in trace.entries) == 0
    assert len({e["chain_id"] for e in trace.entries}) == 1  # one posting: one chain, shown
    seqs = [e["chain_seq"] for e in trace.entries]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    assert {n["recipient_bank"] for n in trace.notifications} == {"007", "011"}
    assert len(trace.attempts) >= 2
    assert trace.payment["signer_bank"] == paid["payer_bank"]  # proof of origin, kept
    assert trace.signer().startswith(f"signed by bank {paid['payer_bank']} with key ")

    scan_topics(flow.settings, replay_codec(flow.settings), trace)

    assert [e["on_topic"] for e in trace.events[:3]] == ["confirmed"] * 3
    assert [e["on_topic"] for e in trace.events[3:]] == ["found by scan"] * 2
    assert all(e["record_time"] is not None and e["offset"] is not None for e in trace.events)
