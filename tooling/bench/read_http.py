"""The read benchmark through HTTP: the console's API and pages, as people reach them.

A real ``sakk console`` (uvicorn, a process of its own, on a free port of 127.0.0.1)
serves the loaded ledger; the benchmark signs in with API tokens it issues (an operator,
and a bank user for each bank the sampled payments name: audited operator actions, as
``sakk users add`` and ``sakk users token`` run them) and asks every query kind of
:mod:`tooling.bench.read_bench` twice: through the JSON API (``GET /api/v1/payments``
with the filters and the cursor, ``GET /api/v1/payments/{id}/trace``) and through the
pages a browser opens (``/payments?...``, ``/payments/{id}``). One keep-alive
connection per kind (``http.client``); each request is timed from sending it to its
last byte read, the server's sign-in check, rendering and JSON included. Anything but a
200 stops the run: a figure of an error page is no figure.
"""

from __future__ import annotations

import http.client
import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

from sqlalchemy import Engine

from engine.ledger import console as store
from engine.ops.action import Actor, run_action
from engine.ops.users import CreateUser, IssueToken, hash_password, new_token
from engine.read.paging import DEFAULT_PAGE
from engine.read.payments import PaymentFilter
from tooling.bench.read_bench import (
    MAX_REPEAT,
    WARM_UP,
    KindResult,
    KindSpec,
    Sample,
    deep_cursor,
    draw_samples,
    kind_specs,
    percentile,
)

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0  # for the console to answer once started (it migrates the ledger first)
STOP_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 60.0
TOKEN_TTL_S = 24 * 3600  # the benchmark's tokens outlive any run, then lapse
OPERATOR = "bench-read-operator"
ACTOR = Actor("bench-read", "the read benchmark through HTTP")
VIAS = ("api", "page")


@dataclass(frozen=True)
class HttpKindResult(KindResult):
    via: str = "api"  # the JSON API, or the page a browser opens


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def issue_tokens(engine: Engine, banks: set[str], at: datetime) -> dict[str | None, str]:
    """Bearer tokens: an operator's (key None) and a bank user's for each of ``banks``.

    The users are made once per ledger (``bench-read-operator``, ``bench-read-bank-CODE``,
    each with a random password nobody knows); each run issues new tokens, which lapse.
    """
    wanted: dict[str | None, str] = {None: OPERATOR}
    wanted.update({code: f"bench-read-bank-{code}" for code in sorted(banks)})
    tokens = {}
    for bank, name in wanted.items():
        with engine.connect() as conn:
            exists = store.get_user(conn, name) is not None
        if not exists:
            role = "operator" if bank is None else "bank"
            password_hash = hash_password(secrets.token_urlsafe(24))
            run_action(engine, CreateUser(name, role, bank, password_hash, ACTOR.name), ACTOR, at)
        issued = new_token()
        token = IssueToken(name, issued.token_id, issued.secret_hash, "bench-read", ACTOR.name,
                           TOKEN_TTL_S)  # fmt: skip
        run_action(engine, token, ACTOR, at)
        tokens[bank] = issued.text
    return tokens


@contextmanager
def running_console(database_url: str, log_path: Path, env: dict[str, str]) -> Iterator[int]:
    """``sakk console`` over ``database_url`` on a free port, until the block ends."""
    port = free_port()
    command = [sys.executable, "-m", "sakk", "console", "--database-url", database_url,
               "--host", HOST, "--port", str(port), "--plain-cookies"]  # fmt: skip
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_serving(process, port, log_path)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_serving(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the console stopped (exit {process.returncode}): {tail}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
            conn.request("GET", "/api/v1/openapi.json")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.1)  # polling a process's port, bounded by START_TIMEOUT_S
    raise RuntimeError(f"the console did not answer on port {port} within {START_TIMEOUT_S} s")


def search_query(which: PaymentFilter, cursor: str | None, limit: int | None) -> str:
    """A search's query string: each filter given (times in ISO 8601), the cursor, the page."""
    params: dict[str, str] = {}
    for f in fields(which):
        value = getattr(which, f.name)
        if value is not None:
            params[f.name] = value.isoformat() if isinstance(value, datetime) else str(value)
    if cursor is not None:
        params["cursor"] = cursor
    if limit is not None:
        params["limit"] = str(limit)
    return urlencode(params)


Request = Callable[[Sample, int], str]  # the path (and query) asked
Count = Callable[[bytes], int]  # the rows an answer holds


def _request_of(spec: KindSpec, via: str) -> tuple[Request, Count]:
    if spec.filter_of is None:
        prefix = "/api/v1" if via == "api" else ""
        suffix = "/trace" if via == "api" else ""
        path: Request = lambda s, i: f"{prefix}/payments/{quote(s.payment_id, safe=':')}{suffix}"  # noqa: E731
        return path, _trace_rows if via == "api" else _page_rows
    filter_of, deep = spec.filter_of, spec.deep

    def search(s: Sample, i: int) -> str:
        cursor = deep_cursor(s) if deep else None
        if via == "api":
            return f"/api/v1/payments?{search_query(filter_of(s, i), cursor, DEFAULT_PAGE)}"
        return f"/payments?{search_query(filter_of(s, i), cursor, None)}"

    return search, _items if via == "api" else _links


def _items(body: bytes) -> int:
    return len(json.loads(body)["items"])


def _trace_rows(body: bytes) -> int:
    view = json.loads(body)
    return 1 + len(view["steps"]) + len(view["postings"]) + len(view["notifications"])


def _links(body: bytes) -> int:
    """The payments a results page lists (each links to its page)."""
    return body.count(b'<a href="/payments/')


def _page_rows(body: bytes) -> int:
    """The table rows of a payment's page (its steps, postings, notifications...)."""
    return body.count(b"<tr")


class Client:
    """One keep-alive connection, reopened if the server closed it between two requests."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)

    def get(self, path: str, token: str) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {token}", "Accept": "*/*"}
        for attempt in (1, 2):
            try:
                self.conn.request("GET", path, headers=headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def measure_http_kind(
    port: int, spec: KindSpec, via: str, tokens: dict[str | None, str], samples: list[Sample],
    repeat: int,
) -> HttpKindResult:  # fmt: skip
    """``repeat`` requests of one kind (after a warm-up) on one keep-alive connection."""
    if not 1 <= repeat <= MAX_REPEAT:
        raise ValueError(f"repeat={repeat}: expected 1..{MAX_REPEAT}")
    path_of, count = _request_of(spec, via)
    client, timings, rows, empty = Client(port), [], 0, 0
    try:
        for i in range(-WARM_UP, repeat):
            sample = samples[i % len(samples)]
            path, token = path_of(sample, i), tokens[spec.audience_of(sample).bank_code]
            started = time.perf_counter()
            status, body = client.get(path, token)
            elapsed = (time.perf_counter() - started) * 1000
            if status != 200:
                raise RuntimeError(f"{via} {spec.kind} ({spec.audience}): {status} for {path}: "
                                   f"{body[:300]!r}")  # fmt: skip
            if i >= 0:
                found = count(body)
                timings.append(elapsed)
                rows, empty = rows + found, empty + (found == 0)
    finally:
        client.close()
    timings.sort()
    return HttpKindResult(
        spec.kind, spec.audience, repeat, rows / repeat, empty, percentile(timings, 0.50),
        percentile(timings, 0.95), percentile(timings, 0.99), timings[-1], via,
    )  # fmt: skip


def run_http_bench(
    engine: Engine, database_url: str, env: dict[str, str], log_path: Path, repeat: int,
    seed: int, say: Callable[[str], None] = lambda _t: None,
) -> list[HttpKindResult]:  # fmt: skip
    """Every query kind through the API and the pages of a console serving ``database_url``."""
    samples = draw_samples(engine, seed)
    banks = {s.payer_bank for s in samples} | {s.payee_bank for s in samples}
    tokens = issue_tokens(engine, banks, datetime.now(UTC))
    results: list[HttpKindResult] = []
    with running_console(database_url, log_path, env) as port:
        say(f"console on http://{HOST}:{port}/ (its log: {log_path})")
        for via in VIAS:
            for spec in kind_specs():
                result = measure_http_kind(port, spec, via, tokens, samples, repeat)
                say(f"{via} {spec.kind} ({spec.audience}): p99 {result.p99_ms:.1f} ms")
                results.append(result)
    return results
