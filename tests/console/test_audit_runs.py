"""The audit screen's runs: a verification asked of the console is recorded with who
asked, and listed with those of the command line; operators and auditors read them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import text

from engine.audit.runs import FinishedRun, record_run
from tests.console.conftest import DAY1, Console, make_console
from tests.factories import AMINA


def test_a_verification_from_the_console_is_recorded_and_listed_with_its_report(
    console: Console,
):
    at = DAY1 + timedelta(days=1)
    differences = {"payments": [{"payment_id": "007:P-1", "difference": "amount",
                                 "live": "account 007780000000000000000111"}]}  # fmt: skip
    record_run(console.engine, FinishedRun(
        "reconcile", "nadia", "cli", at, at + timedelta(seconds=3), {"live": "ledger"},
        "DIFFERENCES", 1, {"differences": 1}, {"ok": False, "differences": 1}, differences,
    ))  # fmt: skip
    verified = console.client("op2").get("/api/v1/audit/verify")
    assert verified.status_code == 200, verified.text
    page = console.client("aud").get("/api/v1/audit/runs").json()
    newest = page["items"][0]
    assert (newest["kind"], newest["actor"], newest["via"]) == ("verify", "op2", "console")
    assert newest["outcome"] == ("OK" if verified.json()["ok"] else "DIFFERENCES")
    assert newest["counts"]["entries"] == verified.json()["summary"]["entries"]
    shown = console.client("aud").get(f"/api/v1/audit/runs/{newest['id']}").json()
    assert shown["report"]["summary"]["entries"] == newest["counts"]["entries"]
    reconciles = console.client("op1").get("/api/v1/audit/runs", params={"kind": "reconcile"})
    rec = reconciles.json()["items"][0]
    assert (rec["actor"], rec["outcome"], rec["differences"]) == ("nadia", "DIFFERENCES", 1)
    as_auditor = console.client("aud").get(f"/api/v1/audit/runs/{rec['id']}").json()
    as_operator = console.client("op1").get(f"/api/v1/audit/runs/{rec['id']}").json()
    assert as_auditor["report"]["sections"] == differences  # whole
    assert "007780000000000000000111" not in str(as_operator["report"])  # masked
    assert as_operator["report"]["sections"]["payments"][0]["payment_id"] == "007:P-1"
    assert console.client("b007").get(f"/api/v1/audit/runs/{rec['id']}").status_code == 403
    bad = console.client("aud").get("/api/v1/audit/runs", params={"kind": "other"})
    assert bad.status_code == 422 or bad.status_code == 400, bad.text


def test_the_audit_screen_lists_runs_with_what_differed_and_a_run_shows_each_difference(
    console: Console,
):
    at = DAY1 + timedelta(days=1, hours=2)
    differences = {"balances": [{"account": "011-SETTLEMENT-MAD", "live_balance_minor": 5,
                                 "replay_balance_minor": 4}]}  # fmt: skip
    run_id = record_run(console.engine, FinishedRun(
        "reconcile", "yasmine", "cli", at, at + timedelta(seconds=2), {"live": "ledger"},
        "DIFFERENCES", 1, {"balance_differences": 1, "differences": 1, "matched": 12},
        {"ok": False}, differences,
    ))  # fmt: skip
    screen = console.client("aud").get("/audit").text
    listed = screen[screen.index('data-testid="audit-runs"') :]
    row = listed[listed.index(f'href="/audit/runs/{run_id}"') :].split("</tr>")[0]
    assert "yasmine" in row and "DIFFERENCES" in row and "balance differences 1" in row
    shown = console.client("op1").get(f"/audit/runs/{run_id}")
    assert shown.status_code == 200
    table = shown.text[shown.text.index('data-testid="run-balances"') :].split("</table>")[0]
    assert "011-SETTLEMENT-MAD" in table and "yasmine" in shown.text
    assert console.client("b011").get(f"/audit/runs/{run_id}").status_code == 403
    assert console.client("aud").get("/audit/runs/999999").status_code == 404


def test_the_overview_screen_says_the_lag_is_unknown_without_a_broker(console: Console):
    screen = console.client("op1").get("/").text
    assert 'data-testid="lag"' in screen and "unknown: no broker configured" in screen
    assert 'data-testid="lag"' not in console.client("b007").get("/").text


def test_a_verification_page_masks_an_account_for_an_operator_and_not_for_an_auditor(
    tmp_path: Path,
):
    tampered = make_console(f"sqlite:///{tmp_path / 'ledger.db'}")
    number = AMINA[1]
    with tampered.engine.begin() as conn:  # a balance changed behind the ledger's back
        conn.execute(
            text("UPDATE accounts SET balance_minor = balance_minor + 1 WHERE number = :n"),
            {"n": number},
        )
    as_auditor = tampered.client("aud").get("/audit/verify")
    as_operator = tampered.client("op1").get("/audit/verify")
    assert as_auditor.status_code == as_operator.status_code == 200
    assert number in as_auditor.text  # auditors check account numbers whole
    assert number not in as_operator.text and number[-4:] in as_operator.text
    api = tampered.client("op1").get("/api/v1/audit/verify").json()
    assert not api["ok"] and number not in str(api["sections"])
    tampered.engine.dispose()
