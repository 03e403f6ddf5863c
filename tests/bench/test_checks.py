"""No figure for a wrong run: counts that do not add up, an unbalanced or rewritten ledger."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import LedgerEntry
from engine.ledger.reference import load_reference_data, read_file
from tests.factories import REFERENCE_FILE
from tooling.bench.checks import BenchmarkCheckError, verify, verify_chain


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Engine]:
    """A fresh SQLite ledger holding the reference data (opening balances are entries)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    engine = make_engine(url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    yield engine
    engine.dispose()


def tamper_with_first_entry(engine: Engine, delta_minor: int) -> None:
    """Change one entry's amount as an attacker with database access would."""
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER ledger_entries_no_update"))
        first = conn.execute(select(LedgerEntry.id).order_by(LedgerEntry.id).limit(1)).scalar()
        conn.execute(
            text("UPDATE ledger_entries SET amount_minor = amount_minor + :d WHERE id = :i"),
            {"d": delta_minor, "i": first},
        )


def test_a_run_whose_counts_add_up_on_an_intact_ledger_passes_with_the_chain(
    ledger: Engine,
) -> None:
    assert verify(ledger, published=0) is None
    entries = verify(ledger, published=0, chain=True)
    assert entries is not None and entries > 0


def test_published_messages_missing_from_the_ledger_refuse_the_figure(ledger: Engine) -> None:
    with pytest.raises(BenchmarkCheckError, match="published 3 != settled 0"):
        verify(ledger, published=3)


def test_an_unbalanced_ledger_refuses_the_figure(ledger: Engine) -> None:
    tamper_with_first_entry(ledger, 1)
    with pytest.raises(BenchmarkCheckError, match="does not balance"):
        verify(ledger, published=0)


def test_a_rewritten_entry_fails_the_auditors_chain_verification(ledger: Engine) -> None:
    tamper_with_first_entry(ledger, 1)
    with pytest.raises(BenchmarkCheckError, match="audit verification failed"):
        verify_chain(ledger)
