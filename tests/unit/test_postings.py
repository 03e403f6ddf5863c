"""Double entry: legs that do not sum to zero never reach the ledger."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from consumers.settlement import build_legs
from engine.ledger.database import make_engine, upgrade
from engine.ledger.exceptions import UnbalancedPostingError
from engine.ledger.models import Account, LedgerEntry
from engine.ledger.postings import Leg, PostingDraft, check_balanced, write_postings
from engine.ledger.reference import load_reference_data, read_file
from engine.money import format_minor
from tests.factories import AMINA, KARIM, REFERENCE_FILE


def test_interbank_legs_move_through_both_settlement_accounts_and_sum_to_zero():
    legs = build_legs(AMINA[1], KARIM[1], "007", "011", 10_000, 500, "MAD")
    check_balanced(legs)
    by_account = {leg.account_number: leg.amount_minor for leg in legs}
    assert by_account == {
        AMINA[1]: -10_500,
        KARIM[1]: 10_000,
        "007-FEE_INCOME-MAD": 500,
        "007-SETTLEMENT-MAD": 10_000,
        "011-SETTLEMENT-MAD": -10_000,
    }


def test_same_bank_legs_skip_settlement_accounts():
    legs = build_legs("a", "b", "007", "007", 10_000, 0, "MAD")
    assert {leg.account_number for leg in legs} == {"a", "b"}


def test_unbalanced_posting_is_refused():
    with pytest.raises(UnbalancedPostingError, match="does not sum to zero"):
        check_balanced([Leg("a", -100, "MAD"), Leg("b", 99, "MAD")])


def test_balanced_in_total_but_not_per_currency_is_refused():
    with pytest.raises(UnbalancedPostingError):
        check_balanced(
            [
                Leg("a", -100, "MAD"),
                Leg("b", 100, "EUR"),
                Leg("c", 100, "MAD"),
                Leg("d", -100, "EUR"),
                Leg("e", 1, "MAD"),
                Leg("f", -1, "EUR"),
            ]
        )


def test_float_amount_is_refused():
    with pytest.raises(UnbalancedPostingError, match="int"):
        check_balanced([Leg("a", -1.5, "MAD"), Leg("b", 1.5, "MAD")])  # type: ignore[arg-type]


def test_entries_and_balances_are_written_together_and_entries_are_append_only(tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    upgrade(url)
    engine = make_engine(url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    legs = build_legs(AMINA[1], KARIM[1], "007", "011", 10_000, 500, "MAD")
    draft = PostingDraft(
        "p1", "pay1", "PAYMENT", datetime(2026, 11, 26, tzinfo=UTC), "2026-11-26", legs
    )
    with engine.begin() as conn:
        assert write_postings(conn, [draft]) == 5
    with engine.connect() as conn:
        balances = dict(conn.execute(select(Account.number, Account.balance_minor)).all())
    assert balances[AMINA[1]] == 100_000 - 10_500
    assert balances[KARIM[1]] == 20_000 + 10_000
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(LedgerEntry.__table__.update().values(amount_minor=0))
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(LedgerEntry.__table__.delete())


def test_format_minor_uses_integers_only():
    assert format_minor(123456, "MAD") == "1,234.56 MAD"
    assert format_minor(-5, "MAD") == "-0.05 MAD"
    assert format_minor(1000, "XOF") == "1,000 XOF"
