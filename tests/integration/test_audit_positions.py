"""``sakk audit verify`` proves each bank's position row is what the ledger says.

A bank's ``bank_positions`` row (``posted_minor``, ``holds_minor``) is recomputed from the
ledger without the rows: its settlement account's entries, and its payers' active
interbank holds (the amount not yet captured, the fee excluded). A row written by
settlement, or rebuilt by migration 0017, verifies clean; a row changed behind the
ledger's back is named with its bank and currency.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, delete, select, update

from engine.audit.chain import verify
from engine.ledger.database import alembic_config, upgrade
from engine.ledger.models import BankPosition, Hold, table_of
from tests.factories import AMINA, KARIM, YOUSSEF, authorization, payment
from tests.integration.test_audit_tamper import build_ledger
from tests.integration.test_window_lifecycle import cli_env, run

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger(database_url: str):  # type: ignore[no-untyped-def]
    engine = build_ledger(database_url, [
        payment(AMINA, KARIM, 10_000), payment(KARIM, AMINA, 2_500),
        authorization(AMINA, KARIM, 4_000, "WEB"),  # interbank: counts, its fee does not
        authorization(AMINA, YOUSSEF, 900),  # within bank 007: does not count
        payment(AMINA, YOUSSEF, 700),
    ])  # fmt: skip
    yield engine
    engine.dispose()


def tamper(engine: Engine, bank: str, **values: int) -> None:
    bp = table_of(BankPosition)
    with engine.begin() as conn:
        conn.execute(
            update(bp).where(bp.c.bank_code == bank, bp.c.currency == "MAD").values(**values)
        )


def test_rows_written_by_settlement_verify_clean_with_fees_reserved_on_the_holds(ledger):
    h = table_of(Hold)
    with ledger.connect() as conn:
        reserved = conn.execute(select(h.c.reserved_minor, h.c.amount_minor)).all()
        report = verify(conn)
    assert any(r.reserved_minor > r.amount_minor for r in reserved)  # a fee is reserved
    assert report.settlement.problems == [] and report.ok
    assert report.settlement.position_rows >= 2


def test_rows_backfilled_by_0017_verify_clean(ledger, database_url):
    command.downgrade(alembic_config(database_url), "0016_window_lifecycle")
    upgrade(database_url)  # the rows are rebuilt from the settlement accounts and holds
    with ledger.connect() as conn:
        report = verify(conn)
    assert report.settlement.problems == [] and report.settlement.position_rows >= 2


def test_a_row_changed_directly_is_named_with_its_bank_and_currency(ledger):
    tamper(ledger, "007", holds_minor=4_001)
    tamper(ledger, "011", posted_minor=0)
    with ledger.connect() as conn:
        problems = verify(conn).settlement.problems
    assert problems == [
        "bank 007 MAD position row: holds_minor 4001, the ledger's active interbank holds "
        "give 4000",
        "bank 011 MAD position row: posted_minor 0, the ledger's interbank postings give -7500",
    ]


def test_a_missing_row_is_named_and_the_command_fails(ledger, database_url, tmp_path: Path):
    bp = table_of(BankPosition)
    with ledger.begin() as conn:
        conn.execute(delete(bp).where(bp.c.bank_code == "011"))
    code, out = run(cli_env(database_url, tmp_path), "audit", "verify", "--format", "json")
    assert code == 1, out
    assert out["settlement_problems"] == [
        {"problem": "bank 011 MAD position row missing: the ledger gives posted -7500, holds 0"}
    ]
