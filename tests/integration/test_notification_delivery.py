"""Durable delivery through the whole flow: one bank's endpoint hangs for a minute.

Real parts throughout: the embedded broker, the ledger on SQLite and PostgreSQL, the
consumers and the delivery loop in threads, and an HTTP server on 127.0.0.1 that
checks every signature. Timings are read from the recorded attempts, never slept on.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select, update

from consumers.notify.signing import verify_signature
from engine.ledger.models import Bank, EmittedEvent, NotificationAttempt
from engine.ledger.models import Notification as NotificationRow
from engine.trust.keys import KeyPair
from tests.factories import AMINA, KARIM, YOUSSEF, payment

pytestmark = pytest.mark.integration

SWITCH_KEY = KeyPair.from_seed(b"tests/switch")
TRUSTED = {SWITCH_KEY.key_id: SWITCH_KEY.public}
OUTAGE_S = 60.0
BURST_EVERY_S = 10.0  # payments arrive all through the outage, not only at its start
HEALTHY_DELIVERY_BOUND_S = 5.0  # created -> accepted for a bank that is up, on a busy machine
DOWN_BANK = KARIM[0]  # 011
HEALTHY_BANK = AMINA[0]  # 007


@dataclass
class Endpoints:
    """Both banks' webhook endpoints; the down bank accepts connections and never answers."""

    base_url: str
    up: threading.Event = field(default_factory=threading.Event)
    accepted: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(endpoints: Endpoints) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            bank = self.path.rsplit("/", 1)[-1]
            if bank == DOWN_BANK and not endpoints.up.is_set():
                endpoints.up.wait(OUTAGE_S)  # hang: the sender's attempt deadline cuts it
                self.close_connection = True
                return
            if not verify_signature(TRUSTED, self.headers, body, now_s=int(time.time())):
                with endpoints.lock:
                    endpoints.bad_signatures += 1
                self._reply(401)
                return
            with endpoints.lock:
                endpoints.accepted[bank].add(self.headers["X-Sakk-Notification-Id"])
            self._reply(200)

        def _reply(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


@pytest.fixture
def endpoints() -> Iterator[Endpoints]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(Endpoints("")))
    server.daemon_threads = True
    ends = Endpoints(f"http://127.0.0.1:{server.server_port}/bank")
    server.RequestHandlerClass = _handler(ends)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ends
    ends.up.set()
    server.shutdown()
    server.server_close()


def _notifications(flow) -> list:  # type: ignore[no-untyped-def,type-arg]
    with flow.engine.connect() as conn:
        return list(conn.execute(select(NotificationRow.__table__)).mappings())


def _accepted_at(flow) -> dict[str, datetime]:  # type: ignore[no-untyped-def]
    """When each notification's successful attempt ended, from the recorded attempts."""
    a = NotificationAttempt.__table__
    with flow.engine.connect() as conn:
        found = conn.execute(
            select(a.c.notification_id, a.c.started_at, a.c.duration_ms).where(a.c.error.is_(None))
        ).all()
    return {
        nid: _aware(started) + timedelta(milliseconds=duration_ms)
        for nid, started, duration_ms in found
    }


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_a_bank_down_for_a_minute_gets_every_notification_and_delays_no_other_bank(
    flow_factory, database_url, endpoints, tmp_path
):
    key_file = tmp_path / "switch.pem"
    SWITCH_KEY.write(key_file)
    flow = flow_factory(
        database_url,
        notify_sender="webhook",
        webhook_signing_key_files=str(key_file),
        webhook_timeout_ms=500,
        notify_retry_initial_ms=200,
        notify_retry_max_ms=2_000,
        notify_max_in_flight_per_bank=4,
    )
    with flow.engine.begin() as conn:
        conn.execute(
            update(Bank.__table__).values(webhook_url=endpoints.base_url + "/" + Bank.code)
        )
    started = time.monotonic()
    published = 0
    while time.monotonic() - started < OUTAGE_S - BURST_EVERY_S:
        # Each burst: two interbank payments (both banks told) and one within 007.
        flow.publish(
            [payment(AMINA, KARIM, 100), payment(AMINA, KARIM, 100), payment(AMINA, YOUSSEF, 100)]
        )
        published += 3
        burst_deadline = time.monotonic() + BURST_EVERY_S
        flow.wait_until(  # the healthy bank is told of this burst while the other is down
            lambda n=published: len(endpoints.accepted[HEALTHY_BANK]) >= n,
            timeout_s=BURST_EVERY_S * 3,
        )
        while time.monotonic() < burst_deadline:  # pace the next burst (not a wait on state)
            time.sleep(0.2)
    down_during_outage = {r["notification_id"] for r in _notifications(flow)} - set(
        endpoints.accepted[HEALTHY_BANK]
    )
    assert endpoints.accepted[DOWN_BANK] == set()
    endpoints.up.set()
    recovered_at = datetime.now(UTC)

    expected = published + published * 2 // 3  # 007 for every payment, 011 for interbank
    flow.wait_until(
        lambda: sum(r["status"] == "DELIVERED" for r in _notifications(flow)) == expected,
        timeout_s=60,
    )
    rows = _notifications(flow)
    assert {r["status"] for r in rows} == {"DELIVERED"}
    assert endpoints.bad_signatures == 0
    by_bank = defaultdict(set)
    for r in rows:
        by_bank[r["recipient_bank"]].add(r["notification_id"])
    assert endpoints.accepted[DOWN_BANK] == by_bank[DOWN_BANK] == down_during_outage
    assert endpoints.accepted[HEALTHY_BANK] == by_bank[HEALTHY_BANK]

    accepted_at = _accepted_at(flow)
    healthy_s = [
        (accepted_at[r["notification_id"]] - _aware(r["created_at"])).total_seconds()
        for r in rows
        if r["recipient_bank"] == HEALTHY_BANK
    ]
    assert max(healthy_s) < HEALTHY_DELIVERY_BOUND_S, sorted(healthy_s)[-5:]
    for r in rows:
        if r["recipient_bank"] == DOWN_BANK:
            assert accepted_at[r["notification_id"]] >= recovered_at
            assert r["attempts"] > 1  # retried on the schedule, same notification id

    with flow.engine.connect() as conn:
        announced = conn.execute(
            select(func.count(func.distinct(EmittedEvent.event_id))).where(
                EmittedEvent.consumer == "notification"
            )
        ).scalar_one()
    assert announced == expected  # one PaymentNotified per notification, once it succeeded
