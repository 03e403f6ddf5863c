"""Fault injectors: a database outage (PostgreSQL or SQLite), flaky bank webhooks, a bank down.

Consumer kills and broker freezes need no class of their own: ``ConsumerProcess.kill``
and ``EmbeddedBroker.freeze``/``thaw`` do them.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import psycopg
from psycopg import sql

from consumers.notify.signing import verify_signature
from engine.trust.keys import KeyPair
from tooling.chaos.exceptions import ChaosSetupError

SQLITE_LOCK_WAIT_S = 30.0  # how long the lock holder itself waits to get the write lock
MAX_WEBHOOK_BODY_BYTES = 1024 * 1024


class DatabaseOutage(Protocol):
    """Makes the ledger unavailable to every consumer until ``end``."""

    description: str

    def begin(self) -> None: ...

    def end(self) -> None: ...


class PostgresOutage:
    """One database down, the server up: no new connections, every open one terminated.

    Stopping the server would break everything else sharing it (other tests, other
    runs); refusing connections to one database is, for its clients, the same outage.
    """

    description = "PostgreSQL: ALLOW_CONNECTIONS false and pg_terminate_backend"

    def __init__(self, admin_url: str, database: str) -> None:
        self.admin_url = admin_url
        self.database = database

    def begin(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(
                    sql.Identifier(self.database)
                )
            )
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.database,),
            )

    def end(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(
                    sql.Identifier(self.database)
                )
            )


class SqliteOutage:
    """Another writer holds the SQLite write lock (BEGIN EXCLUSIVE) until ``end``.

    Consumers wait out their busy timeout, get "database is locked", and must retry.
    """

    description = "SQLite: another connection holds BEGIN EXCLUSIVE"

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def begin(self) -> None:
        conn = sqlite3.connect(
            self.path, timeout=SQLITE_LOCK_WAIT_S, isolation_level=None, check_same_thread=False
        )
        conn.execute("BEGIN EXCLUSIVE")
        self._conn = conn

    def end(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.rollback()
            conn.close()


# -- the bank's webhook endpoint ----------------------------------------------------------

OK, HTTP_500, TIMEOUT, CLOSE = "ok", "http_500", "timeout", "closed"
DOWN = "down"  # the bank's endpoint is down (taken down by the harness): held, no answer
RANDOM_FAILURES = (HTTP_500, TIMEOUT, CLOSE)


@dataclass
class Receipt:
    """What the endpoint saw of one notification id."""

    payment_id: str
    outcome: str
    recipient_bank: str
    requests: int = 0
    accepted: int = 0  # answered 200


@dataclass
class WebhookLog:
    receipts: dict[str, Receipt] = field(default_factory=dict)
    modes: Counter[str] = field(default_factory=Counter)
    bad_signatures: int = 0
    cut_short: int = 0  # the sender died or gave up mid-request: no whole body, no verdict
    wrong_recipient: int = 0
    id_conflicts: list[str] = field(default_factory=list)  # same id, different content


class FlakyWebhook:
    """Every bank's webhook, on one local HTTP server that fails at random.

    Each request (after its signature is checked) is answered 200, or 500, or held past
    the sender's timeout, or has its connection closed without an answer; the mix is
    drawn from a seeded generator (the order requests arrive in is not seeded).

    A bank taken down (:meth:`take_down`) hangs: every request to its URL is held past
    the sender's timeout and never answered, until :meth:`bring_up`. Hanging is the
    harder outage for a sender: a refused connection fails at once, a hung one holds
    the sender's thread for its whole timeout.
    """

    def __init__(self, switch_key: KeyPair, seed: int, failure_rate: float, hold_s: float) -> None:
        if not 0 <= failure_rate <= 1:
            raise ValueError(f"failure_rate={failure_rate} must be in [0, 1]")
        self.switch_key = switch_key  # the banks trust its public half only
        self._trusted = {switch_key.key_id: switch_key.public}
        self.failure_rate = failure_rate
        self.hold_s = hold_s
        self.log = WebhookLog()
        self._rng = random.Random(f"sakk-chaos-webhook/{seed}")
        self._lock = threading.Lock()
        self._down: set[str] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise ChaosSetupError("webhook endpoint not started")
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def url_for(self, bank: str) -> str:
        return f"{self.url}/banks/{bank}"

    def start(self) -> FlakyWebhook:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                endpoint._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="chaos-webhook", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def take_down(self, bank: str) -> None:
        """From now on, ``bank``'s endpoint hangs on every request."""
        with self._lock:
            self._down.add(bank)

    def bring_up(self, bank: str) -> None:
        with self._lock:
            self._down.discard(bank)

    def _mode(self, bank: str = "") -> str:
        with self._lock:
            if bank in self._down:
                return DOWN
            if self._rng.random() >= self.failure_rate:
                return OK
            return self._rng.choice(RANDOM_FAILURES)

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = min(int(request.headers.get("Content-Length") or 0), MAX_WEBHOOK_BODY_BYTES)
        try:
            body = request.rfile.read(length)
        except OSError:
            body = b""
        if len(body) < length:  # a notification process killed while sending: not a forgery
            with self._lock:
                self.log.cut_short += 1
            request.close_connection = True
            return
        if not verify_signature(self._trusted, request.headers, body, int(time.time())):
            with self._lock:
                self.log.bad_signatures += 1
            request.send_response(401)
            request.end_headers()
            return
        document = json.loads(body)
        mode = self._mode(request.path.rsplit("/", 1)[-1])
        self._record(request.path, document, mode)
        if mode == OK:
            request.send_response(200)
            request.send_header("Content-Length", "0")
            request.end_headers()
        elif mode == HTTP_500:
            request.send_response(500)
            request.send_header("Content-Length", "0")
            request.end_headers()
        elif mode in (TIMEOUT, DOWN):
            time.sleep(self.hold_s)  # the sender gave up meanwhile; then no answer at all
        request.close_connection = True  # CLOSE: no status line, the socket just closes

    def _record(self, path: str, document: dict[str, Any], mode: str) -> None:
        nid = document["notification_id"]
        seen = (document["payment_id"], document["outcome"], document["recipient_bank"])
        with self._lock:
            self.log.modes[mode] += 1
            if path.rsplit("/", 1)[-1] != document["recipient_bank"]:
                self.log.wrong_recipient += 1
            receipt = self.log.receipts.get(nid)
            if receipt is None:
                receipt = self.log.receipts[nid] = Receipt(*seen)
            elif (receipt.payment_id, receipt.outcome, receipt.recipient_bank) != seen:
                self.log.id_conflicts.append(nid)
            receipt.requests += 1
            receipt.accepted += mode == OK
