"""Every message a bank sends through one publisher, without a broker (capture only):
payments and steps from JSON Lines, each checked and signed as the key file's one bank."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from engine.config import Settings
from engine.events import PAYMENT_INITIATED, PAYMENT_STEP_REQUESTED
from engine.trust.exceptions import KeyFileError
from engine.trust.signing import SIGNER_HEADER
from producers.capture import CaptureWriter, parse_captured
from producers.exceptions import InvalidPaymentError
from producers.jsonl import parse_message, publish_file
from producers.signing import own_signer
from tests.factories import AMINA, KARIM, SIGNERS

OFFLINE = Settings(kafka_bootstrap_servers="127.0.0.1:1")  # never dialled: send=False


def key_file(tmp_path: Path, bank: str = "007", name: str | None = None) -> Path:
    pair = SIGNERS.get(bank).key
    path = tmp_path / (name or f"{bank}-{pair.key_id}.key")
    pair.write(path)
    return path


def payment_line(payer: tuple[str, str], payee: tuple[str, str], **extra: Any) -> str:
    fields = {
        "bank_reference": f"REF-{payer[0]}-{len(extra)}",
        "occurred_at": "2026-11-26T09:30:15.123Z",
        "payer_bank": payer[0], "payer_account": payer[1],
        "payee_bank": payee[0], "payee_account": payee[1],
        "amount_minor": 10_000, "currency": "MAD", "channel": "WEB",
        "payment_type": "TRANSFER",
    }  # fmt: skip
    return json.dumps(fields | extra)


def step_line(**extra: Any) -> str:
    fields = {
        "type": "step", "payment_id": "P-1", "bank_reference": "CAP-1",
        "occurred_at": "2026-11-26T10:30:00+01:00", "sender_bank": "007",
        "payer_account": AMINA[1], "step": "CAPTURE", "amount_minor": 5_000, "currency": "MAD",
    }  # fmt: skip
    return json.dumps(fields | extra)


def publish_offline(tmp_path: Path, lines: list[str], key: Path) -> tuple[Any, list[Any]]:
    source = tmp_path / "messages.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = io.StringIO()
    report = publish_file(
        OFFLINE.replace(signing_key_file=key), source, capture=CaptureWriter(out), send=False
    )
    return report, [parse_captured(line) for line in out.getvalue().splitlines()]


# --- whose key: one bank, known before anything is sent ---------------------------------


def test_a_key_file_named_by_keys_generate_signs_as_its_bank(tmp_path: Path) -> None:
    assert own_signer(key_file(tmp_path, "011")).bank == "011"


def test_a_key_file_whose_name_names_another_key_is_refused(tmp_path: Path) -> None:
    path = key_file(tmp_path, "007", name="007-0000000000000000.key")
    with pytest.raises(KeyFileError, match="the name says key 0000000000000000"):
        own_signer(path)


def test_a_bank_given_against_the_key_files_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="is bank 007's key, not bank 011's"):
        own_signer(key_file(tmp_path, "007"), "011")


def test_a_key_file_with_another_name_needs_the_bank(tmp_path: Path) -> None:
    path = key_file(tmp_path, "007", name="bank.key")
    with pytest.raises(KeyFileError, match="cannot tell whose key this is"):
        own_signer(path)
    assert own_signer(path, "007").bank == "007"


def test_another_banks_payment_first_is_reported_unsent_and_the_own_one_goes(
    tmp_path: Path,
) -> None:
    lines = [payment_line(KARIM, AMINA), payment_line(AMINA, KARIM)]
    report, sent = publish_offline(tmp_path, lines, key_file(tmp_path, "007"))
    assert report.published == 1 and [b.line_number for b in report.bad_lines] == [1]
    assert "payer_bank 011 is not this publisher's bank" in report.bad_lines[0].reason
    assert [dict(m.headers)[SIGNER_HEADER] for m in sent] == [b"007"]
    assert sent[0].key == AMINA[1].encode()


# --- steps: the same file, the same checks ----------------------------------------------


def test_a_step_line_is_a_payment_step_requested_at_its_utc_time() -> None:
    event, step = parse_message(step_line())
    assert event is PAYMENT_STEP_REQUESTED
    assert step["occurred_at"].isoformat() == "2026-11-26T09:30:00+00:00"
    assert (step["final"], step["reason_code"]) == (False, None) and step["event_id"]


def test_a_line_without_type_is_a_payment() -> None:
    assert parse_message(payment_line(AMINA, KARIM))[0] is PAYMENT_INITIATED


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        (step_line(amount_minor=50.0), "amount_minor", "not an integer"),
        (step_line(type="refund"), "type", "expected 'payment' or 'step'"),
        (step_line(occurred_at="2026-11-26T10:30:00"), "occurred_at", "no UTC offset"),
    ],
)
def test_a_malformed_step_line_names_its_field(line: str, field: str, words: str) -> None:
    with pytest.raises(InvalidPaymentError) as caught:
        parse_message(line)
    assert caught.value.field == field and words in caught.value.problem


def test_steps_are_checked_signed_and_keyed_as_the_switch_takes_them(tmp_path: Path) -> None:
    lines = [
        step_line(),  # the payer's bank names its payment by its own id
        step_line(payment_id="011:P-9", step="VOID", amount_minor=None, currency=None),
        step_line(event_id="007:E-1"),  # an own id with a colon: malformed_id at the switch
        step_line(step="CANCEL"),  # not a step of the schema
        step_line(sender_bank="011"),  # another bank's step
    ]
    report, sent = publish_offline(tmp_path, lines, key_file(tmp_path, "007"))
    assert report.published == 2
    reasons = {b.line_number: b.reason for b in report.bad_lines}
    assert set(reasons) == {3, 4, 5}
    assert reasons[3].startswith("event_id: may not contain")
    assert reasons[4].startswith("step:")
    assert "sender_bank 011 is not this publisher's bank" in reasons[5]
    assert all(m.key == AMINA[1].encode() for m in sent)
    assert all(dict(m.headers)[SIGNER_HEADER] == b"007" for m in sent)


def test_capture_lines_round_trip_bytes_exactly(tmp_path: Path) -> None:
    out = io.StringIO()
    writer = CaptureWriter(out)
    writer.write("payments.initiated", None, b"\x00\xffvalue", [("h", b"\x01")])
    message = parse_captured(out.getvalue())
    assert (message.key, message.value, message.headers) == (
        None,
        b"\x00\xffvalue",
        (("h", b"\x01"),),
    )


def test_sakk_publish_no_send_captures_what_it_would_send_without_a_broker(
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    import sakk.cli.publish  # noqa: F401  (registers the command)
    from sakk.cli import cli

    source = tmp_path / "bank.jsonl"
    source.write_text(payment_line(AMINA, KARIM) + "\n" + step_line() + "\n", encoding="utf-8")
    capture = tmp_path / "capture.jsonl"
    args = ["publish", str(source), "--signing-key", str(key_file(tmp_path)),
            "--capture", str(capture), "--no-send"]  # fmt: skip
    env = {"SAKK_KAFKA_BOOTSTRAP_SERVERS": "", "SAKK_LOG_LEVEL": "WARNING"}
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert "2 messages captured (nothing sent)" in result.output
    sent = [parse_captured(line) for line in capture.read_text().splitlines()]
    assert [dict(m.headers)[SIGNER_HEADER] for m in sent] == [b"007", b"007"]


def test_sakk_publish_no_send_without_capture_is_a_usage_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    import sakk.cli.publish  # noqa: F401
    from sakk.cli import cli

    source = tmp_path / "bank.jsonl"
    source.write_text(payment_line(AMINA, KARIM) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["publish", str(source), "--no-send"])
    assert result.exit_code == 2 and "--no-send needs --capture" in result.output


def test_sakk_publish_with_a_key_file_that_does_not_say_its_bank_is_a_usage_error(
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    import sakk.cli.publish  # noqa: F401
    from sakk.cli import cli

    source = tmp_path / "bank.jsonl"
    source.write_text(payment_line(AMINA, KARIM) + "\n", encoding="utf-8")
    key = key_file(tmp_path, "007", name="bank.key")
    args = ["publish", str(source), "--signing-key", str(key),
            "--capture", str(tmp_path / "c.jsonl"), "--no-send"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "cannot tell whose key this is" in result.output
    result = CliRunner().invoke(cli, [*args, "--bank", "007"])
    assert result.exit_code == 0, result.output
