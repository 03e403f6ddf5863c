"""A real SQLite ledger with payments between three banks, console users of every role,
and clients signed in as each (bearer tokens; browser sessions where a test needs one)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert

from engine.ledger.models import DeadLetter, Notification, NotificationAttempt
from engine.ops.action import Actor, run_action
from engine.ops.users import CreateUser, IssueToken, hash_password, new_token
from sakk.console.app import create_app
from sakk.console.config import ConsoleConfig
from tests.factories import AMINA, KARIM, RAM, VIGNETTE_DGI, YOUSSEF, payment, switch_id
from tests.integration.test_audit_tamper import build_ledger

DAY1 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
PASSWORD = "a long enough passphrase"
ROOT = Actor("root", "test users")
# name -> (role, bank)
USERS: dict[str, tuple[str, str | None]] = {
    "op1": ("operator", None),
    "op2": ("operator", None),
    "aud": ("auditor", None),
    "b007": ("bank", "007"),
    "b011": ("bank", "011"),
    "b310": ("bank", "310"),
}
ROLES = ("operator", "auditor", "bank", "anonymous")
AS_ROLE = {"operator": "op1", "auditor": "aud", "bank": "b011"}  # whom each role is played by


def ledger_payments() -> list[dict[str, Any]]:
    """Twelve payments over a day: 007<->011, within 007, and 007 to the Treasury (310)."""
    out = []
    pairs = [(AMINA, KARIM), (KARIM, AMINA), (YOUSSEF, RAM), (YOUSSEF, VIGNETTE_DGI)]
    for i in range(12):
        payer, payee = pairs[i % 4]
        extra = {"channel": "EGOV", "payment_type": "EGOV", "egov_service": "VIGNETTE"}
        out.append(
            payment(payer, payee, 100 + i, occurred_at=DAY1 + timedelta(hours=i, minutes=5),
                    reference=f"REF-{i}", **(extra if payee == VIGNETTE_DGI else {}))
        )  # fmt: skip
    return out


@dataclass
class Console:
    engine: Engine
    url: str
    records: list[dict[str, Any]]
    tokens: dict[str, str] = field(default_factory=dict)  # user name -> bearer token text
    now: list[datetime] = field(default_factory=lambda: [DAY1 + timedelta(days=2)])

    def config(self, **overrides: Any) -> ConsoleConfig:
        return ConsoleConfig(self.url, **{"secure_cookies": False, **overrides})

    def app(self, **overrides: Any) -> Any:
        return create_app(self.config(**overrides), self.engine, clock=lambda: self.now[0])

    def client(self, user: str | None = None, **overrides: Any) -> TestClient:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return TestClient(self.app(**overrides), headers=headers)

    def ids_involving(self, bank: str) -> set[str]:
        return {switch_id(r) for r in self.records if bank in (r["payer_bank"], r["payee_bank"])}

    def ids_not_involving(self, bank: str) -> set[str]:
        return {switch_id(r) for r in self.records} - self.ids_involving(bank)


def add_users(engine: Engine, at: datetime) -> dict[str, str]:
    tokens = {}
    password_hash = hash_password(PASSWORD)
    for name, (role, bank) in USERS.items():
        run_action(engine, CreateUser(name, role, bank, password_hash, "root"), ROOT, at)
        issued = new_token()
        token = IssueToken(name, issued.token_id, issued.secret_hash, "tests", "root")
        run_action(engine, token, ROOT, at)
        tokens[name] = issued.text
    return tokens


def seed_notifications_and_dead_letters(engine: Engine, records: list[dict[str, Any]]) -> None:
    """Each payment told to both its banks (some given up, with attempts), and dead letters
    naming payments of each bank's namespace and none."""
    notes, attempts = [], []
    for i, r in enumerate(records):
        for bank in {r["payer_bank"], r["payee_bank"]}:
            nid = f"N-{i}-{bank}"
            at = r["occurred_at"] + timedelta(seconds=1)
            notes.append({
                "notification_id": nid, "payment_id": switch_id(r), "outcome": "SETTLED",
                "recipient_bank": bank, "sender": "switch",
                "status": "FAILED" if i % 3 == 0 else "DELIVERED", "attempts": 1,
                "last_error": "HTTP 500 for 007780000000000000000111" if i % 3 == 0 else None,
                "payload": "{}", "source_event_id": f"E-{i}", "created_at": at,
                "finished_at": at, "round": 0,
            })  # fmt: skip
            attempts.append({"notification_id": nid, "number": 1, "started_at": at,
                             "duration_ms": 12, "status_code": 500 if i % 3 == 0 else 200,
                             "error": None})  # fmt: skip
    dead = [
        {"consumer": "validator", "source_topic": "tamper.payments.initiated",
         "source_partition": 0, "source_offset": 1_000 + i, "kind": "undecodable",
         "reason": f"cannot read account 0077800000000000000001{i:02d}",
         "payment_id": pid, "recorded_at": DAY1 + timedelta(minutes=i)}
        for i, pid in enumerate([None, "007:X-1", "011:X-2", "310:X-3", "0071:X-4"])
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(Notification), notes)
        conn.execute(insert(NotificationAttempt), attempts)
        conn.execute(insert(DeadLetter), dead)


def make_console(url: str) -> Console:
    records = ledger_payments()
    engine = build_ledger(url, records)
    seed_notifications_and_dead_letters(engine, records)
    made = Console(engine, url, records)
    made.tokens = add_users(engine, DAY1 + timedelta(days=1))
    return made


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    made = make_console(f"sqlite:///{tmp_path_factory.mktemp('console') / 'ledger.db'}")
    yield made
    made.engine.dispose()


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> str:
    """Sign ``client`` in with a browser session; returns its CSRF token."""
    response = client.post("/api/v1/session", json={"name": name, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["csrf_token"])
