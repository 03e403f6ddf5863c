"""Settling and confirming a window with four eyes: proposed by one operator, taken when a
second approves; a confirmation that differs from the window by then FAILS with why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

import sakk.cli.proposals
import sakk.cli.settlement
import sakk.cli.settlement_windows  # noqa: F401  (each module registers its commands)
from engine.audit.window_lifecycle import window_state
from engine.audit.window_settlement import window_batches
from engine.ops.audit_log import list_actions
from engine.risk.confirmation import AnswerLine, answer_lines, build_answer
from engine.risk.windows import WindowState
from tests.integration.test_audit_tamper import build_ledger
from tests.integration.test_audit_windows import three_days
from tests.integration.test_window_lifecycle import LATER, cli_env, parties, run

pytestmark = pytest.mark.integration

DAY = "2026-11-24"


@pytest.fixture
def ledger(database_url: str):  # type: ignore[no-untyped-def]
    engine = build_ledger(database_url, three_days())
    yield engine
    engine.dispose()


def state(ledger: Engine) -> WindowState:
    with ledger.connect() as conn:
        return window_state(conn, DAY).state


def test_a_window_is_settled_and_confirmed_once_a_second_operator_approves_each(
    ledger, database_url, tmp_path: Path
):
    env = cli_env(database_url, tmp_path)
    sakk = lambda *a: run(env, *a)  # noqa: E731
    code, out = sakk("settlement", "close", "--window", DAY, "--delay-s", "0", "--no-publish",
                     "--by", "ops-amal", "--json")  # fmt: skip
    assert code == 0, out
    code, out = sakk("settlement", "settle", DAY, "--by", "ops-amal", "--propose", "--json")
    assert code == 0 and out["action"] == "window.settle" and out["old"]["state"] == "CLOSED", out
    assert state(ledger) is WindowState.CLOSED
    pacs009 = tmp_path / "pacs009.xml"
    code, out = sakk("proposals", "approve", str(out["id"]), "--by", "ops-badr", "--out",
                     str(pacs009), "--json")  # fmt: skip
    assert code == 0 and out["state"] == "APPROVED", out
    assert pacs009.read_bytes().startswith(b"<?xml") and state(ledger) is WindowState.SETTLING
    assert any("recorded, not published" in line for line in out["followed_by"])

    with ledger.connect() as conn:
        (batch,) = window_batches(conn, DAY, 1)
    first = batch.lines[0]
    wrong = tmp_path / "wrong.xml"
    wrong_lines = [AnswerLine(first.bank, first.net_minor + 1, "MAD"), *answer_lines(batch)[1:]]
    wrong.write_bytes(build_answer(batch.message_id, wrong_lines, parties(ledger), LATER))
    good = tmp_path / "good.xml"
    good.write_bytes(build_answer(batch.message_id, answer_lines(batch), parties(ledger), LATER))
    proposed: dict[str, Any] = {}
    for name, file in (("wrong", wrong), ("good", good)):
        code, out = sakk("settlement", "confirm", str(file), "--by", "ops-amal", "--propose",
                         "--json")  # fmt: skip
        assert code == 0 and out["target"] == f"window {DAY}", out
        proposed[name] = out["id"]
    code, out = sakk("proposals", "approve", str(proposed["wrong"]), "--by", "ops-badr", "--json")
    assert code == 1 and out["error"] == "failed", out
    assert f"confirmed {first.net_minor + 1}, net is {first.net_minor}" in out["message"]
    assert state(ledger) is WindowState.SETTLING
    code, out = sakk("proposals", "approve", str(proposed["good"]), "--by", "ops-badr", "--json")
    assert code == 0 and out["state"] == "APPROVED", out
    assert state(ledger) is WindowState.SETTLED
    with ledger.connect() as conn:
        logged = [(a.action, a.actor) for a in list_actions(conn)]
    assert ("window.settle", "ops-badr") in logged and ("window.confirm", "ops-badr") in logged
    assert logged.count(("proposal.fail", "ops-badr")) == 1
    code, out = sakk("audit", "verify", "--format", "json")
    assert code == 0, out
