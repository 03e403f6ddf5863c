"""A dead letter redriven from the console, through the embedded broker: its payment settles."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from engine.ledger.schemas import ApprovalStatus, approve
from engine.ops.action import Actor, run_action
from engine.ops.users import CreateUser, IssueToken, hash_password, new_token
from sakk.console.app import create_app
from sakk.console.config import ConsoleConfig
from tests.factories import AMINA, KARIM, payment
from tests.integration.test_dlq_redrive import (  # noqa: F401  (a fixture, used by name)
    KEY,
    STAGES,
    dead_letters,
    newer_writer,
    quick_schema_lookups,
    release_schemas,
    state_of,
)

pytestmark = pytest.mark.integration


def test_an_operator_redrives_a_dead_letter_from_the_console_and_it_settles(
    flow_factory,
    sqlite_url,
    tmp_path,
    quick_schema_lookups,  # noqa: F811
):
    flow = flow_factory(sqlite_url, consumers=STAGES)
    schema, writer = newer_writer(tmp_path)
    p = payment(AMINA, KARIM, 3_000)
    flow.publish_encoded([writer.encode("PaymentInitiated", {**p, "device_id": "a-1"})], key=KEY)
    flow.wait_until(lambda: [d.kind for d in dead_letters(flow)] == ["schema_not_approved"])
    (dead,) = dead_letters(flow)
    approval = approve(flow.engine, json.dumps(schema), release_schemas(), "operator-1")
    assert approval.status is ApprovalStatus.APPROVED, approval.reason
    now, root = datetime.now(UTC), Actor("root")
    issued = new_token()
    for action in (
        CreateUser("amal", "operator", None, hash_password("a long passphrase"), "root"),
        IssueToken("amal", issued.token_id, issued.secret_hash, "test", "root"),
    ):
        run_action(flow.engine, action, root, now)
    app = create_app(ConsoleConfig(sqlite_url, secure_cookies=False), flow.engine,
                     settings=flow.settings)  # fmt: skip
    operator = TestClient(app, headers={"Authorization": f"Bearer {issued.text}"})

    sent = operator.post(f"/api/v1/dead-letters/{dead.id}/redrive", json={"reason": "v2 approved"})
    assert sent.status_code == 200, sent.text
    assert sent.json()["sent"] and sent.json()["redrive"]["status"] == "PUBLISHED"
    flow.wait_until(lambda: state_of(flow, p) == "SETTLED")
    again = operator.post(f"/api/v1/dead-letters/{dead.id}/redrive", json={})
    assert again.status_code == 200 and not again.json()["sent"]  # published once only
    log = operator.get("/api/v1/audit/log", params={"action": "dlq.redrive"}).json()["items"]
    assert [(r["actor"], r["reason"]) for r in log] == [("amal", "v2 approved")]
    shown = operator.get(f"/api/v1/dead-letters/{dead.id}").json()
    assert shown["redrive"]["requested_by"] == "amal"
