"""Given-up notifications listed and sent again by an operator, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import sakk.cli.notifications  # noqa: F401  (registers the command on ``cli``)
from consumers.notification import NotificationStage
from consumers.notify.book import DeliveryBook, deliver_due
from consumers.notify.message import Attempt, DeliveryResult, Notification
from engine.config import load_settings
from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import Notification as NotificationRow
from engine.ledger.models import NotificationRedelivery
from engine.ledger.reference import load_reference_data, read_file
from sakk.app import make_codec
from sakk.cli import cli
from tests.factories import AMINA, KARIM, REFERENCE_FILE, decide_and_record, inbound, payment

pytestmark = pytest.mark.integration


class Endpoint:
    """A bank endpoint that is down until told otherwise."""

    name = "webhook"
    concurrent = False

    def __init__(self) -> None:
        self.up = False

    def deliver(self, n: Notification) -> DeliveryResult:
        now = datetime.now(UTC)
        a = Attempt(1, now, 0.0, 200 if self.up else None, None if self.up else "refused")
        return DeliveryResult(self.up, (a,), None if self.up else "refused")

    def close(self) -> None:
        pass


def test_an_operator_redelivers_given_up_notifications_once_with_an_audit_record(
    database_url, tmp_path
):
    settings = load_settings(
        environ={}, database_url=database_url, data_dir=tmp_path, notify_horizon_s=60
    )
    upgrade(settings.ledger_url)
    engine = make_engine(settings.ledger_url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    record = payment(AMINA, KARIM, 1_000, fee_minor=0, settlement_window="2026-12-01")
    with engine.begin() as conn:
        decide_and_record(
            conn,
            NotificationStage(settings, "webhook"),
            [inbound(settings.topic("settled"), "PaymentSettled", record)],
        )
    book = DeliveryBook(settings, engine, make_codec(settings), "webhook", random.Random(3))
    endpoint = Endpoint()
    now = datetime.now(UTC)
    announced = []
    while len(announced) < 2:  # both banks' notifications given up at the horizon
        announced += deliver_due(book, endpoint, now)
        now += timedelta(seconds=5)
        if now > datetime.now(UTC) + timedelta(hours=1):
            raise AssertionError("never gave up")
    first_ids = {book.codec.decode(a.message.value).record["event_id"] for a in announced}

    env = {"SAKK_DATABASE_URL": database_url, "SAKK_DATA_DIR": str(tmp_path)}
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    listed = json.loads(run("notifications", "list", "--status", "FAILED", "--format", "json"))
    assert {(n["recipient_bank"], n["status"]) for n in listed} == {
        ("007", "FAILED"),
        ("011", "FAILED"),
    }
    assert all("payload" not in n for n in listed)  # account numbers stay in the ledger
    only_011 = json.loads(
        run("notifications", "list", "--status", "FAILED", "--bank", "011", "--format", "json")
    )
    assert [n["recipient_bank"] for n in only_011] == ["011"]

    out = run(
        "notifications", "redeliver", "--bank", "011", "--by", "ops-amal", "--reason", "restored"
    )
    assert "1 redelivered, 0 unchanged" in out
    again = run("notifications", "redeliver", only_011[0]["notification_id"], "--by", "ops-amal")
    assert "0 redelivered, 1 unchanged" in again and "(PENDING)" in again
    with engine.connect() as conn:
        audit = conn.execute(select(NotificationRedelivery.__table__)).mappings().all()
        statuses = dict(
            conn.execute(select(NotificationRow.recipient_bank, NotificationRow.status)).all()
        )
    assert [(a["requested_by"], a["round"], a["reason"]) for a in audit] == [
        ("ops-amal", 1, "restored")
    ]
    assert statuses == {"007": "FAILED", "011": "PENDING"}

    endpoint.up = True
    (redelivered,) = deliver_due(book, endpoint, datetime.now(UTC))
    event = book.codec.decode(redelivered.message.value).record
    assert event["delivery_status"] == "DELIVERED" and event["recipient_bank"] == "011"
    assert event["notification_id"] == only_011[0]["notification_id"]  # the bank dedupes on it
    assert event["event_id"] not in first_ids  # a PaymentNotified of its own round
    assert deliver_due(book, endpoint, datetime.now(UTC) + timedelta(hours=1)) == []
    engine.dispose()


def test_redeliver_without_a_selection_is_refused(sqlite_url, tmp_path):
    upgrade(sqlite_url)
    result = CliRunner().invoke(
        cli,
        ["notifications", "redeliver", "--status", "FAILED", "--by", ""],
        env={"SAKK_DATABASE_URL": sqlite_url, "SAKK_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 2 and "names who asks" in result.output
