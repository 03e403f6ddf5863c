"""Audit runs: ``sakk audit verify`` records each run (OK, then the differences of a
tampered ledger), ``--no-record`` writes nothing, the rows are immutable, and the read
side pages them newest first, masked for operators and whole for auditors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError

import sakk.cli.audit  # noqa: F401  (registers ``audit`` on ``cli``)
from engine.audit.runs import FAILED, RUNS, FinishedRun, record_run
from engine.read.audience import Audience
from engine.read.audit_runs import get_audit_run, list_audit_runs
from engine.read.exceptions import NotVisibleError, ReadError
from sakk.cli import cli
from tests.factories import AMINA, KARIM, payment
from tests.integration.test_audit_tamper import build_ledger

pytestmark = pytest.mark.integration


def verify_cli(url: str, tmp_path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["audit", "verify", "--database-url", url, *extra],
        env={"SAKK_DATA_DIR": str(tmp_path), "SAKK_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    return result.exit_code, result.output


def runs_in(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(RUNS)).scalar_one())


@pytest.fixture
def ledger(database_url: str):
    engine = build_ledger(database_url, [payment(AMINA, KARIM, 100 + i) for i in range(4)])
    yield engine
    engine.dispose()


def test_verify_runs_are_recorded_with_their_differences(ledger, database_url, tmp_path):
    code, out = verify_cli(database_url, tmp_path, "--by", "alice")
    assert code == 0 and "recorded as audit run #1" in out, out
    assert verify_cli(database_url, tmp_path, "--no-record")[0] == 0
    assert runs_in(ledger) == 1
    with ledger.begin() as conn:  # a balance moved behind the ledger's back
        conn.execute(
            text("UPDATE accounts SET balance_minor = balance_minor + 1 WHERE number = :n"),
            {"n": AMINA[1]},
        )
    code, out = verify_cli(database_url, tmp_path, "--actor", "bob", "--format", "json")
    assert code == 1 and out.lstrip().startswith("{"), out  # json stays whole on stdout
    with ledger.connect() as conn:
        page = list_audit_runs(conn, Audience.auditor())
        assert [(r.actor, r.outcome) for r in page.items] == [
            ("bob", "DIFFERENCES"), ("alice", "OK"),
        ]  # fmt: skip
        bad = page.items[0]
        assert bad.kind == "verify" and bad.via == "cli" and bad.differences >= 1
        assert bad.counts["ledger_violations"] >= 1 and bad.finished_at >= bad.started_at
        assert bad.options["windows_from_topic"] is False
        whole = get_audit_run(conn, Audience.auditor(), bad.id)
        masked = get_audit_run(conn, Audience.operator(), bad.id)
    found = whole.report["sections"]["ledger_violations"]  # type: ignore[index]
    assert any(AMINA[1] in v["violation"] for v in found)
    seen = masked.report["sections"]["ledger_violations"]  # type: ignore[index]
    assert seen and not any(AMINA[1] in v["violation"] for v in seen)
    assert not whole.report_cut and whole.report["summary"]["ok"] is False  # type: ignore[index]


def test_runs_page_newest_first_and_a_bank_reads_none(ledger):
    at = datetime(2026, 11, 24, tzinfo=UTC)
    for i, kind in enumerate(["verify", "replay", "reconcile", "verify"]):
        start = at + timedelta(minutes=i)
        run = FinishedRun(kind, "carol", "cli", start, start, {"n": i}, FAILED, error="x")
        record_run(ledger, run)
    with ledger.connect() as conn:
        first = list_audit_runs(conn, Audience.operator(), limit=3)
        rest = list_audit_runs(conn, Audience.operator(), cursor=first.next_cursor, limit=3)
        assert [r.options["n"] for r in first.items + rest.items] == [3, 2, 1, 0]
        assert rest.next_cursor is None
        verifies = list_audit_runs(conn, Audience.operator(), kind="verify")
        assert [r.options["n"] for r in verifies.items] == [3, 0]
        with pytest.raises(ReadError):
            list_audit_runs(conn, Audience.bank("007"))
        with pytest.raises(ReadError):
            get_audit_run(conn, Audience.bank("007"), 1)
        with pytest.raises(NotVisibleError):
            get_audit_run(conn, Audience.auditor(), 999)


def test_a_recorded_run_is_never_changed_nor_deleted(ledger):
    at = datetime(2026, 11, 24, tzinfo=UTC)
    record_run(ledger, FinishedRun("replay", "dave", "cli", at, at, {}, "OK"))
    with pytest.raises(DBAPIError, match="append-only"), ledger.begin() as conn:
        conn.execute(text("UPDATE audit_runs SET outcome = 'FAILED'"))
    with pytest.raises(DBAPIError, match="append-only"), ledger.begin() as conn:
        conn.execute(text("DELETE FROM audit_runs"))
    assert runs_in(ledger) == 1


def test_a_ledger_that_cannot_record_still_shows_its_findings_and_says_how_to_go_on(
    ledger, database_url, tmp_path
):
    with ledger.begin() as conn:  # a ledger of a revision before audit runs
        conn.execute(text("DROP TABLE audit_runs"))
    code, out = verify_cli(database_url, tmp_path)
    assert code == 1 and "hash chain intact" in out and "--no-record" in out, out
    assert verify_cli(database_url, tmp_path, "--no-record")[0] == 0
