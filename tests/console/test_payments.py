"""Payments through the API: search, one, trace; a bank sees its own and nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from tests.console.conftest import Console
from tests.factories import KARIM, switch_id


def _all(console: Console, user: str, **params: Any) -> list[dict[str, Any]]:
    client, items, cursor = console.client(user), [], None
    for _ in range(50):
        query = {**params, "limit": 5, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/payments", params=query)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("paging never ended")


def test_operators_and_auditors_find_every_payment_a_bank_its_own(console: Console):
    every = {switch_id(r) for r in console.records}
    assert {p["payment_id"] for p in _all(console, "op1")} == every
    assert {p["payment_id"] for p in _all(console, "aud")} == every
    for user, bank in (("b007", "007"), ("b011", "011"), ("b310", "310")):
        found = _all(console, user)
        assert {p["payment_id"] for p in found} == console.ids_involving(bank)
        assert all(bank in (p["payer_bank"], p["payee_bank"]) for p in found)
        # a filter naming another bank does not widen what a bank sees
        assert {p["payment_id"] for p in _all(console, user, bank="007")} <= console.ids_involving(
            bank
        )


def test_search_filters_by_reference_last_four_and_time(console: Console):
    found = _all(console, "op1", bank_reference="REF-2")
    assert [p["payment_id"] for p in found] == [switch_id(console.records[2])]
    assert {p["payment_id"] for p in _all(console, "op1", account_last4=KARIM[1][-4:])} == (
        console.ids_involving("011")
    )
    timed = _all(console, "op1", since="2026-11-24T02:00:00Z", until="2026-11-24T04:00:00Z")
    assert {p["payment_id"] for p in timed} == {switch_id(r) for r in console.records[2:4]}
    bad = console.client("op1").get("/api/v1/payments", params={"account_last4": "12"})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_request"
    naive = console.client("op1").get("/api/v1/payments", params={"since": "2026-11-24T02:00:00"})
    assert naive.status_code == 422


def test_accounts_are_masked_for_operators_whole_for_auditors(console: Console):
    pid = switch_id(console.records[0])  # AMINA (007) -> KARIM (011)
    op = console.client("op1").get(f"/api/v1/payments/{pid}").json()
    aud = console.client("aud").get(f"/api/v1/payments/{pid}").json()
    bank = console.client("b011").get(f"/api/v1/payments/{pid}").json()
    assert op["payee_account"].startswith("****") and aud["payee_account"] == KARIM[1]
    assert bank["payee_account"] == KARIM[1] and bank["payer_account"].startswith("****")


@pytest.mark.parametrize("suffix", ["", "/trace"])
def test_another_banks_payment_is_answered_as_one_that_does_not_exist(console: Console, suffix):
    other = sorted(console.ids_not_involving("310"))[0]
    bank = console.client("b310")
    hidden = bank.get(f"/api/v1/payments/{other}{suffix}")
    missing = bank.get(f"/api/v1/payments/{other}{suffix}".replace(other, other + "9"))
    assert hidden.status_code == missing.status_code == 404
    missing_named = missing.content.replace((other + "9").encode(), other.encode())
    assert hidden.content == missing_named  # byte for byte, but for the id asked
    assert console.client("op1").get(f"/api/v1/payments/{other}{suffix}").status_code == 200


def test_a_trace_shows_steps_and_postings_and_hides_the_switchs_internals_from_a_bank(
    console: Console,
):
    pid = switch_id(console.records[0])
    op = console.client("op1").get(f"/api/v1/payments/{pid}/trace").json()
    bank = console.client("b007").get(f"/api/v1/payments/{pid}/trace").json()
    assert op["postings"] and op["events"] and op["entries"]
    assert bank["postings"] and not bank["events"] and not bank["entries"]
    assert op["signer"].startswith("signed by bank 007")
