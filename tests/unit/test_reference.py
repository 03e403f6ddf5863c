"""Reference data files: errors name the entry, loading is idempotent, openings are postings."""

from __future__ import annotations

import copy
import json

import pytest
from sqlalchemy import func, select

from engine.ledger.checks import check_ledger
from engine.ledger.database import make_engine, upgrade
from engine.ledger.exceptions import ReferenceDataError
from engine.ledger.models import Account, Posting
from engine.ledger.reference import load_reference_data, read_file
from tests.factories import AMINA, REFERENCE_FILE


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'ref.db'}"
    upgrade(url)
    return make_engine(url)


def reference() -> dict:
    return copy.deepcopy(read_file(REFERENCE_FILE))


def test_loading_twice_posts_opening_balances_once(engine):
    load_reference_data(engine, reference())
    report = load_reference_data(engine, reference())
    assert report.accounts_created == 0
    with engine.connect() as conn:
        balance = conn.execute(
            select(Account.balance_minor).where(Account.number == AMINA[1])
        ).scalar_one()
        openings = conn.execute(
            select(func.count()).select_from(Posting).where(Posting.kind == "OPENING")
        )
        assert balance == 100_000
        assert openings.scalar_one() == 5  # the accounts with an opening balance
        assert check_ledger(conn).ok


def test_reloading_updates_status_without_touching_balances(engine):
    load_reference_data(engine, reference())
    data = reference()
    data["accounts"][0]["status"] = "CLOSED"
    data["accounts"][0]["opening_balance_minor"] = 1
    load_reference_data(engine, data)
    with engine.connect() as conn:
        row = conn.execute(
            select(Account.status, Account.balance_minor).where(Account.number == AMINA[1])
        ).one()
    assert (row.status, row.balance_minor) == ("CLOSED", 100_000)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["accounts"][0].update(bank="999"),
            r"accounts\[0\] \(007780000000000000000111\): unknown bank '999'",
        ),
        (lambda d: d["accounts"][1].update(currency="XYZ"), "unknown ISO 4217 currency 'XYZ'"),
        (lambda d: d["accounts"][0].update(opening_balance_minor=12.5), "opening_balance_minor"),
        (lambda d: d["accounts"][0].pop("currency"), "missing 'currency'"),
        (
            lambda d: d["fee_schedule"][0].update(rate_bps=20_000),
            r"fee_schedule\[0\]: rate_bps 20000 above 10000",
        ),
        (lambda d: d["channel_limits"][0].update(max_amount_minor=0), r"channel_limits\[0\]"),
        (
            lambda d: d["accounts"][0].update(kind="SETTLEMENT"),
            "kind must be CUSTOMER, MERCHANT or GOVERNMENT",
        ),
    ],
)
def test_invalid_entries_are_refused_naming_the_entry_and_nothing_is_loaded(
    engine, change, message
):
    data = reference()
    change(data)
    with pytest.raises(ReferenceDataError, match=message):
        load_reference_data(engine, data)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Account)).scalar_one() == 0


def test_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "bank.json"
    bad.write_text("{not json")
    with pytest.raises(ReferenceDataError, match="bank.json"):
        read_file(bad)
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(ReferenceDataError, match="JSON object"):
        read_file(bad)
