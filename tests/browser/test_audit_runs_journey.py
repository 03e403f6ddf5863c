"""An auditor in a real browser: the runs of ``sakk audit verify`` from the command line
and from the console are listed on the audit screen, a tampered balance shows as the
differences of the newest run, and the run's page names the account (whole, for an
auditor). Screenshots go to var/screenshots/<test name>/."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.browser.console import add_user, sakk, sign_in
from tests.factories import AMINA, KARIM, payment
from tests.integration.test_audit_tamper import build_ledger

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def shot(page: Any, folder: Any, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_an_auditor_reads_the_verify_runs_and_the_differences_of_a_tampered_ledger(
    sqlite_url, console_factory, new_page, screenshots
):
    engine = build_ledger(sqlite_url, [payment(AMINA, KARIM, 1_000 + i) for i in range(3)])
    sakk("audit", "verify", "--database-url", sqlite_url, "--by", "yusra")
    with engine.begin() as conn:  # a balance moved behind the ledger's back
        conn.execute(
            text("UPDATE accounts SET balance_minor = balance_minor + 7 WHERE number = :n"),
            {"n": AMINA[1]},
        )
    engine.dispose()
    console = console_factory(sqlite_url)
    add_user(sqlite_url, "ines", "auditor")

    page = new_page()
    sign_in(page, console, "ines")
    page.get_by_role("link", name="Audit").click()
    page.get_by_role("link", name="Verify").click()
    assert "does not verify" in page.get_by_test_id("verify-result").inner_text()
    page.get_by_role("link", name="Back to the audit log").click()
    runs = page.get_by_test_id("audit-runs")
    rows = [r.locator("td").all_inner_texts() for r in runs.locator("tbody tr").all()]
    assert [(r[1], r[4], r[5], r[6]) for r in rows] == [
        ("verify", "ines", "console", "DIFFERENCES"), ("verify", "yusra", "cli", "OK"),
    ]  # fmt: skip
    assert "ledger violations 1" in rows[0][8]
    shot(page, screenshots, "1-audit-runs")
    runs.locator("tbody tr").first.get_by_role("link").click()
    assert "DIFFERENCES" in page.get_by_test_id("run-outcome").inner_text()
    violations = page.get_by_test_id("run-ledger_violations").inner_text()
    assert AMINA[1] in violations  # an auditor reads the account whole
    shot(page, screenshots, "2-the-run-and-its-differences")
