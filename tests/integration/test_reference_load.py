"""``sakk accounts load`` versions the fees, limits and caps it changes, and never overwrites
a cap an operator set: on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

import sakk.cli.accounts  # noqa: F401  (registers the command on ``cli``)
from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import BankLimit, ReferenceVersion
from engine.ledger.reference_versions import read_versions
from engine.ops.action import ActionRefusedError, Actor, run_action
from engine.ops.audit_log import list_actions
from engine.ops.limits import SetBankLimit
from engine.ops.reference_load import LoadReferenceFile
from sakk.cli import cli
from tests.factories import REFERENCE_FILE

pytestmark = pytest.mark.integration

NOTICE_S = 360
CAPS = [
    {"bank": "007", "currency": "MAD", "net_debit_cap_minor": 5_000_000_00, "alert_percent": 80,
     "liquidity_minor": 6_000_000_00},
    {"bank": "011", "currency": "MAD", "net_debit_cap_minor": 3_000_000_00, "alert_percent": 75,
     "liquidity_minor": 3_500_000_00},
]  # fmt: skip


def reference(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE_FILE.read_text())
    data["bank_limits"] = [dict(c) for c in CAPS]
    data.update(changes)
    return data


def load(engine: Engine, data: dict[str, Any], at: datetime, by: str = "reference-load") -> Any:
    action = LoadReferenceFile("reference.json", "0" * 64, data, NOTICE_S, 30.0)
    return run_action(engine, action, Actor(by), at)


@pytest.fixture
def ledger(database_url: str) -> Any:
    upgrade(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def caps_in(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(BankLimit.bank_code, BankLimit.net_debit_cap_minor)).all()
    return {bank: cap for bank, cap in rows}


def test_the_first_load_records_each_cap_as_a_version_and_fees_as_the_base(ledger):
    at = datetime.now(UTC)
    done = load(ledger, reference(), at)
    with ledger.connect() as conn:
        versions = read_versions(conn)
        (record,) = [a.as_dict() for a in list_actions(conn)]
    assert [(v.kind, v.item, v.old, v.effective_from) for v in versions] == [
        ("cap", "007/MAD", None, at), ("cap", "011/MAD", None, at),
    ]  # fmt: skip
    assert versions[0].new == {"net_debit_cap_minor": 5_000_000_00, "alert_percent": 80}
    assert (record["actor"], record["action"]) == ("reference-load", "reference.load")
    assert record["old"]["cap 011/MAD"] is None
    assert record["new"]["changed"]["cap 011/MAD"] == {
        "net_debit_cap_minor": 3_000_000_00, "alert_percent": 75,
    }  # fmt: skip
    assert record["new"]["changed"]["fee WEB/TRANSFER/MAD"]["fixed_minor"] == 500
    assert done.result.versions == 2  # fees and limits of a first load are the tables alone


def test_a_reload_versions_a_changed_fee_after_the_notice_and_a_changed_cap_at_once(ledger):
    first = datetime.now(UTC)
    load(ledger, reference(), first)
    data = reference()
    data["fee_schedule"][0]["fixed_minor"] = 550  # WEB TRANSFER MAD, 500 in the ledger
    data["bank_limits"][1]["net_debit_cap_minor"] = 2_000_000_00
    at = first + timedelta(seconds=1)
    load(ledger, data, at)
    with ledger.connect() as conn:
        versions = read_versions(conn)[2:]
    assert [(v.kind, v.item, v.effective_from) for v in versions] == [
        ("cap", "011/MAD", at), ("fee", "WEB/TRANSFER/MAD", at + timedelta(seconds=NOTICE_S)),
    ]  # fmt: skip
    assert versions[1].old["fixed_minor"] == 500 and versions[1].new["fixed_minor"] == 550
    assert caps_in(ledger)["011"] == 2_000_000_00


def test_a_reload_never_overwrites_a_cap_an_operator_set(ledger):
    load(ledger, reference(), datetime.now(UTC))
    lowered = SetBankLimit("007", "MAD", 1_000_000_00, 80)
    run_action(ledger, lowered, Actor("ops-amal", "stop 007"), datetime.now(UTC))
    with pytest.raises(ActionRefusedError) as refused:
        load(ledger, reference(), datetime.now(UTC))
    message = str(refused.value)
    assert "bank 007 MAD: an operator set the net debit cap to 1,000,000.00 MAD" in message
    assert "the file says 5,000,000.00 MAD, alert at 80 %" in message
    assert "011" not in message  # only the cap the operator set is named
    assert caps_in(ledger)["007"] == 1_000_000_00
    with ledger.connect() as conn:
        assert [a.action for a in list_actions(conn)] == ["reference.load", "limits.cap"]
    data = reference()
    data["bank_limits"][0]["net_debit_cap_minor"] = 1_000_000_00  # the operator's value
    assert load(ledger, data, datetime.now(UTC)).seq == 3


def test_an_operator_cap_change_is_a_version_naming_its_action(ledger):
    load(ledger, reference(), datetime.now(UTC))
    done = run_action(ledger, SetBankLimit("011", "MAD", 4_000_000_00, 90), Actor("ops-b"),
                      datetime.now(UTC))  # fmt: skip
    with ledger.connect() as conn:
        last = conn.execute(
            select(ReferenceVersion.__table__).order_by(ReferenceVersion.version.desc()).limit(1)
        ).one()
    assert (last.kind, last.item, last.action_seq) == ("cap", "011/MAD", done.seq)
    assert json.loads(last.old_value) == {"net_debit_cap_minor": 3_000_000_00, "alert_percent": 75}
    assert json.loads(last.new_value) == {"net_debit_cap_minor": 4_000_000_00, "alert_percent": 90}


def test_the_cli_refuses_the_load_naming_the_bank_and_both_caps(ledger, database_url, tmp_path):
    path: Path = tmp_path / "reference.json"
    path.write_text(json.dumps(reference()))
    env = {"SAKK_DATABASE_URL": database_url, "SAKK_DATA_DIR": str(tmp_path),
           "SAKK_LOG_LEVEL": "WARNING"}  # fmt: skip
    runner = CliRunner()
    first = runner.invoke(cli, ["accounts", "load", str(path), "--by", "reference-load"], env=env)
    assert first.exit_code == 0, first.output
    assert "2 reference versions" in first.output
    run_action(ledger, SetBankLimit("011", "MAD", 0, 80), Actor("ops-c"), datetime.now(UTC))
    again = runner.invoke(cli, ["accounts", "load", str(path), "--by", "reference-load"], env=env)
    assert again.exit_code != 0
    assert "bank 011 MAD: an operator set the net debit cap to 0.00 MAD" in again.output
    assert "the file says 3,000,000.00 MAD, alert at 75 %" in again.output
    keep = ["accounts", "load", str(path), "--by", "init", "--keep-operator-caps"]
    kept = runner.invoke(cli, keep, env=env)
    assert kept.exit_code == 0, kept.output
    assert "1 caps an operator set kept" in kept.output
    assert caps_in(ledger) == {"007": 5_000_000_00, "011": 0}
    with ledger.connect() as conn:
        record = list_actions(conn)[-1].as_dict()
    assert record["new"]["kept"] == ["cap 011/MAD"] and record["new"]["changed"] == {}
