"""WebhookSender against a real HTTP server on 127.0.0.1 that checks every signature."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from consumers.notify.channels import WebhookSender
from consumers.notify.message import Notification
from consumers.notify.signing import verify_signature
from engine.trust.keys import KeyPair

pytestmark = pytest.mark.integration

SWITCH_KEY = KeyPair.from_seed(b"tests/switch/integration")
TRUSTED = {SWITCH_KEY.key_id: SWITCH_KEY.public}
TIMEOUT_MS = 200
SLOW_ENDPOINT_S = 1.0  # well past TIMEOUT_MS


@dataclass
class Receiver:
    """What the bank's endpoint saw: (path, notification id, signature valid) per request."""

    base_url: str
    requests: list[tuple[str, str, bool]] = field(default_factory=list)

    def ids(self, path: str) -> list[str]:
        return [nid for p, nid, _ in self.requests if p == path]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    failures_left: dict[str, int] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            valid = verify_signature(TRUSTED, self.headers, body, now_s=int(time.time()))
            nid = self.headers["X-Sakk-Notification-Id"]
            with lock:
                receiver.requests.append((self.path, nid, valid))
            if not valid:
                self._reply(401)
            elif self.path == "/flaky":
                with lock:
                    left = failures_left.setdefault(nid, 2)
                    failures_left[nid] = left - 1
                self._reply(500 if left > 0 else 200)
            elif self.path == "/slow":
                time.sleep(SLOW_ENDPOINT_S)
                self._reply(200)
            elif self.path == "/close":
                self.close_connection = True  # hang up without a status line
            elif self.path == "/trickle":
                self._trickle_headers()
            elif self.path == "/bad":
                self._reply(400, b"unknown creditor account")
            else:
                self._reply(200)

        def _reply(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _trickle_headers(self) -> None:
            """A 200 whose headers arrive one every 50 ms: each read beats the socket
            timeout, only the attempt deadline stops it."""
            self.close_connection = True
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for _ in range(40):
                    self.wfile.write(b"X-Pad: x\r\n")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                return

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return  # broken pipes after the client gave up are the point of some tests


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(base_url="")
    server = QuietServer(("127.0.0.1", 0), _handler(state))
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def sender_factory(max_attempts: int = 3) -> WebhookSender:
    return WebhookSender(
        [SWITCH_KEY],
        timeout_ms=TIMEOUT_MS,
        max_attempts=max_attempts,
        backoff_initial_ms=10,
        backoff_max_ms=40,
    )


def notification_for(receiver: Receiver, path: str, nid: str = "ntf-1") -> Notification:
    return Notification(
        notification_id=nid,
        payment_id="pay-1",
        outcome="SETTLED",
        recipient_bank="BKAM",
        webhook_url=receiver.base_url + path,
        payload={"amount_minor": 50_000, "currency": "MAD", "channel": "EGOV"},
    )


def test_delivers_on_first_try(receiver: Receiver) -> None:
    result = sender_factory().deliver(notification_for(receiver, "/ok"))

    assert result.delivered
    assert [(a.status_code, a.error) for a in result.attempts] == [(200, None)]
    assert receiver.requests == [("/ok", "ntf-1", True)]


def test_two_server_errors_then_success_keep_the_same_id(receiver: Receiver) -> None:
    result = sender_factory().deliver(notification_for(receiver, "/flaky", nid="ntf-flaky"))

    assert result.delivered
    assert [a.status_code for a in result.attempts] == [500, 500, 200]
    assert receiver.ids("/flaky") == ["ntf-flaky"] * 3
    assert all(valid for _, _, valid in receiver.requests)


def test_endpoint_slower_than_timeout_is_retried_then_failed(receiver: Receiver) -> None:
    sender = sender_factory()
    started = time.monotonic()

    result = sender.deliver(notification_for(receiver, "/slow"))

    assert not result.delivered
    assert len(result.attempts) == 3
    assert result.last_error == f"timeout after {TIMEOUT_MS} ms"
    assert time.monotonic() - started <= sender.worst_case_s + 0.5
    assert len(receiver.ids("/slow")) == 3


def test_connection_closed_without_response_is_retried_then_failed(receiver: Receiver) -> None:
    result = sender_factory().deliver(notification_for(receiver, "/close"))

    assert not result.delivered
    assert len(result.attempts) == 3
    assert result.last_error == "connection closed without a response"
    assert receiver.ids("/close") == ["ntf-1"] * 3


def test_trickling_endpoint_is_cut_at_the_attempt_deadline(receiver: Receiver) -> None:
    sender = sender_factory(max_attempts=2)
    started = time.monotonic()

    result = sender.deliver(notification_for(receiver, "/trickle"))

    assert not result.delivered
    assert result.last_error == f"timeout after {TIMEOUT_MS} ms"
    assert time.monotonic() - started <= sender.worst_case_s + 0.5


def test_bad_request_is_one_attempt_and_failed(receiver: Receiver) -> None:
    result = sender_factory().deliver(notification_for(receiver, "/bad"))

    assert not result.delivered
    assert len(result.attempts) == 1
    assert result.last_error == "HTTP 400 unknown creditor account"
    assert receiver.ids("/bad") == ["ntf-1"]


def test_refused_connection_is_retried_then_failed() -> None:
    server = QuietServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()  # nothing listens there now
    notification = Notification("n", "p", "FAILED", "BKAM", f"http://127.0.0.1:{port}/", {})

    result = sender_factory().deliver(notification)

    assert not result.delivered
    assert len(result.attempts) == 3
    assert "ConnectionRefusedError" in (result.last_error or "")
