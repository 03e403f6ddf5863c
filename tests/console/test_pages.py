"""The console's pages as each role sees them: who may open which screen, what a bank user
finds, the CSRF token in every form, and errors shown as pages."""

from __future__ import annotations

import re

import pytest

from tests.console.conftest import AS_ROLE, sign_in
from tests.factories import AMINA, KARIM, switch_id

pytestmark = pytest.mark.integration

EVERYONE = ("/", "/payments", "/notifications", "/settlement", "/banks")
READERS_ONLY = ("/dead-letters", "/reference", "/users", "/proposals", "/audit", "/audit/verify")


@pytest.mark.parametrize("path", EVERYONE + READERS_ONLY)
@pytest.mark.parametrize("role", ["operator", "auditor", "bank"])
def test_each_screen_opens_for_the_roles_it_is_for_and_refuses_the_others(console, path, role):
    response = console.client(AS_ROLE[role]).get(path)
    expected = 403 if role == "bank" and path in READERS_ONLY else 200
    assert response.status_code == expected, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("path", EVERYONE + READERS_ONLY)
def test_a_screen_sends_a_stranger_to_sign_in(console, path):
    response = console.client().get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path}"


def test_a_bank_user_lists_its_own_payments_only_and_another_banks_is_not_found(console):
    client = console.client(AS_ROLE["bank"])  # bank 011
    listed = client.get("/payments", params={"state": "SETTLED"}).text
    shown = set(re.findall(r'href="/payments/([^"?]+)"', listed))
    own = {i.replace(":", "%3A") for i in console.ids_involving("011")}
    assert shown == own
    foreign = sorted(console.ids_not_involving("011"))[0]
    answer = client.get(f"/payments/{foreign}")
    missing = client.get("/payments/007:never-was")
    assert answer.status_code == missing.status_code == 404
    assert f"no payment {foreign} in the ledger" in answer.text
    assert foreign not in answer.text.replace(f"no payment {foreign} in the ledger", "")


def test_a_payment_page_masks_accounts_for_an_operator_and_shows_the_whole_life(console):
    record = next(r for r in console.records if r["payer_account"] == AMINA[1])
    page = console.client(AS_ROLE["operator"]).get(f"/payments/{switch_id(record)}").text
    assert AMINA[1] not in page and KARIM[1] not in page
    assert "****" + AMINA[1][-4:] in page
    for section in ("Steps", "State changes", "Postings", "Notifications", "Signer"):
        assert section in page


def test_every_form_that_changes_something_carries_the_sessions_csrf_token(console):
    client = console.client()
    token = sign_in(client, AS_ROLE["operator"])
    for path in ("/", "/settlement", "/proposals", "/users", "/notifications"):
        page = client.get(path).text
        for form in re.findall(r'<form[^>]*method="post".*?</form>', page, re.S):
            assert f'name="csrf_token" value="{token}"' in form, (path, form[:200])


def test_a_form_posted_without_the_csrf_token_is_refused(console):
    client = console.client()
    sign_in(client, AS_ROLE["operator"])
    answer = client.post("/proposals/cap", data={"bank": "011", "cap": "1.00", "alert_percent": 80})
    assert answer.status_code == 403


def test_a_search_with_a_bad_field_says_what_is_wrong(console):
    answer = console.client(AS_ROLE["operator"]).get("/payments", params={"account_last4": "12"})
    assert answer.status_code == 400 and "account_last4" in answer.text


def test_an_operator_closes_a_window_from_the_settlement_page_and_an_auditor_cannot(console):
    auditor = console.client(AS_ROLE["auditor"])
    assert auditor.post("/settlement/close", data={"window": "2026-11-24"}).status_code == 403
    operator = console.client(AS_ROLE["operator"])
    before = operator.get("/settlement", params={"window": "2026-11-24"}).text
    assert "Close window 2026-11-24" in before
    closed = operator.post("/settlement/close", data={"window": "2026-11-24", "reason": "day end"})
    assert closed.status_code == 200, closed.text[:500]
    assert "window 2026-11-24 closed, recorded (no broker)" in closed.text
    assert "Close window 2026-11-24" not in closed.text
    log = operator.get("/audit", params={"action": "window.close"}).text
    assert "window 2026-11-24" in log and ">op1<" in log


def test_an_operator_proposes_revoking_a_key_and_it_waits_for_another(console):
    operator = console.client(AS_ROLE["operator"])
    banks = operator.get("/banks").text
    bank, key_id = re.search(r'name="bank" value="(\w+)"><input type="hidden" name="key_id" '
                             r'value="([^"]+)"', banks).groups()  # fmt: skip
    answer = operator.post("/banks/keys/revoke", data={"bank": bank, "key_id": key_id})
    assert answer.status_code == 200, answer.text[:500]
    assert f"key.revoke on key {bank}/{key_id}) waits for another operator" in answer.text
    assert (
        console.client(AS_ROLE["auditor"])
        .post("/banks/keys/revoke", data={"bank": bank, "key_id": key_id})
        .status_code
        == 403
    )


def test_redelivering_a_banks_notifications_in_bulk_is_a_proposal(console):
    operator = console.client(AS_ROLE["operator"])
    answer = operator.post("/notifications/redeliver-all", data={"bank": "011", "reason": "up"})
    assert answer.status_code == 200, answer.text[:500]
    assert "(notifications.redeliver on notifications status=FAILED bank=011)" in answer.text
    assert "waits for another operator" in answer.text


def test_a_new_user_is_proposed_with_its_passwords_hash_only_and_approved_by_another(console):
    proposer, approver = console.client(AS_ROLE["operator"]), console.client("op2")
    password = "the new auditor's passphrase"
    made = proposer.post(
        "/users/add", data={"user_name": "aud-2", "role": "auditor", "password": password}
    )
    assert made.status_code == 200, made.text[:500]
    proposal_id = re.search(r"proposal (\d+) \(user.create on user aud-2\)", made.text).group(1)
    listed = approver.get("/proposals", params={"state": "PENDING"}).text
    assert (
        password not in listed
        and "password" not in listed.split(f"Proposal {proposal_id}:")[1][:800]
    )
    taken = approver.post(f"/proposals/{proposal_id}/approve", data={})
    assert taken.status_code == 200 and f"proposal {proposal_id} approved" in taken.text
    assert "<td>aud-2</td><td>auditor</td>" in approver.get("/users").text
