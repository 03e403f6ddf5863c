"""The chaos workload: seeded, complete, and every message decodes (or not) as labelled."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.app import make_codec
from engine.config import load_settings
from engine.ledger.reference import read_file
from engine.serialization import DecodeError, UnknownSchemaError
from tooling.chaos.workload import (
    ABSURD_REASONS,
    GOOD_OUTCOMES,
    MEGABYTE,
    POISON_KINDS,
    WorkloadBuilder,
)

START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def codec():
    return make_codec(load_settings(environ={}), with_store=False)


@pytest.fixture(scope="module")
def reference():
    return read_file(load_settings(environ={}).reference_file)


def build(reference, codec, seed=7, payments=300, start=START):
    return WorkloadBuilder(reference, seed, start, codec).build(payments)


def test_same_seed_and_start_give_the_same_bytes_in_the_same_order(reference, codec):
    assert build(reference, codec).messages == build(reference, codec).messages


def test_another_seed_gives_other_payments(reference, codec):
    a, b = build(reference, codec, seed=1), build(reference, codec, seed=2)
    assert set(a.payments).isdisjoint(b.payments)


def test_every_kind_of_bad_input_is_present(reference, codec):
    workload = build(reference, codec)
    labels = workload.labels
    assert set(POISON_KINDS) <= set(labels)
    assert set(ABSURD_REASONS) <= set(labels)
    assert labels["megabyte_reference"] == labels["megabyte_blob"] == 1
    assert workload.bank_retries >= 30
    assert len(workload.payments) == 300
    assert workload.published == 300 + workload.poison


def test_poison_does_not_decode_and_everything_else_does(reference, codec):
    workload = build(reference, codec)
    undecodable = 0
    for m in workload.messages:
        try:
            codec.decode(m.value)
        except UnknownSchemaError:
            assert m.label == "unknown_fingerprint"
            undecodable += 1
        except DecodeError:
            assert m.label in ("random_bytes", "truncated_avro", "empty_message", "megabyte_blob")
            undecodable += 1
    dead = workload.dead_letters
    assert undecodable == dead["undecodable"] + dead["unknown_schema"]


def test_dependants_follow_their_original_on_its_key(reference, codec):
    workload = build(reference, codec)
    first_seen = {}
    for index, m in enumerate(workload.messages):
        if m.label == "payment":
            first_seen[m.value] = (index, m.key)
        if m.label == "bank_retry":
            original_index, key = first_seen[m.value]  # KeyError: a copy before its original
            assert index > original_index and key == m.key


def test_expected_outcomes(reference, codec):
    workload = build(reference, codec)
    for expected in workload.payments.values():
        if expected.label == "payment":
            assert expected.outcomes == GOOD_OUTCOMES
        else:
            assert expected.outcomes == {"REJECTED": ABSURD_REASONS[expected.label]}


def test_the_megabyte_messages_fit_the_message_limit(reference, codec):
    limit = load_settings(environ={}).max_message_bytes
    sizes = [len(m.value or b"") for m in build(reference, codec).messages]
    assert MEGABYTE <= max(sizes) < limit - 1024


def test_bounds_and_time_zone_are_checked(reference, codec):
    with pytest.raises(ValueError, match="payments"):
        build(reference, codec, payments=0)
    with pytest.raises(ValueError, match="timezone"):
        build(reference, codec, start=datetime(2026, 1, 1))
