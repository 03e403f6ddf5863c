"""Fault injectors that need no broker: the flaky webhook and the SQLite outage."""

from __future__ import annotations

import socket
import sqlite3
import time

import pytest
from sqlalchemy import text

from consumers.notify.channels import WebhookSender
from consumers.notify.message import Notification
from engine.ledger.database import make_engine
from engine.trust.keys import KeyPair
from tooling.chaos.faults import CLOSE, DOWN, HTTP_500, OK, TIMEOUT, FlakyWebhook, SqliteOutage

SWITCH_KEY = KeyPair.from_seed(b"tests/chaos/switch")


def notification(nid: str = "n-1", bank: str = "007", url: str = "") -> Notification:
    return Notification(nid, "p-1", "SETTLED", bank, url, {"amount_minor": 100})


def sender(max_attempts: int = 1) -> WebhookSender:
    return WebhookSender(
        [SWITCH_KEY],
        timeout_ms=300,
        max_attempts=max_attempts,
        backoff_initial_ms=1,
        backoff_max_ms=1,
    )


@pytest.fixture
def endpoint():
    webhook = FlakyWebhook(SWITCH_KEY, seed=1, failure_rate=0.0, hold_s=0.6).start()
    yield webhook
    webhook.stop()


def test_healthy_endpoint_accepts_and_records_the_notification_id(endpoint):
    result = sender().deliver(notification(url=endpoint.url_for("007")))
    assert result.delivered
    receipt = endpoint.log.receipts["n-1"]
    assert (receipt.payment_id, receipt.recipient_bank, receipt.accepted) == ("p-1", "007", 1)
    assert endpoint.log.modes == {OK: 1}


@pytest.mark.parametrize("mode", [HTTP_500, TIMEOUT, CLOSE])
def test_each_failure_mode_fails_the_attempt(endpoint, mode, monkeypatch):
    monkeypatch.setattr(endpoint, "_mode", lambda _bank="": mode)
    result = sender().deliver(notification(url=endpoint.url_for("007")))
    assert not result.delivered
    assert endpoint.log.modes == {mode: 1}
    assert endpoint.log.receipts["n-1"].accepted == 0


def test_retries_reach_a_flaky_endpoint_with_the_same_id():
    webhook = FlakyWebhook(SWITCH_KEY, seed=3, failure_rate=0.5, hold_s=0.6).start()
    try:
        results = [
            sender(max_attempts=6).deliver(notification(f"n-{i}", url=webhook.url_for("007")))
            for i in range(20)
        ]
    finally:
        webhook.stop()
    assert sum(r.delivered for r in results) >= 18
    assert sum(webhook.log.modes.values()) > 20  # some needed more than one attempt
    assert all(
        webhook.log.receipts[f"n-{i}"].requests == len(r.attempts) for i, r in enumerate(results)
    )


def test_a_bank_taken_down_hangs_until_brought_up_and_the_others_stay_healthy(endpoint):
    endpoint.take_down("011")
    started = time.monotonic()
    hung = sender().deliver(notification("n-down", bank="011", url=endpoint.url_for("011")))
    assert not hung.delivered and (hung.last_error or "").startswith("timeout")
    assert time.monotonic() - started >= 0.3  # held for the sender's whole timeout
    assert sender().deliver(notification("n-up", url=endpoint.url_for("007"))).delivered
    endpoint.bring_up("011")
    assert (
        sender().deliver(notification("n-down", bank="011", url=endpoint.url_for("011"))).delivered
    )
    assert endpoint.log.modes == {DOWN: 1, OK: 2}
    assert (endpoint.log.receipts["n-down"].requests, endpoint.log.receipts["n-down"].accepted) == (
        2,
        1,
    )


def test_wrong_signature_and_wrong_recipient_are_recorded(endpoint):
    forged = WebhookSender([KeyPair.from_seed(b"not the switch")], 300, 1, 1, 1)
    assert not forged.deliver(notification(url=endpoint.url_for("007"))).delivered
    sender().deliver(notification(bank="011", url=endpoint.url_for("007")))
    assert endpoint.log.bad_signatures == 1
    assert endpoint.log.wrong_recipient == 1


def test_sqlite_outage_locks_writers_out_until_it_ends(tmp_path):
    path = tmp_path / "l.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    outage = SqliteOutage(str(path))
    outage.begin()
    try:
        writer = sqlite3.connect(path, timeout=0.2, isolation_level=None)
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            writer.execute("BEGIN IMMEDIATE")
        assert time.monotonic() - started >= 0.15
    finally:
        outage.end()
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    writer.execute("COMMIT")
    engine.dispose()


def test_a_request_cut_short_by_a_dying_sender_is_no_bad_signature(endpoint):
    """A notification process killed mid-send leaves half a body: not a forgery."""
    host, port = endpoint.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(
            b"POST /banks/007 HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n" + b"{" * 40
        )
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1024)  # the server closes without an answer once it saw the body end
    assert (endpoint.log.cut_short, endpoint.log.bad_signatures) == (1, 0)
