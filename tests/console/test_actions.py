"""One operator's actions through the API, each in the audit log; users' rules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from engine.config import load_settings
from engine.ledger import console as store
from engine.ledger.models import Notification, table_of
from engine.ops.action import ActionRefusedError, run_action
from engine.ops.users import (
    ChangeRole,
    CreateUser,
    IssueToken,
    ResetPassword,
    RevokeToken,
    SetDisabled,
    hash_password,
    new_token,
)
from sakk.console.app import create_app
from tests.console.conftest import (
    DAY1,
    PASSWORD,
    ROOT,
    Console,
    add_users,
    ledger_payments,
    seed_notifications_and_dead_letters,
    sign_in,
)
from tests.integration.test_audit_tamper import build_ledger


@pytest.fixture
def fresh(tmp_path) -> Iterator[Console]:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    records = ledger_payments()[:4]
    engine = build_ledger(url, records)
    seed_notifications_and_dead_letters(engine, records)
    made = Console(engine, url, records)
    made.tokens = add_users(engine, DAY1 + timedelta(days=1))
    yield made
    engine.dispose()


def _log(console: Console, action: str) -> list[dict]:  # type: ignore[type-arg]
    page = console.client("aud").get("/api/v1/audit/log", params={"action": action}).json()
    return list(page["items"])


def test_an_operator_closes_a_window_and_the_audit_log_says_who(fresh: Console):
    settings = load_settings(environ={}, database_url=fresh.url, settlement_close_delay_s=0)
    app = create_app(fresh.config(), fresh.engine, settings=settings)
    from fastapi.testclient import TestClient

    op = TestClient(app, headers={"Authorization": f"Bearer {fresh.tokens['op1']}"})
    closed = op.post(
        "/api/v1/settlement/windows/close", json={"window": "2026-11-24", "reason": "end of day"}
    )
    assert closed.status_code == 200, closed.text
    assert closed.json()["published"] is None  # no broker here: recorded only
    again = op.post("/api/v1/settlement/windows/close", json={"window": "2026-11-24"})
    assert again.status_code == 200 and again.json()["seq"] is None  # nothing to change
    logged = _log(fresh, "window.close")
    assert [(r["actor"], r["target"], r["reason"]) for r in logged] == [
        ("op1", "window 2026-11-24", "end of day")
    ]
    windows = op.get("/api/v1/settlement/windows").json()["items"]
    assert {w["label"]: w["state"] for w in windows}["2026-11-24"] == "CLOSED"
    refused = op.post(
        "/api/v1/settlement/windows/abort", json={"label": "2026-11-24", "reason": "no"}
    )
    assert refused.status_code == 409 and refused.json()["error"] == "refused"


def test_an_operator_redelivers_one_given_up_notification(fresh: Console):
    op = fresh.client("op1")
    redelivered = op.post("/api/v1/notifications/N-0-011/redeliver", json={"reason": "fixed"})
    assert redelivered.status_code == 200, redelivered.text
    assert redelivered.json()["new"]["ids"] == ["N-0-011"]
    t = table_of(Notification)
    with fresh.engine.connect() as conn:
        status = conn.execute(
            select(t.c.status).where(t.c.notification_id == "N-0-011")
        ).scalar_one()  # fmt: skip
    assert status == "PENDING"
    assert _log(fresh, "notifications.redeliver")[0]["actor"] == "op1"
    assert fresh.client("aud").post(
        "/api/v1/notifications/N-0-007/redeliver", json={}
    ).status_code == 403  # fmt: skip


def test_a_redrive_needs_a_broker_and_an_existing_dead_letter(fresh: Console):
    op = fresh.client("op1")
    dead = op.get("/api/v1/dead-letters").json()["items"]
    answer = op.post(f"/api/v1/dead-letters/{dead[0]['id']}/redrive", json={})
    assert answer.status_code == 503 and answer.json()["error"] == "no_broker"
    assert op.post("/api/v1/dead-letters/999999/redrive", json={}).status_code == 404


def test_a_session_csrf_token_lets_a_browser_act(fresh: Console):
    client = fresh.client()
    csrf = sign_in(client, "op1")
    url = "/api/v1/notifications/N-0-007/redeliver"
    assert client.post(url, json={}).status_code == 403
    assert client.post(url, json={}, headers={"X-CSRF-Token": csrf}).status_code == 200


def test_user_rules_keep_one_operator_and_banks_real(fresh: Console):
    at = DAY1 + timedelta(days=2)
    password_hash = hash_password(PASSWORD)
    for refused in (
        CreateUser("op1", "operator", None, password_hash, "root"),  # exists
        CreateUser("x", "bank", "999", password_hash, "root"),  # no such bank
        CreateUser("x", "auditor", "007", password_hash, "root"),  # an auditor names no bank
        CreateUser("bad name", "auditor", None, password_hash, "root"),
    ):
        with pytest.raises(ActionRefusedError):
            run_action(fresh.engine, refused, ROOT, at)
    run_action(fresh.engine, SetDisabled("op2"), ROOT, at)
    with pytest.raises(ActionRefusedError, match="last enabled operator"):
        run_action(fresh.engine, SetDisabled("op1"), ROOT, at)
    with pytest.raises(ActionRefusedError, match="last enabled operator"):
        run_action(fresh.engine, ChangeRole("op1", "auditor", None), ROOT, at)


def test_changing_a_user_ends_its_sessions_and_disabling_stops_its_tokens(fresh: Console):
    at = DAY1 + timedelta(days=2)
    client = fresh.client()
    sign_in(client, "b007")
    run_action(fresh.engine, ChangeRole("b007", "bank", "011"), ROOT, at)
    assert client.get("/api/v1/session").status_code == 401  # its session ended
    assert fresh.client("b007").get("/api/v1/session").json()["bank_code"] == "011"
    run_action(fresh.engine, SetDisabled("b007"), ROOT, at)
    assert fresh.client("b007").get("/api/v1/session").status_code == 401
    assert client.post(
        "/api/v1/session", json={"name": "b007", "password": PASSWORD}
    ).status_code == 401  # fmt: skip
    run_action(fresh.engine, ResetPassword("b011", hash_password("another passphrase")), ROOT, at)
    assert client.post(
        "/api/v1/session", json={"name": "b011", "password": "another passphrase"}
    ).status_code == 200  # fmt: skip


def test_a_revoked_or_expired_token_is_refused_and_no_secret_is_kept(fresh: Console):
    at = DAY1 + timedelta(days=2)
    issued = new_token()
    run_action(fresh.engine, IssueToken("aud", issued.token_id, issued.secret_hash, "ci", "root",
                                        ttl_s=60), ROOT, at)  # fmt: skip
    headers = {"Authorization": f"Bearer {issued.text}"}
    fresh.now[0] = at
    assert fresh.client().get("/api/v1/session", headers=headers).status_code == 200
    fresh.now[0] = at + timedelta(seconds=61)
    assert fresh.client().get("/api/v1/session", headers=headers).status_code == 401
    fresh.now[0] = at
    token_id = fresh.tokens["aud"].removeprefix("sakk_").split(".")[0]
    run_action(fresh.engine, RevokeToken(token_id), ROOT, at)
    assert fresh.client("aud").get("/api/v1/session").status_code == 401
    with fresh.engine.connect() as conn:
        stored = store.list_tokens(conn, "aud")
    assert all(issued.text not in repr(t) for t in stored)
    log = fresh.client("op1").get("/api/v1/audit/log", params={"limit": 500}).text
    assert issued.text.split(".")[1] not in log and issued.secret_hash not in log
    assert "$argon2" not in log
