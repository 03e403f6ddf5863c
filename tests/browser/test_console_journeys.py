"""People using the console in a real browser (headless Chromium), against a real ``sakk
console`` over a real ledger: an operator following a payment, a bank user kept to its own
bank, four eyes on a cap change, and a dead letter redriven until its payment settles.

Each journey writes screenshots to var/screenshots/<test name>/ (the summary lists them).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.ledger.models import Notification, Payment
from engine.ledger.schemas import ApprovalStatus, approve
from engine.serialization import AvroCodec
from tests.browser.console import add_user, sign_in
from tests.factories import (
    AMINA,
    KARIM,
    RAM,
    SALMA,
    VIGNETTE_DGI,
    YOUSSEF,
    authorization,
    payment,
    step,
    switch_id,
)
from tests.integration.test_audit_tamper import build_ledger
from tests.integration.test_dlq_redrive import newer_writer, release_schemas

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SCHEMA_REFRESH_S = 0.001  # the consumers look for newly approved schemas at once


def shot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def state_of(engine: Any, record: dict[str, Any]) -> str | None:
    with engine.connect() as conn:
        return conn.scalar(select(Payment.state).where(Payment.payment_id == switch_id(record)))


def delivered(engine: Any, record: dict[str, Any]) -> int:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Notification.status).where(Notification.payment_id == switch_id(record))
        ).scalars()
        return sum(1 for status in rows if status == "DELIVERED")


def test_an_operator_finds_a_payment_by_its_bank_reference_and_sees_its_steps_and_notifications(
    flow_factory, sqlite_url, console_factory, new_page, screenshots
):
    flow = flow_factory(sqlite_url)
    card = authorization(SALMA, RAM, 25_000, reference="CARD-4711")
    flow.publish([card])
    flow.wait_until(lambda: state_of(flow.engine, card) == "AUTHORIZED")
    flow.publish_steps([step(card, "CAPTURE", "007", 25_000, final=True)])
    flow.wait_until(lambda: state_of(flow.engine, card) == "CAPTURED")
    flow.wait_until(lambda: delivered(flow.engine, card) >= 2)
    console = console_factory(flow.settings.ledger_url)
    add_user(flow.settings.ledger_url, "amal", "operator")

    page = new_page()
    sign_in(page, console, "amal")
    shot(page, screenshots, "1-overview")
    page.get_by_role("link", name="Payments", exact=True).click()
    page.get_by_label("Bank reference").fill("CARD-4711")
    page.get_by_role("button", name="Search").click()
    results = page.get_by_test_id("payments")
    assert results.locator("tbody tr").count() == 1
    assert "CARD-4711" in results.inner_text()
    shot(page, screenshots, "2-search")
    page.get_by_role("link", name=switch_id(card)).click()
    assert page.get_by_test_id("state").inner_text().startswith("CAPTURED")
    steps = page.get_by_test_id("steps").inner_text()
    assert "CAPTURE" in steps and "APPLIED" in steps.upper()
    notices = page.get_by_test_id("notifications").inner_text()
    assert "DELIVERED" in notices and "attempt 1" in notices
    assert "signed by bank 007" in page.get_by_test_id("signer").inner_text()
    assert SALMA[1] not in page.content()  # an operator reads account numbers masked
    assert "****" + SALMA[1][-4:] in page.content()
    shot(page, screenshots, "3-payment")


def test_a_bank_user_sees_its_own_payments_and_not_another_banks(
    sqlite_url, console_factory, new_page, screenshots
):
    own = payment(AMINA, KARIM, 1_500, reference="TO-011")
    inside_007 = payment(YOUSSEF, RAM, 2_500, reference="IN-007")
    vignette = payment(AMINA, VIGNETTE_DGI, 70_000, channel="EGOV", payment_type="EGOV",
                       egov_service="VIGNETTE", reference="VIGNETTE")  # fmt: skip
    build_ledger(sqlite_url, [own, inside_007, vignette]).dispose()
    console = console_factory(sqlite_url)
    add_user(sqlite_url, "cih-ops", "bank", bank="011")

    page = new_page()
    sign_in(page, console, "cih-ops")
    assert "of bank 011" in page.get_by_test_id("who").inner_text()
    nav = page.get_by_role("navigation").inner_text()
    assert "Dead letters" not in nav and "Audit" not in nav
    page.get_by_role("link", name="Payments", exact=True).click()
    listed = page.get_by_test_id("payments").inner_text()
    assert switch_id(own) in listed
    assert switch_id(inside_007) not in listed and switch_id(vignette) not in listed
    assert KARIM[1] in listed and AMINA[1] not in listed  # its customer whole, 007's masked
    shot(page, screenshots, "1-own-payments")

    page.goto(f"{console.url}/payments/{switch_id(vignette)}")
    foreign = page.get_by_test_id("error").inner_text()
    page.goto(f"{console.url}/payments/007:no-such-payment")
    missing = page.get_by_test_id("error").inner_text()
    assert foreign == f"no payment {switch_id(vignette)} in the ledger"
    assert missing == "no payment 007:no-such-payment in the ledger"  # the same words
    shot(page, screenshots, "2-another-banks-payment-not-found")
    answer = page.request.get(f"{console.url}/dead-letters")
    assert answer.status == 403


def test_an_operator_proposes_a_cap_change_and_a_second_operator_approves_it(
    sqlite_url, console_factory, new_page, screenshots
):
    build_ledger(sqlite_url, [payment(AMINA, KARIM, 1_000)]).dispose()
    console = console_factory(sqlite_url)
    add_user(sqlite_url, "amal", "operator")
    add_user(sqlite_url, "badr", "operator")

    first = new_page()
    sign_in(first, console, "amal")
    first.get_by_role("link", name="Settlement").click()
    form = first.get_by_test_id("propose-cap")
    form.get_by_label("Bank").fill("011")
    form.get_by_label("Net debit cap").fill("750000.00")
    form.get_by_label("Alert at (%)").fill("75")
    form.get_by_label("Why").fill("CIH asked for a lower cap")
    form.get_by_role("button", name="Propose").click()
    notice = first.get_by_role("status").inner_text()
    proposal_id = int(re.search(r"proposal (\d+)", notice).group(1))
    card = first.get_by_test_id(f"proposal-{proposal_id}")
    assert card.get_by_test_id("proposal-state").inner_text() == "PENDING"
    assert card.get_by_role("button", name="Approve").count() == 0
    assert "another operator approves it" in card.inner_text()
    shot(first, screenshots, "1-proposed-cannot-approve-own")
    token = first.locator("input[name=csrf_token]").first.get_attribute("value")
    own = first.request.post(
        f"{console.url}/proposals/{proposal_id}/approve", form={"csrf_token": token}
    )
    assert own.status == 403 and "another operator approves it" in own.text()

    second = new_page()
    sign_in(second, console, "badr")
    second.get_by_role("link", name="Proposals").click()
    card = second.get_by_test_id(f"proposal-{proposal_id}")
    assert "750,000.00 MAD" in card.inner_text()
    shot(second, screenshots, "2-second-operator-sees-it")
    card.get_by_role("button", name="Approve").click()
    assert "approved" in second.get_by_role("status").inner_text()
    card = second.get_by_test_id(f"proposal-{proposal_id}")
    assert card.get_by_test_id("proposal-state").inner_text() == "APPROVED"
    second.get_by_role("link", name="Settlement").click()
    board = second.get_by_test_id("liquidity").inner_text()
    assert re.search(r"011\s+MAD.*750,000\.00 MAD", board)
    shot(second, screenshots, "3-approved-cap-on-the-board")
    second.get_by_role("link", name="Audit").click()
    log = second.get_by_test_id("audit-log")
    rows = {(r[2], r[3]) for r in _cells(log)}
    assert ("amal", "proposal.propose") in rows
    assert ("badr", "proposal.approve") in rows
    assert ("badr", "limits.cap") in rows
    assert second.get_by_test_id("chain").inner_text() == "whole"
    shot(second, screenshots, "4-audit-log")


def _cells(table: Any) -> list[list[str]]:
    return [
        [c.strip() for c in row.locator("td").all_inner_texts()]
        for row in table.locator("tbody tr").all()
    ]


@pytest.fixture
def quick_schema_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "sakk.app.AvroCodec",
        functools.partial(AvroCodec, approval_check_interval_s=SCHEMA_REFRESH_S),
    )


def test_a_dead_letter_redriven_from_the_console_settles_its_payment(
    flow_factory, sqlite_url, console_factory, new_page, screenshots, tmp_path,
    quick_schema_lookups,
):  # fmt: skip
    flow = flow_factory(sqlite_url, consumers=("validator", "settlement"))
    schema, writer = newer_writer(tmp_path)
    late = payment(AMINA, KARIM, 3_000, reference="NEW-SCHEMA-1")
    original = writer.encode("PaymentInitiated", {**late, "device_id": "android-7f3a"})
    flow.publish_encoded([original], key=AMINA[1].encode())  # before its schema is approved

    def dead_kinds() -> list[str]:
        from engine.ledger.dead_letters import list_dead_letters

        with flow.engine.connect() as conn:
            return [d.kind for d in list_dead_letters(conn)]

    flow.wait_until(lambda: dead_kinds() == ["schema_not_approved"])
    approval = approve(flow.engine, json.dumps(schema), release_schemas(), "schema-steward")
    assert approval.status is ApprovalStatus.APPROVED, approval.reason
    s = flow.settings
    console = console_factory(
        s.ledger_url, SAKK_KAFKA_BOOTSTRAP_SERVERS=s.kafka_bootstrap_servers,
        SAKK_TOPIC_PREFIX=s.topic_prefix, SAKK_DATA_DIR=str(tmp_path),
    )  # fmt: skip
    add_user(s.ledger_url, "amal", "operator")

    page = new_page()
    sign_in(page, console, "amal")
    page.get_by_role("link", name="Dead letters").click()
    listed = page.get_by_test_id("dead-letters")
    assert "schema_not_approved" in listed.inner_text()
    shot(page, screenshots, "1-dead-letters")
    listed.locator("tbody tr").first.get_by_role("link").first.click()
    assert "not sent again" in page.get_by_test_id("redrive-status").inner_text()
    shot(page, screenshots, "2-dead-letter")
    page.get_by_label("Why (for the auditors)").fill("PaymentInitiated v2 approved")
    page.get_by_role("button", name="Redrive").click()
    assert "PUBLISHED by amal" in page.get_by_test_id("redrive-status").inner_text()
    shot(page, screenshots, "3-redriven")
    flow.wait_until(lambda: state_of(flow.engine, late) == "SETTLED")
    page.get_by_test_id("payment-link").click()  # the redrive named the payment it carried
    assert page.get_by_test_id("state").inner_text().startswith("SETTLED")
    shot(page, screenshots, "4-payment-settled")
    page.get_by_role("link", name="Audit").click()
    assert "dlq.redrive" in page.get_by_test_id("audit-log").inner_text()
