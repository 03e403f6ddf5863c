"""``sakk publish`` as a bank runs it, through the embedded broker into a running switch on
SQLite and PostgreSQL: one key is one bank's, and a step goes out without writing code."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import sakk.cli.publish  # noqa: F401  (registers the command)
from engine.ledger.models import Payment
from sakk.cli import cli
from tests.factories import AMINA, KARIM, RAM, SIGNERS, switch_id
from tests.integration.test_lifecycle import done, payment_row, step_rows

pytestmark = pytest.mark.integration


def key_file_of(bank: str, directory: Path) -> Path:
    """The bank's key file as ``sakk keys generate BANK`` names it (BANK-KEYID.key)."""
    pair = SIGNERS.get(bank).key  # registered in the test reference data
    path = directory / f"{bank}-{pair.key_id}.key"
    pair.write(path)
    return path


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payment_line(payer: tuple[str, str], payee: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "payment_id": f"P-{uuid.uuid4().hex[:12]}",
        "bank_reference": f"REF-{uuid.uuid4().hex[:12]}",
        "occurred_at": now_rfc3339(),
        "payer_bank": payer[0], "payer_account": payer[1],
        "payee_bank": payee[0], "payee_account": payee[1],
        "amount_minor": 10_000, "currency": "MAD", "channel": "WEB",
        "payment_type": "TRANSFER",
    } | extra  # fmt: skip


def step_line(of: dict[str, Any], kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "step",
        "payment_id": of["payment_id"],  # the payer's bank names its payment by its own id
        "bank_reference": f"{kind[:3]}-{uuid.uuid4().hex[:12]}",
        "occurred_at": now_rfc3339(),
        "sender_bank": of["payer_bank"], "payer_account": of["payer_account"],
        "step": kind,
    } | extra  # fmt: skip


def sakk_publish(flow: Any, tmp_path: Path, lines: list[str], key_file: Path) -> Result:
    source = tmp_path / "bank.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {
        "SAKK_KAFKA_BOOTSTRAP_SERVERS": flow.settings.kafka_bootstrap_servers,
        "SAKK_TOPIC_PREFIX": flow.settings.topic_prefix,
        "SAKK_DATA_DIR": str(tmp_path),
        "SAKK_LOG_LEVEL": "WARNING",
    }
    args = ["publish", str(source), "--signing-key", str(key_file)]
    return CliRunner().invoke(cli, args, env=env)


def payment_ids(flow: Any) -> set[str]:
    with flow.engine.connect() as conn:
        return set(conn.execute(Payment.__table__.select().with_only_columns(Payment.payment_id))
                   .scalars())  # fmt: skip


def test_another_banks_line_first_is_reported_unsent_and_the_own_line_settles(
    flow_factory, database_url, tmp_path
):
    flow = flow_factory(database_url)
    theirs = payment_line(KARIM, AMINA)  # bank 011's payment, in bank 007's file
    own = payment_line(AMINA, KARIM)

    result = sakk_publish(
        flow, tmp_path, [json.dumps(theirs), json.dumps(own)], key_file_of("007", tmp_path)
    )

    assert result.exit_code == 1, result.output
    assert "line 1: payer_bank 011 is not this publisher's bank" in result.output
    assert "1 messages published, 1 lines skipped" in result.output
    flow.wait_until(lambda: done(flow, payments=1, steps=0))
    assert payment_row(flow, own).state == "SETTLED"
    assert payment_ids(flow) == {switch_id(own)}  # nothing of 011's line reached the switch


def test_an_authorization_and_its_capture_from_a_file_complete_and_a_bad_step_is_not_sent(
    flow_factory, database_url, tmp_path
):
    flow = flow_factory(database_url)
    auth = payment_line(AMINA, RAM, channel="POS", payment_type="PURCHASE",
                        intent="AUTHORIZATION", amount_minor=15_000)  # fmt: skip
    capture = step_line(auth, "CAPTURE", amount_minor=15_000, currency="MAD")
    lines = [
        json.dumps(auth),
        json.dumps(step_line(auth, "CAPTURE", amount_minor=50.5, currency="MAD")),  # decimal
        json.dumps(step_line(auth, "VOID", event_id="011:E-1")),  # an id with a colon
        json.dumps(capture),
    ]

    result = sakk_publish(flow, tmp_path, lines, key_file_of("007", tmp_path))

    assert result.exit_code == 1, result.output
    assert "line 2: amount_minor: 50.5 is not an integer" in result.output
    assert "line 3: event_id: may not contain ':'" in result.output
    assert "2 messages published, 2 lines skipped" in result.output
    flow.wait_until(lambda: done(flow, payments=1, steps=1))
    row = payment_row(flow, auth)
    assert (row.state, row.captured_minor) == ("CAPTURED", 15_000)
    assert step_rows(flow, auth) == [("CAPTURE", "APPLIED", None)]


def test_iso_import_with_a_key_file_reports_another_banks_transaction_and_sends_its_own(
    flow_factory, database_url, tmp_path
):
    from engine.iso.directory import BankDirectory
    from producers.iso_import import import_file
    from tests.fixtures.iso.messages import Tx, pacs008

    flow = flow_factory(database_url)
    path = tmp_path / "pacs008.xml"
    path.write_bytes(pacs008([Tx("THEIRS-1", KARIM, AMINA), Tx("OWN-1", AMINA, KARIM)]))
    settings = flow.settings.replace(signing_key_file=key_file_of("007", tmp_path))

    directory = BankDirectory.from_ledger(flow.engine)
    report = import_file(settings, directory, path, codec=flow.codec)

    assert [p.bank_reference for p in report.published] == ["OWN-1"]
    assert report.refused == 1 and "payer_bank 011 is not this publisher's bank" in report.summary()
    flow.wait_until(lambda: done(flow, payments=1, steps=0))
    assert payment_ids(flow) == {report.published[0].payment_id}
