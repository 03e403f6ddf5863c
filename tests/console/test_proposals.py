"""Four eyes in the console: an operator proposes, cannot approve it, a second one does.

Auditors and bank users neither see nor decide proposals; a browser session's change
needs its CSRF token; the action is in the audit log with its proposal and approval.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from engine.ledger.models import BankLimit, table_of
from engine.ops.audit_log import list_actions, verify_action_log
from engine.ops.proposal_check import check_proposals
from tests.console.conftest import Console, sign_in

CAP = {"action": "limits.cap", "request": {"bank": "007", "currency": "MAD",
       "cap_minor": 12_345_600, "alert_percent": 85}, "reason": "guarantee raised"}  # fmt: skip


def cap_of(console: Console) -> tuple[int, int] | None:
    t = table_of(BankLimit)
    with console.engine.connect() as conn:
        where = (t.c.bank_code == "007", t.c.currency == "MAD")
        row = conn.execute(select(t.c.net_debit_cap_minor, t.c.alert_percent).where(*where)).first()
    return None if row is None else (row[0], row[1])


def filed(console: Console, body: dict[str, Any], user: str = "op1") -> dict[str, Any]:
    response = console.client(user).post("/api/v1/proposals", json=body)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def test_an_operator_proposes_cannot_approve_and_a_second_operator_approves(console: Console):
    before = cap_of(console)
    made = filed(console, CAP)
    assert made["state"] == "PENDING" and made["proposed_by"] == "op1"
    assert made["new"]["net_debit_cap_minor"] == 12_345_600 and cap_of(console) == before
    listed = console.client("op2").get("/api/v1/proposals", params={"state": "PENDING"}).json()
    assert made["id"] in [p["id"] for p in listed["items"]]
    own = console.client("op1").post(f"/api/v1/proposals/{made['id']}/approve", json={})
    assert own.status_code == 403 and own.json()["error"] == "own_proposal"
    assert cap_of(console) == before
    approved = console.client("op2").post(
        f"/api/v1/proposals/{made['id']}/approve", json={"reason": "letter seen"}
    )
    assert approved.status_code == 200, approved.text
    proposal = approved.json()["proposal"]
    assert proposal["state"] == "APPROVED" and proposal["decided_by"] == "op2"
    assert cap_of(console) == (12_345_600, 85)
    again = console.client("op2").post(f"/api/v1/proposals/{made['id']}/approve", json={})
    assert again.status_code == 409 and again.json()["error"] == "decided"
    with console.engine.connect() as conn:
        logged = [(a.action, a.actor, a.seq) for a in list_actions(conn, limit=10_000)]
        assert verify_action_log(conn).ok and check_proposals(conn) == []
    mine = [(a, who) for a, who, seq in logged if seq >= proposal["proposal_seq"]]
    assert mine[:3] == [("proposal.propose", "op1"), ("limits.cap", "op2"),
                        ("proposal.approve", "op2")]  # fmt: skip


@pytest.mark.parametrize("user", ["aud", "b007", None])
def test_auditors_bank_users_and_strangers_neither_see_nor_decide_proposals(
    console: Console, user: str | None
):
    made = filed(console, {**CAP, "request": {**CAP["request"], "cap_minor": 7_000_000}})
    client = console.client(user)
    status = 401 if user is None else 403
    assert client.get("/api/v1/proposals").status_code == status
    assert client.get(f"/api/v1/proposals/{made['id']}").status_code == status
    assert client.post("/api/v1/proposals", json=CAP).status_code == status
    assert client.post(f"/api/v1/proposals/{made['id']}/approve", json={}).status_code == status
    refusal = {"reason": "no"}
    assert client.post(f"/api/v1/proposals/{made['id']}/refuse", json=refusal).status_code == status
    shown = console.client("op2").get(f"/api/v1/proposals/{made['id']}").json()
    assert shown["state"] == "PENDING"


def test_a_session_decides_with_its_csrf_token_only(console: Console):
    made = filed(console, {**CAP, "request": {**CAP["request"], "cap_minor": 6_000_000}})
    client = console.client()
    csrf = sign_in(client, "op2")
    path = f"/api/v1/proposals/{made['id']}/refuse"
    refused = client.post(path, json={"reason": "wrong amount"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["message"]
    decided = client.post(path, json={"reason": "wrong amount"}, headers={"X-CSRF-Token": csrf})
    assert decided.status_code == 200 and decided.json()["state"] == "REFUSED"
    late = console.client("op1").post(f"/api/v1/proposals/{made['id']}/approve", json={})
    assert late.status_code == 409


def test_what_needs_no_second_operator_or_is_refused_now_is_not_proposed(console: Console):
    client = console.client("op1")
    abort = {"action": "window.abort", "request": {"label": "2026-11-24", "reason": "test"}}
    one = {"action": "notifications.redeliver", "request": {
        "which": {"ids": ["n-1"], "status": None, "bank": None, "since": None},
        "horizon_s": 3600, "reason": None}}  # fmt: skip
    for body in (abort, one):
        response = client.post("/api/v1/proposals", json=body)
        assert response.status_code == 400 and response.json()["error"] == "not_four_eyes"
    unknown = client.post("/api/v1/proposals", json={**CAP, "request": {"bank": "007"}})
    assert unknown.status_code == 400 and "is required" in unknown.json()["message"]
    no_bank = {**CAP, "request": {**CAP["request"], "bank": "999"}}
    refused = client.post("/api/v1/proposals", json=no_bank)
    assert refused.status_code == 409 and refused.json()["message"] == "no bank 999"
    missing = console.client("op2").post("/api/v1/proposals/999999/approve", json={})
    assert missing.status_code == 404


def test_a_deposit_proposed_gets_its_movement_id_from_the_console(console: Console):
    body = {"action": "liquidity.movement", "request": {"kind": "FundsIn", "bank": "011",
            "currency": "MAD", "amount_minor": 50_000}}  # fmt: skip
    made = console.client("op1").get(f"/api/v1/proposals/{filed(console, body)['id']}",
                                     params={"with_request": True}).json()  # fmt: skip
    assert len(made["request"]["request"]["movement_id"]) == 36
    assert made["new"]["amount"] == "500.00 MAD"
    # With no broker configured the deposit could not reach settlement: not approved.
    kept = console.client("op2").post(f"/api/v1/proposals/{made['id']}/approve", json={})
    assert kept.status_code == 409 and kept.json()["error"] == "cannot_follow_up"
    assert "SAKK_KAFKA_BOOTSTRAP_SERVERS" in kept.json()["message"]
    after = console.client("op1").get(f"/api/v1/proposals/{made['id']}").json()
    assert after["state"] == "PENDING"


def test_a_user_is_added_with_four_eyes_and_the_password_is_kept_only_as_its_hash(
    console: Console,
):
    body = {"action": "user.create", "request": {"user_name": "b011.treasury", "role": "bank",
            "bank_code": "011", "password": "correct horse battery staple"}}  # fmt: skip
    made = filed(console, body)
    shown = console.client("op2").get(f"/api/v1/proposals/{made['id']}",
                                      params={"with_request": True}).json()  # fmt: skip
    assert shown["request"]["request"]["password_hash"] == "(hidden)"
    assert shown["request"]["request"]["created_by"] == "op1"
    assert "correct horse" not in str(shown)
    assert console.client("op2").post(
        f"/api/v1/proposals/{made['id']}/approve", json={}
    ).status_code == 200  # fmt: skip
    session = console.client().post(
        "/api/v1/session",
        json={"name": "b011.treasury", "password": "correct horse battery staple"},
    )
    assert session.status_code == 200 and session.json()["bank_code"] == "011"
    short = {**body, "request": {**body["request"], "user_name": "x", "password": "short"}}
    refused = console.client("op1").post("/api/v1/proposals", json=short)
    assert refused.status_code == 400 and "password" in refused.json()["message"]
