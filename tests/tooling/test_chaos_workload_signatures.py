"""The chaos workload is signed as banks sign: every message passes the validator's gate."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.config import load_settings
from engine.ledger.reference import read_file
from engine.serialization import DecodeError
from engine.trust.signing import SIGNER_HEADER, key_rows_as_ring
from producers.signing import SIMULATED_KEYS_VALID_FROM
from sakk.app import make_codec
from tooling.workload.chaos import WorkloadBuilder, chaos_signers
from tooling.workload.core import DEFAULT_TOPIC

START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
TOPIC = "chaos7.initiated"


@pytest.fixture(scope="module")
def codec():
    return make_codec(load_settings(environ={}))


@pytest.fixture(scope="module")
def reference():
    return read_file(load_settings(environ={}).reference_file)


@pytest.fixture(scope="module")
def workload(reference, codec):
    return WorkloadBuilder(reference, 7, START, codec, topic=TOPIC).build(300)


def ring_of(reference, seed):
    entries = chaos_signers(reference, seed).key_entries(SIMULATED_KEYS_VALID_FROM)
    return key_rows_as_ring(e.as_row() for e in entries)


def test_every_message_poison_included_verifies_with_the_runs_registered_keys(workload, reference):
    ring, now = ring_of(reference, 7), datetime.now(UTC)
    refused = [
        (m.label, v.refusal)
        for m in workload.messages
        if not (v := ring.verify(TOPIC, m.key, m.value or b"", m.headers, now)).ok
    ]
    assert refused == []


def test_each_payment_is_signed_by_its_payers_bank_each_step_by_its_sender(workload, codec):
    steps = 0
    for m in workload.messages:
        try:
            record = codec.decode(m.value).record
        except (DecodeError, TypeError):
            continue  # poison: signed by a bank, but it has no payer to match
        steps += "sender_bank" in record
        signer = record.get("sender_bank") or record["payer_bank"]
        assert dict(m.headers)[SIGNER_HEADER] == signer.encode(), m.label
    assert steps > 0


def test_bank_retries_carry_their_originals_signature(workload):
    signed_by_value = {m.value: m.headers for m in workload.messages if m.label != "bank_retry"}
    retries = [m for m in workload.messages if m.label == "bank_retry"]
    assert retries and all(m.headers == signed_by_value[m.value] for m in retries)


def test_signatures_cover_the_topic_and_the_seed_picks_the_keys(workload, reference):
    now = datetime.now(UTC)
    m = next(m for m in workload.messages if m.label == "payment")
    assert not ring_of(reference, 7).verify(DEFAULT_TOPIC, m.key, m.value, m.headers, now).ok
    assert not ring_of(reference, 8).verify(TOPIC, m.key, m.value, m.headers, now).ok
