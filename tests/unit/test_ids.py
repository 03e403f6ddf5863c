"""A bank's ids in its namespace (engine.ids), and the key rule of the gate."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumers.signature_gate import SignatureScreen
from consumers.validator import ValidatorContext
from engine.events import PAYMENT_INITIATED, PAYMENT_STEP_REQUESTED
from engine.ids import (
    MAX_ID_CHARS,
    SWITCH_ID_MAX_CHARS,
    MalformedIdError,
    bank_of,
    own_part,
    qualify_named,
    qualify_own,
)
from engine.iso.build import compact_id
from engine.ledger.reference import Limits
from engine.pipeline.contract import Decision
from engine.pipeline.messages import RawMessage
from engine.trust.signing import Evidence, KeyRing, Refusal, Verdict
from tests.factories import AMINA, KARIM, RAM, authorization, payment, step, switch_id

# -- the qualification rule ----------------------------------------------------------------


def test_a_banks_own_id_is_kept_in_its_namespace() -> None:
    assert qualify_own("payment_id", "011", "P-1") == "011:P-1"
    assert qualify_own("payment_id", "007", "P-1") != qualify_own("payment_id", "011", "P-1")


@pytest.mark.parametrize("value", ["011:P-1", "P:1", ":", "x" * (MAX_ID_CHARS + 1), ""])
def test_an_own_id_with_a_colon_or_out_of_its_length_is_refused(value: str) -> None:
    with pytest.raises(MalformedIdError):
        qualify_own("event_id", "007", value)


def test_an_own_id_of_the_longest_length_fits_the_ledger_columns() -> None:
    longest = qualify_own("event_id", "ABCDEFGH", "x" * MAX_ID_CHARS)
    assert len(longest) == SWITCH_ID_MAX_CHARS


def test_a_named_payment_is_the_senders_own_or_the_switchs_id_it_was_told() -> None:
    assert qualify_named("payment_id", "007", "P-1") == "007:P-1"  # its own payment
    assert qualify_named("payment_id", "011", "007:P-1") == "007:P-1"  # told by the switch


@pytest.mark.parametrize(
    "value", ["007:P:1", ":P-1", "bank-7:P", "TOOLONGBANK:P", "007:", f"007:{'x' * 65}"]
)
def test_a_named_id_that_is_no_switch_id_is_refused(value: str) -> None:
    with pytest.raises(MalformedIdError):
        qualify_named("payment_id", "011", value)


def test_the_bank_and_its_own_part_are_read_back_and_a_legacy_id_is_as_it_was() -> None:
    assert (bank_of("011:P-1"), own_part("011:P-1")) == ("011", "P-1")
    assert (bank_of("P-1"), own_part("P-1")) == (None, "P-1")


def test_a_payment_is_qualified_by_its_payer_and_a_step_by_its_sender() -> None:
    p = payment(AMINA, KARIM)
    ids = PAYMENT_INITIATED.with_switch_ids(p, "007")
    assert (ids["event_id"], ids["payment_id"]) == (
        f"007:{p['event_id']}",
        f"007:{p['payment_id']}",
    )
    assert ids["bank_reference"] == p["bank_reference"]  # per bank already
    s = step(p, "RETURN", "011", reason_code="AC04")  # the payee's bank names the switch's id
    ids = PAYMENT_STEP_REQUESTED.with_switch_ids(s, "011")
    assert (ids["event_id"], ids["payment_id"]) == (f"011:{s['event_id']}", switch_id(p))


# -- the key rule ----------------------------------------------------------------------------


def screened(key: bytes, record: dict, event_type: str, signer: str) -> Verdict:  # type: ignore[type-arg]
    evidence = Evidence(signer, "k1", b"s" * 64, b"d" * 32, datetime.now(UTC))
    message = RawMessage("t.initiated", 0, 0, key, b"v", 0)
    return SignatureScreen(KeyRing([]), None).check_record(
        Verdict(evidence), message, event_type, record
    )


def test_a_payment_keyed_by_its_payer_account_passes() -> None:
    p = payment(AMINA, KARIM)
    assert screened(AMINA[1].encode(), p, "PaymentInitiated", "007").ok


@pytest.mark.parametrize("key", [KARIM[1].encode(), b"k", None, AMINA[1].encode() + b" "])
def test_a_payment_keyed_by_anything_else_is_refused_key_mismatch(key: bytes | None) -> None:
    verdict = screened(key, payment(AMINA, KARIM), "PaymentInitiated", "007")  # type: ignore[arg-type]
    assert verdict.refusal is Refusal.KEY_NOT_DECLARED and str(verdict.refusal) == "key_mismatch"
    assert AMINA[1] not in verdict.detail and KARIM[1] not in verdict.detail


def test_a_step_is_keyed_by_the_payer_account_it_names() -> None:
    s = step(authorization(AMINA, RAM), "CAPTURE", "007")
    assert screened(AMINA[1].encode(), s, "PaymentStepRequested", "007").ok
    refused = screened(RAM[1].encode(), s, "PaymentStepRequested", "007")
    assert refused.refusal is Refusal.KEY_NOT_DECLARED


def test_the_signer_is_judged_before_the_key() -> None:
    verdict = screened(b"k", payment(AMINA, KARIM), "PaymentInitiated", "011")
    assert verdict.refusal is Refusal.SIGNER_NOT_PAYER_BANK


# -- what a step tells the validator's batch ------------------------------------------------


def test_a_step_naming_a_payment_ahead_of_it_in_a_batch_does_not_make_it_reused() -> None:
    ctx = ValidatorContext({}, set(), set(), frozenset({"007", "011"}), Limits())
    ctx.absorb(Decision("step_validated", "011:P-1"))  # a step of a payment yet to come
    assert "011:P-1" not in ctx.payments


def test_an_iso_report_carries_the_banks_own_part_of_a_switch_id() -> None:
    own = "6f0c2c4e-1d1b-4a57-9a8e-5d1c2f0b9e11"
    assert compact_id(f"007:{own}") == compact_id(own) == own.replace("-", "")
