"""The settlement screen's money moves: settling, confirming with an uploaded pacs.002,
funds in and out (four eyes each), and aborting an attempt; operators only, each form
with its CSRF token, a confirmation that differs refused at once with every difference."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from engine.audit.window_lifecycle import window_state
from engine.audit.window_settlement import parties_of, window_batches
from engine.config import Settings, load_settings
from engine.ops.proposals import get_proposal, list_proposals
from engine.risk.confirmation import AnswerLine, answer_lines, build_answer
from engine.risk.windows import WindowState
from sakk.console.app import create_app
from tests.console.conftest import DAY1, Console, add_users, ledger_payments, sign_in
from tests.integration.test_audit_tamper import build_ledger

pytestmark = pytest.mark.integration

DAY = "2026-11-24"
FORMS = ("propose-settle", "propose-confirm", "abort-settlement", "propose-funds")
ROUTES = ("/settlement/settle", "/settlement/confirm", "/settlement/funds", "/settlement/abort")


@dataclass
class Screen:
    console: Console
    settings: Settings

    def client(self, user: str | None = None) -> TestClient:
        app = create_app(self.console.config(), self.console.engine,
                         clock=lambda: self.console.now[0], settings=self.settings)  # fmt: skip
        token = self.console.tokens.get(user or "")
        return TestClient(app, headers={"Authorization": f"Bearer {token}"} if user else {})

    @property
    def engine(self) -> Engine:
        return self.console.engine


@pytest.fixture
def screen(tmp_path: Path) -> Iterator[Screen]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    records = ledger_payments()[:4]
    engine = build_ledger(url, records)
    made = Console(engine, url, records)
    made.tokens = add_users(engine, DAY1 + timedelta(days=1))
    settings = load_settings(environ={}, database_url=url, settlement_close_delay_s=0,
                             data_dir=tmp_path / "data")  # fmt: skip
    yield Screen(made, settings)
    engine.dispose()


def state(screen: Screen) -> WindowState:
    with screen.engine.connect() as conn:
        return window_state(conn, DAY).state


def proposal_of(answer: Any) -> int:
    assert answer.status_code == 200, answer.text[:800]
    return int(re.search(r"proposal (\d+) \(", answer.text).group(1))


def pacs002(screen: Screen, wrong_by: int = 0) -> bytes:
    """The settlement bank's answer to the window's instruction (one bank's amount off by
    ``wrong_by``)."""
    s = screen.settings
    with screen.engine.connect() as conn:
        parties = parties_of(conn, s.settlement_switch_code, s.settlement_bank_code,
                             s.settlement_clearing_system)  # fmt: skip
        (batch,) = window_batches(conn, DAY, window_state(conn, DAY).attempt)
    first, *rest = answer_lines(batch)
    lines = [AnswerLine(first.bank, first.net_minor + wrong_by, first.currency), *rest]
    return build_answer(batch.message_id, lines, parties, DAY1 + timedelta(days=3))


def close_and_settle(screen: Screen) -> None:
    op1, op2 = screen.client("op1"), screen.client("op2")
    assert op1.post("/settlement/close", data={"window": DAY}).status_code == 200
    proposal = proposal_of(op1.post("/settlement/settle", data={"window": DAY}))
    taken = op2.post(f"/proposals/{proposal}/approve", data={})
    assert taken.status_code == 200 and "pacs.009 written to" in taken.text, taken.text[:800]


def test_a_window_is_settled_and_confirmed_from_the_screen_with_a_second_operators_approval(
    screen: Screen,
):
    op1, op2 = screen.client("op1"), screen.client("op2")
    still_open = op1.post("/settlement/settle", data={"window": DAY})
    assert still_open.status_code == 409 and "refused:" in still_open.text
    assert op1.post("/settlement/close", data={"window": DAY}).status_code == 200
    early = {"confirmation": ("pacs002.xml", b"<x/>", "application/xml")}
    not_settling = op1.post("/settlement/confirm", data={"window": DAY}, files=early)
    assert not_settling.status_code == 409 and "refused:" in not_settling.text
    closed = op1.get("/settlement", params={"window": DAY}).text
    assert f"Propose settling window {DAY}" in closed and "propose-confirm" not in closed
    proposed = op1.post("/settlement/settle", data={"window": DAY, "reason": "day end"})
    proposal = proposal_of(proposed)
    assert f"(window.settle on window {DAY}) waits for another operator" in proposed.text
    assert 'href="/proposals' in proposed.text and state(screen) is WindowState.CLOSED
    assert op1.post(f"/proposals/{proposal}/approve", data={}).status_code == 403  # its own
    taken = op2.post(f"/proposals/{proposal}/approve", data={})
    assert "pacs.009 written to" in taken.text and state(screen) is WindowState.SETTLING
    assert any((screen.settings.data_dir / "instructions").glob("pacs009-*.xml"))
    settling = op1.get("/settlement", params={"window": DAY}).text
    assert f"Propose confirming window {DAY}" in settling

    good = {"confirmation": ("pacs002.xml", pacs002(screen), "application/xml")}
    proposed = op1.post("/settlement/confirm", data={"window": DAY}, files=good)
    proposal = proposal_of(proposed)
    assert f"(window.confirm on window {DAY}) waits" in proposed.text
    assert state(screen) is WindowState.SETTLING
    taken = op2.post(f"/proposals/{proposal}/approve", data={})
    assert f"proposal {proposal} approved" in taken.text, taken.text[:800]
    assert state(screen) is WindowState.SETTLED
    assert f"Window {DAY}: SETTLED" in op1.get("/settlement", params={"window": DAY}).text


def test_a_pacs002_that_differs_from_the_window_is_refused_with_every_difference(
    screen: Screen,
):
    close_and_settle(screen)
    before = len(list_proposals(screen.engine, screen.console.now[0], None, 100))
    wrong = {"confirmation": ("wrong.xml", pacs002(screen, wrong_by=1), "application/xml")}
    answer = screen.client("op1").post("/settlement/confirm", data={"window": DAY}, files=wrong)
    assert answer.status_code == 409
    refused = re.search(r'data-testid="refused">(.*?)</div>', answer.text, re.S).group(1)
    assert re.search(r"confirmed -?\d+, net is -?\d+", refused), refused
    assert "nothing was proposed" in refused
    assert len(list_proposals(screen.engine, screen.console.now[0], None, 100)) == before
    garbage = {"confirmation": ("notes.txt", b"<not a pacs.002/>", "text/plain")}
    answer = screen.client("op1").post("/settlement/confirm", data={"window": DAY}, files=garbage)
    assert answer.status_code == 409 and "notes.txt: not a usable pacs.002" in answer.text
    assert state(screen) is WindowState.SETTLING


def test_a_confirmation_larger_than_the_body_limit_is_refused(screen: Screen):
    close_and_settle(screen)
    big = {"confirmation": ("big.xml", b"<" + b"x" * 1_100_000, "application/xml")}
    answer = screen.client("op1").post("/settlement/confirm", data={"window": DAY}, files=big)
    assert answer.status_code == 413


def test_funds_in_and_out_are_proposed_in_minor_units_from_the_amount_typed(screen: Screen):
    op1 = screen.client("op1")
    funds = {"bank": "011", "movement": "FundsIn", "amount": "1,000.50", "reason": "top-up"}
    proposal = proposal_of(op1.post("/settlement/funds", data=funds))
    request = get_proposal(screen.engine, proposal, screen.console.now[0]).decoded()
    assert (request.kind, request.bank, request.amount_minor) == ("FundsIn", "011", 100_050)
    out = proposal_of(op1.post("/settlement/funds", data={**funds, "movement": "FundsOut"}))
    assert get_proposal(screen.engine, out, screen.console.now[0]).decoded().kind == "FundsOut"
    for amount, words in (("1.005", "amount:"), ("0", "above zero"), ("1e3", "amount:")):
        answer = op1.post("/settlement/funds", data={**funds, "amount": amount})
        assert answer.status_code == 400 and words in answer.text, (amount, answer.text[:500])
    unknown = op1.post("/settlement/funds", data={**funds, "bank": "999"})
    assert unknown.status_code == 409 and "refused: no bank 999" in unknown.text


def test_an_operator_aborts_a_settling_attempt_and_may_propose_settling_again(screen: Screen):
    close_and_settle(screen)
    op1 = screen.client("op1")
    aborted = op1.post("/settlement/abort", data={"window": DAY, "reason": "BAM refused"})
    assert aborted.status_code == 200 and "attempt aborted" in aborted.text, aborted.text[:800]
    assert state(screen) is WindowState.ABORTED
    assert f"Propose settling window {DAY}" in aborted.text
    again = op1.post("/settlement/abort", data={"window": DAY, "reason": "twice"})
    assert again.status_code == 409


@pytest.mark.parametrize("user", ["aud", "b011"])
def test_auditors_and_bank_users_see_no_form_and_are_refused_whatever_they_post(
    screen: Screen, user: str
):
    close_and_settle(screen)
    client = screen.client(user)
    page = client.get("/settlement", params={"window": DAY}).text
    assert not any(f'data-testid="{form}"' in page for form in FORMS)
    assert 'data-testid="propose-confirm"' in screen.client("op1").get(
        "/settlement", params={"window": DAY}
    ).text  # fmt: skip
    bodies = {"/settlement/settle": {"window": DAY},
              "/settlement/funds": {"bank": "011", "movement": "FundsIn", "amount": "1.00"},
              "/settlement/abort": {"window": DAY, "reason": "mine"}}  # fmt: skip
    for route in ROUTES:
        files = {"confirmation": ("a.xml", pacs002(screen), "application/xml")}
        answer = client.post(route, data=bodies.get(route, {"window": DAY}),
                             files=files if route.endswith("confirm") else None)  # fmt: skip
        assert answer.status_code == 403 and "may not: this needs operator" in answer.text
    assert state(screen) is WindowState.SETTLING
    assert len(list_proposals(screen.engine, screen.console.now[0], None, 100)) == 1


def test_a_form_posted_without_its_csrf_token_is_refused(screen: Screen):
    close_and_settle(screen)
    client = screen.client()
    token = sign_in(client, "op1")
    page = client.get("/settlement", params={"window": DAY}).text
    for form in FORMS[1:]:  # a SETTLING window's (settling has its own: CLOSED windows')
        block = re.search(rf'<form[^>]*data-testid="{form}".*?</form>', page, re.S).group(0)
        assert f'name="csrf_token" value="{token}"' in block
    files = {"confirmation": ("a.xml", pacs002(screen), "application/xml")}
    assert client.post("/settlement/confirm", data={"window": DAY}, files=files).status_code == 403
    assert client.post("/settlement/settle", data={"window": DAY}).status_code == 403
    funds = {"bank": "011", "movement": "FundsIn", "amount": "1.00"}
    assert client.post("/settlement/funds", data=funds).status_code == 403
    assert client.post("/settlement/abort", data={"window": DAY, "reason": "x"}).status_code == 403
    with_token = client.post("/settlement/confirm", data={"window": DAY, "csrf_token": token},
                             files=files)  # fmt: skip
    assert with_token.status_code == 200 and "(window.confirm on window" in with_token.text
