"""Who may see what, and cursors: the read side's pure parts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.read.audience import Audience, Role
from engine.read.exceptions import CursorError, ReadError
from engine.read.paging import MAX_PAGE, check_limit, decode_cursor, encode_cursor, page_of

ACCOUNT_007 = "007780000000000000000111"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("operator", Audience(Role.OPERATOR)),
        ("auditor", Audience(Role.AUDITOR)),
        ("bank:011", Audience(Role.BANK, "011")),
    ],
)
def test_an_audience_parses_from_what_as_takes(text, expected):
    assert Audience.parse(text) == expected
    assert Audience.parse(text).label == text


@pytest.mark.parametrize(
    "text", ["bank", "bank:", "operator:007", "root", "bank:0 1", "bank:123456789"]
)
def test_an_audience_that_names_no_one_or_too_much_is_refused(text):
    with pytest.raises(ReadError):
        Audience.parse(text)


def test_account_numbers_are_whole_only_for_auditors_and_the_accounts_own_bank():
    assert Audience.operator().account(ACCOUNT_007, "007") == "****0111"
    assert Audience.auditor().account(ACCOUNT_007, "007") == ACCOUNT_007
    assert Audience.bank("007").account(ACCOUNT_007, "007") == ACCOUNT_007
    assert Audience.bank("011").account(ACCOUNT_007, "007") == "****0111"


def test_a_bank_may_see_only_payments_it_pays_or_is_paid_through():
    bank = Audience.bank("011")
    assert bank.may_see("007", "011") and bank.may_see("011", "007")
    assert not bank.may_see("007", "310")
    assert Audience.operator().may_see("007", "310")


def test_a_cursor_round_trips_its_key_and_belongs_to_one_list():
    at = datetime(2026, 11, 24, 9, 30, 0, 123456, tzinfo=UTC)
    cursor = encode_cursor("payments", (at, "007:P-1"))
    assert decode_cursor("payments", cursor) == (at, "007:P-1")
    with pytest.raises(CursorError):
        decode_cursor("notifications", cursor)
    for broken in ("", "!!!", cursor[:-3], "x" * 600, encode_cursor("payments", ([1],))):
        with pytest.raises(CursorError):
            decode_cursor("payments", broken)


def test_a_page_holds_at_most_its_limit_and_a_cursor_only_when_more_remain():
    rows = list(range(7))
    full = page_of("n", rows, 7, lambda r: (r,))
    assert full.items == tuple(rows) and full.next_cursor is None
    cut = page_of("n", rows, 6, lambda r: (r,))
    assert cut.items == tuple(rows[:6]) and decode_cursor("n", str(cut.next_cursor)) == (5,)
    assert check_limit(MAX_PAGE) == MAX_PAGE
    for limit in (0, MAX_PAGE + 1):
        with pytest.raises(ReadError):
            check_limit(limit)
