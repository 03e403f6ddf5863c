"""The conformance check of a bank's messages, without broker or ledger: one test per check,
then ``sakk conformance`` on a capture mixing good and bad messages."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import sakk.cli.conformance  # noqa: F401  (registers the command)
from engine.config import Settings
from engine.events import PAYMENT_INITIATED, PAYMENT_STEP_REQUESTED
from engine.serialization import AvroCodec, SchemaRegistry
from producers.capture import CapturedMessage, CaptureWriter
from producers.conformance import (
    Reference,
    check_amount,
    check_banks_and_accounts,
    check_captured,
    check_currency,
    check_ids,
    check_key,
    check_reference,
    check_signature,
    check_time,
)
from producers.jsonl import publish_file
from sakk.cli import cli
from tests.factories import AMINA, CLOSED, KARIM, REFERENCE_FILE, SIGNERS, payment, step

REF = Reference.read(REFERENCE_FILE)
SETTINGS = Settings(kafka_bootstrap_servers="127.0.0.1:1")  # never dialled
TOPIC = SETTINGS.topic("initiated")
CODEC = AvroCodec(SchemaRegistry.from_dir(SETTINGS.schemas_dir))
AT = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


def checks(found: list[tuple[str, str]]) -> list[str]:
    return [check for check, _ in found]


def captured(record: dict[str, Any], event: Any = PAYMENT_INITIATED, signer: str | None = None,
             key: bytes | None = None) -> CapturedMessage:  # fmt: skip
    value = CODEC.encode(event.name, record)
    key = event.key(record) if key is None else key
    bank = signer or str(event.acting_bank(record))
    return CapturedMessage(TOPIC, key, value, SIGNERS.headers(bank, TOPIC, key, value))


def test_ids_without_a_colon_pass_and_an_own_id_with_one_fails() -> None:
    assert check_ids(PAYMENT_INITIATED, payment()) == []
    found = check_ids(PAYMENT_INITIATED, payment(payment_id="011:P-1", event_id="x" * 65))
    assert checks(found) == ["ids", "ids"]


def test_a_step_may_name_its_payment_by_the_switchs_id() -> None:
    assert check_ids(PAYMENT_STEP_REQUESTED, step(payment(), "CAPTURE", "011")) == []


def test_a_bank_reference_over_35_characters_fails() -> None:
    assert checks(check_reference(payment(reference="R" * 36))) == ["reference"]


@pytest.mark.parametrize("amount", [10.0, 0, -5, 6_000_000])
def test_an_amount_not_integer_not_positive_or_over_the_limit_fails(amount: Any) -> None:
    assert checks(check_amount(PAYMENT_INITIATED, payment(amount_minor=amount), REF)) == ["amount"]


def test_a_steps_null_amount_means_all_that_remains() -> None:
    assert check_amount(PAYMENT_STEP_REQUESTED, step(payment(), "VOID", "007"), REF) == []


def test_an_unknown_currency_or_one_not_accepted_on_the_channel_fails() -> None:
    assert checks(check_currency(PAYMENT_INITIATED, payment(currency="XXQ"), REF)) == ["currency"]
    found = check_currency(PAYMENT_INITIATED, payment(currency="EUR", channel="ATM"), REF)
    assert "not accepted on channel ATM" in found[0][1]


def test_accounts_must_be_known_at_their_bank_and_open() -> None:
    assert check_banks_and_accounts(PAYMENT_INITIATED, payment(), REF) == []
    moved = payment(payer=("011", AMINA[1]))
    assert (
        "is at bank 007, not 011" in check_banks_and_accounts(PAYMENT_INITIATED, moved, REF)[0][1]
    )
    closed = payment(payee=CLOSED)
    assert "is CLOSED" in check_banks_and_accounts(PAYMENT_INITIATED, closed, REF)[0][1]
    unknown = payment(payee=("999", "999000"))
    assert checks(check_banks_and_accounts(PAYMENT_INITIATED, unknown, REF)) == ["banks"]


def test_an_account_number_never_appears_whole_in_a_problem() -> None:
    found = check_banks_and_accounts(PAYMENT_INITIATED, payment(payee=("011", "011999")), REF)
    assert "011999" not in found[0][1] and "****1999" in found[0][1]


def test_a_time_without_its_zone_fails() -> None:
    assert checks(check_time(payment(occurred_at=datetime(2026, 11, 26, 9, 30)))) == ["time"]


def test_the_key_must_be_the_payer_account() -> None:
    record = payment()
    assert check_key(PAYMENT_INITIATED, record, AMINA[1].encode()) == []
    assert checks(check_key(PAYMENT_INITIATED, record, b"other")) == ["key"]


def test_a_signature_by_another_bank_fails_as_signer() -> None:
    record = payment()
    assert check_signature(captured(record), "007", AT, REF) == []
    found = check_signature(captured(record, signer="011"), "007", AT, REF)
    assert checks(found) == ["signer"]


def test_a_signature_missing_or_not_matching_the_value_fails() -> None:
    good = captured(payment())
    unsigned = CapturedMessage(TOPIC, good.key, good.value, ())
    assert "signature_missing" in check_signature(unsigned, "007", AT, REF)[0][1]
    altered = CapturedMessage(TOPIC, good.key, good.value + b"x", good.headers)
    assert "signature_invalid" in check_signature(altered, "007", AT, REF)[0][1]


def test_a_key_not_yet_valid_at_the_event_time_fails() -> None:
    found = check_signature(captured(payment()), "007", datetime(2019, 1, 1, tzinfo=UTC), REF)
    assert "key_not_yet_valid" in found[0][1]


def test_a_captured_message_reports_every_problem_not_the_first_only() -> None:
    record = payment(payment_id="011:P-1", currency="XXQ")
    message = captured(record, signer="011", key=b"not-the-payer")
    found = check_captured(message, CODEC, REF, TOPIC)
    assert set(checks(found)) == {"key", "signer", "ids", "currency"}  # 011's key verifies


def test_bytes_that_are_no_approved_schema_fail_as_schema() -> None:
    message = CapturedMessage(TOPIC, b"k", b"\xc3\x01" + b"\x00" * 8 + b"body", ())
    assert checks(check_captured(message, CODEC, REF, TOPIC))[0] == "schema"


# --- the command ----------------------------------------------------------------------------


def capture_of_mixed_messages(tmp_path: Path) -> Path:
    """Two good messages (lines 1, 2), then four bad ones (lines 3 to 6)."""
    key_file = tmp_path / f"007-{SIGNERS.get('007').key_id}.key"
    SIGNERS.get("007").key.write(key_file)
    source = tmp_path / "bank.jsonl"
    good = payment(AMINA, KARIM, occurred_at=AT)
    refund = dict(step(good, "REFUND", "007"), type="step", occurred_at=AT.isoformat())
    lines = [dict(good, occurred_at=AT.isoformat()), refund]
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    out = io.StringIO()
    publish_file(SETTINGS.replace(signing_key_file=key_file), source,
                 capture=CaptureWriter(out), send=False)  # fmt: skip
    writer = CaptureWriter(out)
    forged = captured(payment(AMINA, KARIM, occurred_at=AT), signer="011")
    writer.write(forged.topic, forged.key, forged.value, forged.headers)  # line 3: signer
    rekeyed = captured(payment(AMINA, KARIM, occurred_at=AT), key=b"x")
    writer.write(rekeyed.topic, rekeyed.key, rekeyed.value, rekeyed.headers)  # line 4: key
    writer.write(TOPIC, b"k", b"not avro", [])  # line 5: schema, signature
    out.write('{"topic": "payments.initiated", "value": "%%%"}\n')  # line 6: capture
    path = tmp_path / "capture.jsonl"
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def test_sakk_conformance_reports_each_bad_message_by_line_and_exits_1(tmp_path: Path) -> None:
    path = capture_of_mixed_messages(tmp_path)
    result = CliRunner().invoke(
        cli, ["conformance", str(path), "--reference", str(REFERENCE_FILE)],
        env={"SAKK_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    problems = [line for line in result.output.splitlines() if ": line " in line]
    lines_at_fault = {line.split(": line ")[1].split(":")[0] for line in problems}
    assert lines_at_fault == {"3", "4", "5", "6"}
    assert any("line 3: signer: signed as bank 011" in line for line in problems)
    assert any("line 4: key:" in line for line in problems)
    assert any("line 5: schema:" in line for line in problems)
    assert any("line 5: signature:" in line for line in problems)
    assert "capture: 6 messages, 4 with problems" in result.output
    assert "NOT conformant" in result.output


def test_sakk_conformance_of_good_messages_exits_0(tmp_path: Path) -> None:
    path = capture_of_mixed_messages(tmp_path)
    good = path.read_text(encoding="utf-8").splitlines()[:2]
    path.write_text("\n".join(good) + "\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["conformance", str(path), "--reference", str(REFERENCE_FILE)],
        env={"SAKK_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 messages, 0 with problems, 0 problems: conformant" in result.output


def test_sakk_conformance_of_a_jsonl_file_checks_content_per_line(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    good = payment(AMINA, KARIM, occurred_at=AT.isoformat())
    bad = payment(AMINA, ("011", "011999"), amount_minor=10.5, occurred_at=AT.isoformat())
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["conformance", str(path), "--reference", str(REFERENCE_FILE)],
        env={"SAKK_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "line 2: schema: amount_minor: 10.5 is not an integer" in result.output
    assert "carry no key or signature" in result.output


def test_sakk_conformance_with_unreadable_reference_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_text("{}\n", encoding="utf-8")
    broken = tmp_path / "reference.json"
    broken.write_text("[1]", encoding="utf-8")
    result = CliRunner().invoke(cli, ["conformance", str(path), "--reference", str(broken)])
    assert result.exit_code == 2, result.output


def test_sakk_conformance_of_a_pacs008_reports_per_transaction(tmp_path: Path) -> None:
    from tests.fixtures.iso.messages import Tx, pacs008

    path = tmp_path / "pacs008.xml"
    path.write_bytes(
        pacs008(
            [Tx("E2E-1", AMINA, KARIM), Tx("E2E-2", AMINA, ("011", "011810000000000000009999"))]
        )
    )
    result = CliRunner().invoke(
        cli, ["conformance", str(path), "--reference", str(REFERENCE_FILE)],
        env={"SAKK_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "transaction 2" in result.output and "accounts: payee_account ****9999" in result.output
    assert "transaction 1" not in result.output
    assert "iso: 2 messages, 1 with problems" in result.output


def test_the_example_payments_conform_to_the_committed_reference() -> None:
    from engine.config import PROJECT_ROOT
    from producers.conformance import check_file

    reference = Reference.read(PROJECT_ROOT / "reference" / "morocco.json")
    examples = PROJECT_ROOT / "producers" / "examples" / "payments.jsonl"
    report = check_file(examples, reference, SETTINGS.schemas_dir, TOPIC)
    assert report.ok and report.messages >= 10, report.lines()  # a cash withdrawal included
