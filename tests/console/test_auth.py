"""Signing in and out: sessions, their cookie, CSRF, the rate limit, bearer tokens."""

from __future__ import annotations

from datetime import timedelta

from tests.console.conftest import PASSWORD, Console, sign_in


def test_a_session_cookie_is_http_only_strict_and_secure_when_configured(console: Console):
    plain = console.client().post("/api/v1/session", json={"name": "op1", "password": PASSWORD})
    cookie = plain.headers["set-cookie"]
    assert cookie.startswith("sakk_session=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    secure = console.client(secure_cookies=True).post(
        "/api/v1/session", json={"name": "op1", "password": PASSWORD}
    )
    assert "Secure" in secure.headers["set-cookie"]


def test_a_change_with_a_session_needs_its_csrf_token(console: Console):
    client = console.client()
    csrf = sign_in(client, "op1")
    assert client.get("/api/v1/session").json()["name"] == "op1"
    refused = client.delete("/api/v1/session")
    assert refused.status_code == 403 and "CSRF" in refused.json()["message"]
    wrong = client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf[:-1] + "x"})
    assert wrong.status_code == 403
    assert client.get("/api/v1/session").status_code == 200  # still signed in
    assert client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/v1/session").status_code == 401


def test_the_sign_in_form_sets_the_cookie_and_signs_out_with_the_form_token(console: Console):
    client = console.client()
    response = client.post(
        "/login", data={"name": "b007", "password": PASSWORD, "next": "//evil.example/"},
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 303 and response.headers["location"] == "/"
    csrf = client.get("/api/v1/session").json()["csrf_token"]
    assert client.post("/logout", data={}, follow_redirects=False).status_code == 403
    out = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/api/v1/session").status_code == 401


def test_a_wrong_password_is_refused_the_same_as_an_unknown_name(console: Console):
    client = console.client()
    wrong = client.post("/api/v1/session", json={"name": "op2", "password": "not it at all"})
    unknown = client.post("/api/v1/session", json={"name": "nobody", "password": "not it"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_sign_ins_are_limited_per_name_then_allowed_once_the_window_passes(console: Console):
    app = console.app(login_max_failures=3, login_window_s=60)
    from fastapi.testclient import TestClient

    client = TestClient(app)
    for _ in range(3):
        bad = client.post("/api/v1/session", json={"name": "op2", "password": "wrong password"})
        assert bad.status_code == 401
    limited = client.post("/api/v1/session", json={"name": "op2", "password": PASSWORD})
    assert limited.status_code == 429  # even the right password, until the window passes
    console.now[0] += timedelta(seconds=61)
    try:
        assert client.post(
            "/api/v1/session", json={"name": "op2", "password": PASSWORD}
        ).status_code == 200  # fmt: skip
    finally:
        console.now[0] -= timedelta(seconds=61)


def test_sign_ins_are_limited_per_client_address_across_names(console: Console):
    from fastapi.testclient import TestClient

    client = TestClient(console.app(login_max_failures=2, login_window_s=60))
    for name in ("nobody-1", "nobody-2"):
        assert (
            client.post("/api/v1/session", json={"name": name, "password": "x"}).status_code == 401
        )
    blocked = client.post("/api/v1/session", json={"name": "aud", "password": PASSWORD})
    assert blocked.status_code == 429


def test_an_expired_session_is_signed_out(console: Console):
    client = console.client(session_ttl_s=60)
    sign_in(client, "aud")
    assert client.get("/api/v1/payments").status_code == 200
    console.now[0] += timedelta(seconds=61)
    try:
        assert client.get("/api/v1/payments").status_code == 401
    finally:
        console.now[0] -= timedelta(seconds=61)


def test_a_bearer_token_needs_no_csrf_and_a_bad_one_is_refused(console: Console):
    client = console.client("op1")
    assert client.get("/api/v1/session").json()["csrf_token"] is None
    for header in ("Bearer sakk_nope.nope", "Basic abc", "Bearer " + console.tokens["op1"] + "x"):
        response = console.client().get("/api/v1/payments", headers={"Authorization": header})
        assert response.status_code == 401


def test_a_change_from_another_sites_page_is_refused_even_the_sign_in(console: Console):
    client = console.client()
    evil = {"Origin": "https://evil.example"}
    response = client.post(
        "/login", data={"name": "op1", "password": PASSWORD}, headers=evil, follow_redirects=False
    )
    assert response.status_code == 403 and "sakk_session" not in response.headers.get(
        "set-cookie", ""
    )
    own = {"Origin": "http://testserver"}
    response = client.post(
        "/login", data={"name": "op1", "password": PASSWORD}, headers=own, follow_redirects=False
    )
    assert response.status_code == 303


def test_answers_carry_the_security_headers_and_a_large_body_is_refused(console: Console):
    client = console.client("op1")
    answer = client.get("/api/v1/payments", params={"limit": 1})
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    big = client.post(
        "/api/v1/settlement/windows/abort", content=b"x" * 2_000_000,
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert big.status_code == 413 and big.json()["error"] == "too_large"
