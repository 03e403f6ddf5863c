"""The entry hash: canonical, sensitive to every field, the same from SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine.audit.chain import parse_anchor
from engine.audit.exceptions import AuditError
from engine.audit.times import parse_instant
from engine.ledger.postings import GENESIS_HASH, entry_hash, utc_text

AT = datetime(2026, 11, 26, 9, 30, 15, 123000, tzinfo=UTC)
FIELDS = dict(
    prev_hash=GENESIS_HASH,
    chain_seq=7,
    posting_id="p-1",
    payment_id="pay-1",
    kind="PAYMENT",
    occurred_at=AT,
    settlement_window="2026-11-26",
    account_number="007780000000000000000111",
    amount_minor=-10_500,
    currency="MAD",
)


def test_the_hash_format_never_changes_silently():
    """Ledgers already written verify only if this digest stays what it is."""
    expected = "da575e36741cdbb3efb1f24fbaacf880464219292d14ee7c5c24c972ff675d56"
    assert entry_hash(**FIELDS) == expected


def test_the_hash_is_the_same_for_the_same_entry():
    assert entry_hash(**FIELDS) == entry_hash(**FIELDS)
    assert len(entry_hash(**FIELDS)) == 64


@pytest.mark.parametrize(
    "name,value",
    [
        ("prev_hash", "1" * 64),
        ("chain_seq", 8),
        ("posting_id", "p-2"),
        ("payment_id", "pay-2"),
        ("kind", "OPENING"),
        ("occurred_at", AT + timedelta(milliseconds=1)),
        ("settlement_window", "2026-11-27"),
        ("account_number", "007780000000000000000222"),
        ("amount_minor", -10_501),
        ("currency", "EUR"),
    ],
)
def test_every_field_changes_the_hash(name, value):
    assert entry_hash(**(FIELDS | {name: value})) != entry_hash(**FIELDS)


def test_a_time_hashes_the_same_naive_utc_as_sqlite_returns_it_or_in_any_zone():
    naive = AT.replace(tzinfo=None)
    plus_one = AT.astimezone(timezone(timedelta(hours=1)))
    assert utc_text(naive) == utc_text(AT) == utc_text(plus_one) == "2026-11-26T09:30:15.123000Z"
    assert entry_hash(**(FIELDS | {"occurred_at": naive})) == entry_hash(**FIELDS)


def test_anchors_and_instants_are_parsed_strictly():
    assert parse_anchor(f"12:{'a' * 64}").chain_seq == 12
    with pytest.raises(ValueError):
        parse_anchor("12:abc")
    assert parse_instant("2026-11-26") == datetime(2026, 11, 26, tzinfo=UTC)
    assert parse_instant("2026-11-26T10:00+01:00") == datetime(2026, 11, 26, 9, tzinfo=UTC)
    with pytest.raises(AuditError):
        parse_instant("26/11/2026")
