"""Every route of the console, called as every role and anonymously: allowed or refused.

The table below names each route's callers; a route added to the app without a line
here fails :func:`test_every_route_has_a_line_in_the_matrix`. Then a bank's lists are
read whole and must hold only that bank's rows.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import iter_route_contexts

from tests.console.conftest import AS_ROLE, PASSWORD, ROLES, Console
from tests.factories import switch_id

PUBLIC, ANY, READER, OPERATOR = "public", "any", "reader", "operator"
ALLOWED = {
    PUBLIC: set(ROLES),
    ANY: {"operator", "auditor", "bank"},
    READER: {"operator", "auditor"},
    OPERATOR: {"operator"},
}
PAYMENT = "{payment}"  # replaced by a payment of the bank playing the bank role

# (method, path) -> (who may call it, how: path with examples, JSON or form body)
MATRIX: dict[tuple[str, str], tuple[str, str, dict[str, Any]]] = {
    ("GET", "/api/v1/openapi.json"): (PUBLIC, "/api/v1/openapi.json", {}),
    ("GET", "/login"): (PUBLIC, "/login", {}),
    ("POST", "/login"): (PUBLIC, "/login", {"data": {"name": "op2", "password": PASSWORD}}),
    ("POST", "/logout"): (ANY, "/logout", {}),
    ("POST", "/api/v1/session"): (
        PUBLIC,
        "/api/v1/session",
        {"json": {"name": "op2", "password": PASSWORD}},
    ),  # fmt: skip
    ("GET", "/api/v1/session"): (ANY, "/api/v1/session", {}),
    ("DELETE", "/api/v1/session"): (ANY, "/api/v1/session", {}),
    ("GET", "/api/v1/overview"): (ANY, "/api/v1/overview", {}),
    ("GET", "/api/v1/overview/rate"): (
        ANY,
        "/api/v1/overview/rate?since=2026-11-24T00:00:00Z&until=2026-11-25T00:00:00Z",
        {},
    ),  # fmt: skip
    ("GET", "/api/v1/payments"): (ANY, "/api/v1/payments", {}),
    ("GET", "/api/v1/payments/{payment_id}"): (ANY, f"/api/v1/payments/{PAYMENT}", {}),
    ("GET", "/api/v1/payments/{payment_id}/trace"): (
        ANY,
        f"/api/v1/payments/{PAYMENT}/trace",
        {},
    ),  # fmt: skip
    ("GET", "/api/v1/dead-letters"): (ANY, "/api/v1/dead-letters", {}),
    ("GET", "/api/v1/dead-letters/{dead_letter_id}"): (ANY, "/api/v1/dead-letters/999999", {}),
    ("GET", "/api/v1/dead-letters/{dead_letter_id}/body"): (
        READER,
        "/api/v1/dead-letters/1/body",
        {},
    ),  # fmt: skip
    ("POST", "/api/v1/dead-letters/{dead_letter_id}/redrive"): (
        OPERATOR,
        "/api/v1/dead-letters/999999/redrive",
        {"json": {}},
    ),  # fmt: skip
    ("GET", "/api/v1/notifications"): (ANY, "/api/v1/notifications", {}),
    ("GET", "/api/v1/notifications/status"): (ANY, "/api/v1/notifications/status", {}),
    ("GET", "/api/v1/notifications/{notification_id}"): (
        ANY,
        "/api/v1/notifications/N-1-011",
        {},
    ),  # fmt: skip
    ("POST", "/api/v1/notifications/{notification_id}/redeliver"): (
        OPERATOR,
        "/api/v1/notifications/N-none/redeliver",
        {"json": {}},
    ),  # fmt: skip
    ("GET", "/api/v1/settlement/windows"): (ANY, "/api/v1/settlement/windows", {}),
    ("GET", "/api/v1/settlement/positions"): (ANY, "/api/v1/settlement/positions", {}),
    ("POST", "/api/v1/settlement/windows/close"): (
        OPERATOR,
        "/api/v1/settlement/windows/close",
        {"json": {"window": "bad"}},
    ),  # fmt: skip
    ("POST", "/api/v1/settlement/windows/abort"): (
        OPERATOR,
        "/api/v1/settlement/windows/abort",
        {"json": {"label": "1999-01-01", "reason": "matrix"}},
    ),  # fmt: skip
    ("GET", "/api/v1/banks"): (ANY, "/api/v1/banks", {}),
    ("GET", "/api/v1/keys"): (ANY, "/api/v1/keys", {}),
    ("GET", "/api/v1/reference"): (ANY, "/api/v1/reference", {}),
    ("GET", "/api/v1/reference/versions"): (ANY, "/api/v1/reference/versions", {}),
    ("GET", "/api/v1/reference/schemas"): (ANY, "/api/v1/reference/schemas", {}),
    ("GET", "/api/v1/audit/log"): (READER, "/api/v1/audit/log", {}),
    ("GET", "/api/v1/audit/verify"): (READER, "/api/v1/audit/verify", {}),
    ("GET", "/api/v1/audit/runs"): (READER, "/api/v1/audit/runs?kind=verify", {}),
    ("GET", "/api/v1/audit/runs/{run_id}"): (READER, "/api/v1/audit/runs/999999", {}),
    ("GET", "/api/v1/users"): (READER, "/api/v1/users", {}),
    ("GET", "/api/v1/tokens"): (READER, "/api/v1/tokens", {}),
    ("GET", "/api/v1/proposals"): (OPERATOR, "/api/v1/proposals", {}),
    ("GET", "/api/v1/proposals/{proposal_id}"): (OPERATOR, "/api/v1/proposals/999999", {}),
    ("POST", "/api/v1/proposals"): (
        OPERATOR,
        "/api/v1/proposals",
        {
            "json": {
                "action": "limits.cap",
                "request": {
                    "bank": "999",
                    "currency": "MAD",
                    "cap_minor": 100,
                    "alert_percent": 80,
                },
            }
        },
    ),  # fmt: skip
    ("POST", "/api/v1/proposals/{proposal_id}/approve"): (
        OPERATOR,
        "/api/v1/proposals/999999/approve",
        {"json": {}},
    ),  # fmt: skip
    ("POST", "/api/v1/proposals/{proposal_id}/refuse"): (
        OPERATOR,
        "/api/v1/proposals/999999/refuse",
        {"json": {"reason": "matrix"}},
    ),  # fmt: skip
    # The pages (sakk/console/pages): a stranger is sent to sign in; a form that changes
    # something is posted empty or naming nothing, so an allowed caller changes nothing.
    ("GET", "/"): (ANY, "/", {}),
    ("GET", "/payments"): (ANY, "/payments", {}),
    ("GET", "/payments/{payment_id}"): (ANY, f"/payments/{PAYMENT}", {}),
    ("GET", "/dead-letters"): (READER, "/dead-letters", {}),
    ("GET", "/dead-letters/{dead_letter_id}"): (READER, "/dead-letters/999999", {}),
    ("POST", "/dead-letters/{dead_letter_id}/redrive"): (
        OPERATOR,
        "/dead-letters/999999/redrive",
        {"data": {}},
    ),  # fmt: skip
    ("POST", "/dead-letters/{dead_letter_id}/propose"): (
        OPERATOR,
        "/dead-letters/999999/propose",
        {"data": {"body": "{}"}},
    ),  # fmt: skip
    ("GET", "/notifications"): (ANY, "/notifications", {}),
    ("POST", "/notifications/redeliver"): (OPERATOR, "/notifications/redeliver", {"data": {}}),
    ("POST", "/notifications/redeliver-all"): (
        OPERATOR,
        "/notifications/redeliver-all",
        {"data": {}},
    ),  # fmt: skip
    ("GET", "/settlement"): (ANY, "/settlement", {}),
    ("POST", "/settlement/close"): (OPERATOR, "/settlement/close", {"data": {"window": "bad"}}),
    ("POST", "/settlement/settle"): (OPERATOR, "/settlement/settle", {"data": {"window": "no"}}),
    ("POST", "/settlement/confirm"): (
        OPERATOR,
        "/settlement/confirm",
        {"data": {"window": "no"}, "files": {"confirmation": ("a.xml", b"<a/>", "text/xml")}},
    ),  # fmt: skip
    ("POST", "/settlement/funds"): (OPERATOR, "/settlement/funds", {"data": {}}),
    ("POST", "/settlement/abort"): (OPERATOR, "/settlement/abort", {"data": {}}),
    ("GET", "/banks"): (ANY, "/banks", {}),
    ("POST", "/banks/keys/revoke"): (OPERATOR, "/banks/keys/revoke", {"data": {}}),
    ("GET", "/reference"): (READER, "/reference", {}),
    ("GET", "/users"): (READER, "/users", {}),
    ("POST", "/users/add"): (OPERATOR, "/users/add", {"data": {}}),
    ("POST", "/users/role"): (OPERATOR, "/users/role", {"data": {}}),
    ("POST", "/users/disabled"): (OPERATOR, "/users/disabled", {"data": {}}),
    ("GET", "/proposals"): (READER, "/proposals", {}),
    ("POST", "/proposals/{proposal_id}/approve"): (
        OPERATOR,
        "/proposals/999999/approve",
        {"data": {}},
    ),  # fmt: skip
    ("POST", "/proposals/{proposal_id}/refuse"): (
        OPERATOR,
        "/proposals/999999/refuse",
        {"data": {}},
    ),
    ("POST", "/proposals/cap"): (OPERATOR, "/proposals/cap", {"data": {}}),
    ("GET", "/audit"): (READER, "/audit", {}),
    ("GET", "/audit/verify"): (READER, "/audit/verify", {}),
    ("GET", "/audit/runs/{run_id}"): (READER, "/audit/runs/999999", {}),
}


def app_routes(console: Console) -> set[tuple[str, str]]:
    routes = set()
    for route in iter_route_contexts(console.app().routes):
        for method in getattr(route.route, "methods", None) or ():
            if method != "HEAD":
                routes.add((method, str(route.path)))
    return routes


def test_every_route_has_a_line_in_the_matrix(console: Console):
    routes = app_routes(console)
    assert routes - set(MATRIX) == set(), "routes without a line in MATRIX: add one"
    assert set(MATRIX) - routes == set(), "lines in MATRIX for routes that no longer exist"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
def test_each_role_is_allowed_or_refused_as_the_matrix_says(console: Console, route, role):
    who, path, body = MATRIX[route]
    user = AS_ROLE.get(role)
    path = path.replace(PAYMENT, sorted(console.ids_involving("011"))[0])
    client = console.client(user)
    response = client.request(route[0], path, follow_redirects=False, **body)
    if role in ALLOWED[who]:
        assert response.status_code not in (401, 403), (route, role, response.text)
        assert response.status_code < 500, (route, role, response.text)
    elif role == "anonymous" and not route[1].startswith("/api/"):  # a page: sign in first
        assert response.status_code == 303 and response.headers["location"].startswith("/login")
    else:
        assert response.status_code == (401 if role == "anonymous" else 403), (route, role)
        if route[1].startswith("/api/"):
            assert response.json()["error"] in ("unauthenticated", "forbidden")
        else:  # a page says it as a page, in the layout
            assert "may not: this needs" in response.text, (route, role)


def _everything(console: Console, user: str, path: str, key: str) -> list[dict[str, Any]]:
    client, items, cursor = console.client(user), [], None
    for _ in range(100):
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(path, params=params).json()
        items += page[key]
        cursor = page.get("next_cursor")
        if cursor is None:
            return items
    raise AssertionError("paging never ended")


@pytest.mark.parametrize("user,bank", [("b007", "007"), ("b011", "011"), ("b310", "310")])
def test_a_bank_reads_only_its_own_rows_in_every_list(console: Console, user, bank):
    payments = _everything(console, user, "/api/v1/payments", "items")
    assert {p["payment_id"] for p in payments} == console.ids_involving(bank)
    notes = _everything(console, user, "/api/v1/notifications", "items")
    assert notes and {n["recipient_bank"] for n in notes} == {bank}
    assert {n["payment_id"] for n in notes} <= console.ids_involving(bank)
    status = console.client(user).get("/api/v1/notifications/status").json()["banks"]
    assert set(status) == {bank}
    dead = _everything(console, user, "/api/v1/dead-letters", "items")
    assert [d["payment_id"] for d in dead] == [f"{bank}:X-{['007', '011', '310'].index(bank) + 1}"]
    windows = _everything(console, user, "/api/v1/settlement/windows", "items")
    assert windows and all(x["bank_code"] == bank for w in windows for x in w["lines"])
    board = console.client(user).get("/api/v1/settlement/positions").json()["lines"]
    assert {x["bank_code"] for x in board} <= {bank}
    keys = console.client(user).get("/api/v1/keys", params={"bank": "007"}).json()["keys"]
    assert {k["bank_code"] for k in keys} <= {bank}
    banks = console.client(user).get("/api/v1/banks").json()["banks"]
    assert all(b["webhook_url"] is None for b in banks if b["code"] != bank)


def _same_but_the_id(hidden: Any, missing: Any, hidden_id: str, missing_id: str) -> None:
    assert hidden.status_code == missing.status_code == 404
    assert hidden.content == missing.content.replace(missing_id.encode(), hidden_id.encode())


def test_another_banks_notification_and_dead_letter_are_answered_as_missing(console: Console):
    bank = console.client("b310")
    assert console.client("b011").get("/api/v1/notifications/N-0-011").status_code == 200
    _same_but_the_id(
        bank.get("/api/v1/notifications/N-0-011"), bank.get("/api/v1/notifications/N-0-099"),
        "N-0-011", "N-0-099",
    )  # fmt: skip
    dead = console.client("op1").get("/api/v1/dead-letters", params={"limit": 500}).json()
    own_007 = str(next(d["id"] for d in dead["items"] if d["payment_id"] == "007:X-1"))
    assert console.client("b007").get(f"/api/v1/dead-letters/{own_007}").status_code == 200
    _same_but_the_id(
        bank.get(f"/api/v1/dead-letters/{own_007}"), bank.get("/api/v1/dead-letters/999999"),
        own_007, "999999",
    )  # fmt: skip


def test_operators_see_every_row_and_auditors_every_account_whole(console: Console):
    notes = _everything(console, "op1", "/api/v1/notifications", "items")
    assert {n["payment_id"] for n in notes} == {switch_id(r) for r in console.records}
    failed = [n for n in notes if n["last_error"]]
    assert failed and all("00778" not in n["last_error"] for n in failed)
    whole = _everything(console, "aud", "/api/v1/notifications", "items")
    assert any("007780000000000000000111" in (n["last_error"] or "") for n in whole)


def test_the_liquidity_board_and_windows_show_every_bank_to_operators(console: Console):
    board = console.client("op1").get("/api/v1/settlement/positions").json()["lines"]
    assert {x["bank_code"] for x in board} >= {"007", "011"}
    own = console.client("b011").get("/api/v1/settlement/positions").json()["lines"]
    assert own and {x["bank_code"] for x in own} == {"011"}
    windows = console.client("aud").get("/api/v1/settlement/windows").json()["items"]
    assert {x["bank_code"] for w in windows for x in w["lines"]} >= {"007", "011", "310"}


def test_the_overview_counts_what_each_role_may_see(console: Console):
    def total(user: str) -> int:
        page = console.client(user).get("/api/v1/overview").json()
        return sum(line["payments"] for line in page["channels"])

    assert total("op1") == total("aud") == len(console.records)
    assert total("b310") == len(console.ids_involving("310"))
    window = {"since": "2026-11-24T00:00:00Z", "until": "2026-11-25T00:00:00Z"}
    minutes = console.client("b011").get("/api/v1/overview/rate", params=window).json()
    assert sum(m["payments"] for m in minutes["minutes"]) == len(console.ids_involving("011"))
    first = console.client("op1").get("/api/v1/overview/rate", params=window).json()["minutes"][0]
    assert first["minute"] == "2026-11-24T00:05:00Z" and first["payments"] == 1
    too_long = {"since": "2026-11-20T00:00:00Z", "until": "2026-11-25T00:00:00Z"}
    assert console.client("op1").get("/api/v1/overview/rate", params=too_long).status_code == 400
