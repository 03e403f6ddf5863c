"""A window settled from the console in a real browser: one operator closes it and proposes
settling it, a second approves; the first uploads the settlement bank's pacs.002 (a wrong
one first, refused with its difference) and proposes confirming; the second approves and
the screen shows the window SETTLED.

Screenshots go to var/screenshots/<test name>/ (the run's summary lists them).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.audit.window_lifecycle import window_state
from engine.audit.window_settlement import parties_of, window_batches
from engine.config import load_settings
from engine.ledger.database import make_engine
from engine.risk.confirmation import AnswerLine, answer_lines, build_answer
from tests.browser.console import add_user, sign_in
from tests.browser.test_console_journeys import shot
from tests.factories import AMINA, KARIM, YOUSSEF, payment
from tests.integration.test_audit_tamper import build_ledger

pytestmark = [pytest.mark.browser, pytest.mark.integration]

DAY = "2026-11-24"
AT = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def pacs002(database_url: str, folder: Path, name: str, wrong_by: int = 0) -> Path:
    """The settlement bank's answer to the window's current instruction, as a file."""
    settings = load_settings(environ={}, database_url=database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            parties = parties_of(conn, settings.settlement_switch_code,
                                 settings.settlement_bank_code,
                                 settings.settlement_clearing_system)  # fmt: skip
            (batch,) = window_batches(conn, DAY, window_state(conn, DAY).attempt)
    finally:
        engine.dispose()
    first, *rest = answer_lines(batch)
    lines = [AnswerLine(first.bank, first.net_minor + wrong_by, first.currency), *rest]
    path = folder / name
    path.write_bytes(build_answer(batch.message_id, lines, parties, AT + timedelta(days=1)))
    return path


def approve(page: Any, proposal_id: int) -> str:
    page.get_by_role("link", name="Proposals").click()
    card = page.get_by_test_id(f"proposal-{proposal_id}")
    card.get_by_role("button", name="Approve").click()
    notice = str(page.get_by_role("status").inner_text())
    assert f"proposal {proposal_id} approved" in notice, notice
    assert page.get_by_test_id(f"proposal-{proposal_id}").get_by_test_id(
        "proposal-state"
    ).inner_text() == "APPROVED"  # fmt: skip
    return notice


def proposed_id(page: Any) -> int:
    return int(re.search(r"Proposal (\d+)", page.get_by_test_id("proposed").inner_text()).group(1))


def window_heading(page: Any) -> str:
    return str(page.get_by_role("heading", name=re.compile(f"^Window {DAY}")).inner_text())


def test_a_window_is_closed_settled_and_confirmed_from_the_console_by_two_operators(
    sqlite_url, console_factory, new_page, screenshots, tmp_path
):
    records = [payment(AMINA, KARIM, 1_000, occurred_at=AT),
               payment(KARIM, YOUSSEF, 450, occurred_at=AT + timedelta(hours=1))]  # fmt: skip
    build_ledger(sqlite_url, records).dispose()
    console = console_factory(sqlite_url, SAKK_SETTLEMENT_CLOSE_DELAY_S="0",
                              SAKK_DATA_DIR=str(tmp_path / "data"))  # fmt: skip
    add_user(sqlite_url, "amal", "operator")
    add_user(sqlite_url, "badr", "operator")

    first = new_page()
    sign_in(first, console, "amal")
    first.get_by_role("link", name="Settlement").click()
    first.get_by_test_id("windows").get_by_role("link", name=DAY).click()
    first.get_by_role("button", name=f"Close window {DAY}").click()
    assert f"window {DAY} closed" in first.get_by_role("status").inner_text()
    assert window_heading(first).endswith("CLOSED")
    form = first.get_by_test_id("propose-settle")
    form.get_by_label("Why").fill("end of day")
    form.get_by_role("button", name=f"Propose settling window {DAY}").click()
    settle = proposed_id(first)
    assert window_heading(first).endswith("CLOSED")  # nothing moves before the approval
    shot(first, screenshots, "1-closed-settling-proposed")

    second = new_page()
    sign_in(second, console, "badr")
    assert "pacs.009 written to" in approve(second, settle)
    shot(second, screenshots, "2-settling-approved")

    first.goto(f"{console.url}/settlement?window={DAY}")
    assert window_heading(first).endswith("SETTLING")
    form = first.get_by_test_id("propose-confirm")
    form.get_by_label("Settlement bank's pacs.002").set_input_files(
        str(pacs002(sqlite_url, tmp_path, "wrong.xml", wrong_by=100))
    )  # fmt: skip
    form.get_by_role("button", name=f"Propose confirming window {DAY}").click()
    refused = first.get_by_test_id("refused").inner_text()
    assert "nothing was proposed" in refused and re.search(r"confirmed -?\d+, net is", refused)
    shot(first, screenshots, "3-wrong-pacs002-refused-with-its-difference")
    form = first.get_by_test_id("propose-confirm")
    form.get_by_label("Settlement bank's pacs.002").set_input_files(
        str(pacs002(sqlite_url, tmp_path, "pacs002.xml"))
    )  # fmt: skip
    form.get_by_role("button", name=f"Propose confirming window {DAY}").click()
    confirm = proposed_id(first)
    shot(first, screenshots, "4-confirming-proposed")

    approve(second, confirm)
    shot(second, screenshots, "5-confirming-approved")
    first.goto(f"{console.url}/settlement?window={DAY}")
    assert window_heading(first).endswith("SETTLED")
    row = first.get_by_test_id("windows").get_by_role("row", name=re.compile(DAY))
    assert "SETTLED" in row.inner_text()
    assert first.get_by_test_id("propose-confirm").count() == 0
    shot(first, screenshots, "6-window-settled")
