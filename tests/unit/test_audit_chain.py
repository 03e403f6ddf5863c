"""The entry hash: canonical, sensitive to every field, the same from SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine.audit.chain import Anchor, close_anchors, event_anchors, parse_anchor
from engine.audit.exceptions import AuditError
from engine.audit.windows import Close, Window
from engine.ledger.postings import GENESIS_HASH, ChainHead, entry_hash, utc_text
from engine.times import parse_instant

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
    anchor = parse_anchor(f"3:12:{'A' * 64}")
    assert (anchor.chain_id, anchor.chain_seq, anchor.chain_hash) == (3, 12, "a" * 64)
    for text in ("12:abc", f"x:12:{'a' * 64}", f"1:2:3:{'a' * 64}", f"-1:2:{'a' * 64}",
                 f"1:2:{'g' * 64}"):  # fmt: skip
        with pytest.raises(ValueError, match="CHAIN:SEQ:HASH"):
            parse_anchor(text)
    assert parse_instant("2026-11-26") == datetime(2026, 11, 26, tzinfo=UTC)
    assert parse_instant("2026-11-26T10:00+01:00") == datetime(2026, 11, 26, 9, tzinfo=UTC)
    with pytest.raises(AuditError):
        parse_instant("26/11/2026")


def test_an_anchor_in_the_old_form_seq_hash_is_chain_0():
    anchor = parse_anchor(f"12:{'a' * 64}")
    assert (anchor.chain_id, anchor.chain_seq) == (0, 12)


H0, H1, H2 = "0a" * 32, "1b" * 32, "2c" * 32


def test_a_closed_event_anchors_every_chain_it_carries_once():
    event = {"chain_seq": 40, "chain_hash": H0, "chain_heads": [
        {"chain_id": 0, "chain_seq": 40, "chain_hash": H0},
        {"chain_id": 2, "chain_seq": 7, "chain_hash": H2},
    ]}  # fmt: skip
    assert event_anchors(event, "e") == [Anchor(0, 40, H0, "e"), Anchor(2, 7, H2, "e")]


def test_a_closed_event_of_the_first_version_anchors_chain_0_by_chain_seq_and_hash():
    for event in ({"chain_seq": 40, "chain_hash": H0}, {"chain_seq": 40, "chain_hash": H0,
                                                          "chain_heads": []}):  # fmt: skip
        assert [(a.chain_id, a.chain_seq, a.chain_hash) for a in event_anchors(event, "e")] == [
            (0, 40, H0)
        ]


def test_chain_seq_and_hash_that_disagree_with_chain_0s_head_are_checked_too():
    event = {"chain_seq": 41, "chain_hash": H1,
             "chain_heads": [{"chain_id": 0, "chain_seq": 40, "chain_hash": H0}]}  # fmt: skip
    assert [(a.chain_id, a.chain_seq) for a in event_anchors(event, "e")] == [(0, 40), (0, 41)]
    window = Window(datetime(2026, 11, 26, tzinfo=UTC))
    heads = {0: ChainHead(40, H0), 1: ChainHead(3, H1)}
    same = Close(window, window.end, heads, 0, "id", None, ChainHead(40, H0))
    assert [(a.chain_id, a.chain_seq) for a in close_anchors(window.label, same)] == [
        (0, 40),
        (1, 3),
    ]
    moved = Close(window, window.end, heads, 0, "id", None, ChainHead(39, H2))
    assert [(a.chain_id, a.chain_seq) for a in close_anchors(window.label, moved)][-1] == (0, 39)
