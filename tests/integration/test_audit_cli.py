"""The auditor's commands end to end: replay, reconcile, trace, audit verify, settlement."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import text

import sakk.cli.audit
import sakk.cli.reconcile
import sakk.cli.replay
import sakk.cli.settlement
import sakk.cli.trace  # noqa: F401  (each module registers its command on ``cli``)
from engine.read.audience import Audience
from engine.read.audit_runs import get_audit_run, list_audit_runs
from sakk.cli import cli
from tests.factories import AMINA, KARIM, RAM, REFERENCE_FILE, YOUSSEF, payment, switch_id
from tests.integration.test_flow import drained

pytestmark = pytest.mark.integration


def test_auditor_commands_from_replay_to_a_tampered_ledger(flow_factory, sqlite_url, tmp_path):
    flow = flow_factory(sqlite_url)
    records = [payment(AMINA, KARIM, 100 + i) for i in range(20)]
    records += [payment(YOUSSEF, RAM, 300 + i, payment_type="PURCHASE") for i in range(10)]
    flow.publish(records)
    flow.wait_until(lambda: drained(flow, len(records)))
    s = flow.settings
    env = {
        "SAKK_KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
        "SAKK_DATABASE_URL": sqlite_url,
        "SAKK_TOPIC_PREFIX": s.topic_prefix,
        "SAKK_DATA_DIR": str(tmp_path),
        "SAKK_LOG_LEVEL": "WARNING",
    }
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        return result.exit_code, result.output

    replayed = tmp_path / "replayed.db"
    code, out = run(
        "replay",
        "--reference",
        str(REFERENCE_FILE),
        "--database-url",
        str(replayed),
        "--out",
        str(tmp_path / "replay-report"),
    )
    assert code == 0, out
    assert "events/s" in out and (tmp_path / "replay-report" / "replay.json").exists()

    report_dir = tmp_path / "reconcile"
    code, out = run("reconcile", "--replay", str(replayed), "--out", str(report_dir))
    assert code == 0, out
    summary = json.loads((report_dir / "reconcile.json").read_text())["summary"]
    assert summary["ok"] and summary["matched"] == len(records)
    assert {p.name for p in report_dir.iterdir()} >= {
        "reconcile.json",
        "reconcile.html",
        "reconcile-payments.csv",
        "reconcile-balances.csv",
    }

    code, out = run("audit", "verify")
    assert code == 0 and "hash chain intact" in out, out
    code, out = run("trace", switch_id(records[0]), "--format", "json", "--scan-topics")
    assert code == 0, out
    traced = json.loads(out)
    assert traced["payment"]["state"] == "SETTLED"
    initiated = [e["on_topic"] for e in traced["events"] if e["topic"].endswith(".initiated")]
    assert initiated == ["confirmed"]  # the bank's own ids on its topic, the switch's in the ledger
    code, out = run("trace", records[0]["payment_id"], "--format", "json")  # the bank's own id
    assert code == 0 and json.loads(out)["payment"]["payment_id"] == switch_id(records[0]), out
    code, out = run("settlement", "report", "--all", "--format", "csv")
    assert code == 0 and out.splitlines()[0].startswith("window,status,bank_code"), out
    window = records[0]["occurred_at"].date().isoformat()
    code, out = run("settlement", "close", "--window", window, "--early", "--delay-s", "0")
    assert code == 0 and "published SettlementWindowClosed" in out, out
    code, out = run("audit", "verify", "--anchors-from-topic", "--format", "json")
    assert code == 0 and json.loads(out)["summary"]["anchors_checked"] == 2, out

    with flow.engine.begin() as conn:  # an insider moves one centime of Bank of Africa's position
        conn.execute(text("DROP TRIGGER ledger_entries_no_update"))
        conn.execute(
            text(
                "UPDATE ledger_entries SET amount_minor = amount_minor - 1 WHERE id = "
                "(SELECT max(id) FROM ledger_entries WHERE account_number = :s)"
            ),
            {"s": "011-SETTLEMENT-MAD"},
        )
    code, out = run("audit", "verify")
    assert code == 1 and "CHAIN BROKEN" in out and "CLOSED WINDOWS CHANGED" in out, out
    code, out = run("settlement", "report", "--window", window)
    assert code == 1 and "CHANGED SINCE CLOSE" in out, out
    code, out = run("reconcile", "--replay", str(replayed), "--out", str(tmp_path / "again"))
    assert code == 1, out
    assert "011-SETTLEMENT-MAD" in (tmp_path / "again" / "reconcile-postings.csv").read_text()

    with flow.engine.connect() as conn:  # each run recorded in the live ledger, newest first
        runs = list_audit_runs(conn, Audience.auditor()).items
        assert [(r.kind, r.outcome) for r in runs] == [
            ("reconcile", "DIFFERENCES"), ("verify", "DIFFERENCES"), ("verify", "OK"),
            ("verify", "OK"), ("reconcile", "OK"), ("replay", "OK"),
        ]  # fmt: skip
        assert runs[-1].counts["events_replayed"] == len(records)
        assert runs[-1].options["target"].endswith("replayed.db")
        assert runs[0].differences >= 1 and runs[0].options["replay"].endswith("replayed.db")
        differences = get_audit_run(conn, Audience.auditor(), runs[0].id).report
    assert differences is not None
    assert "011-SETTLEMENT-MAD" in json.dumps(differences["sections"]["postings"])
